//! A corpus of hostile requests, each with the outcome the server owes it.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use hickory_proto::op::{Message, ResponseCode};
use kdns_net::{Protocol, answer_message, exchange_udp, serve_stream};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

use crate::support::{Answers, GUARD, config, query, start, write_frame};

/// What the server should do with a corpus entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Outcome {
    /// Nothing back (over TCP: the connection is closed).
    NoReply,
    /// An error reply with this code and no question section.
    Bare(ResponseCode),
    /// An error reply with this code that echoes the question.
    Echoed(ResponseCode),
    /// The handler's answer.
    Answered,
}

const ID: u16 = 0x1234;
const PROBE_ID: u16 = 0xbeef;
const QR: u16 = 0x8000;
const RD: u16 = 0x0100;
const TYPE_A: u16 = 1;
const TYPE_SOA: u16 = 6;
const CLASS_IN: u16 = 1;
const QNAME: &[u8] = b"\x06corpus\x07example\x00";

fn opcode(code: u16) -> u16 {
    code << 11
}

fn header(flags: u16, counts: [u16; 4]) -> Vec<u8> {
    let mut bytes = ID.to_be_bytes().to_vec();
    bytes.extend_from_slice(&flags.to_be_bytes());
    for count in counts {
        bytes.extend_from_slice(&count.to_be_bytes());
    }
    bytes
}

fn question(name: &[u8], qtype: u16, class: u16) -> Vec<u8> {
    let mut bytes = name.to_vec();
    bytes.extend_from_slice(&qtype.to_be_bytes());
    bytes.extend_from_slice(&class.to_be_bytes());
    bytes
}

/// A query with the given flags and sections appended after one question for `QNAME`.
fn message(flags: u16, counts: [u16; 4], qtype: u16, class: u16, rest: &[&[u8]]) -> Vec<u8> {
    let mut bytes = header(flags, counts);
    bytes.extend(question(QNAME, qtype, class));
    for part in rest {
        bytes.extend_from_slice(part);
    }
    bytes
}

fn plain_query() -> Vec<u8> {
    message(RD, [1, 0, 0, 0], TYPE_A, CLASS_IN, &[])
}

/// An OPT record: root name, type 41, payload 1232, the given EDNS version, no options.
fn opt(version: u8) -> Vec<u8> {
    vec![0, 0, 41, 0x04, 0xd0, 0, version, 0, 0, 0, 0]
}

/// An A record for the question's name (via a compression pointer to it).
fn answer_record() -> Vec<u8> {
    vec![0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 10, 0, 0, 1]
}

/// Deterministic noise, so a failure can be reproduced.
fn garbage(len: usize) -> Vec<u8> {
    let mut state: u64 = 0x6b64_6e73_6e65_7421;
    (0..len)
        .map(|_| {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            state.to_be_bytes()[0]
        })
        .collect()
}

fn corpus() -> Vec<(&'static str, Vec<u8>, Outcome)> {
    use Outcome::*;
    let long_label = [&[64u8][..], &[b'a'; 64], &[0]].concat();
    let long_name = [[&[63u8][..], &[b'a'; 63]].concat().repeat(5), vec![0]].concat();
    let mut self_pointer = header(RD, [1, 0, 0, 0]);
    self_pointer.extend(question(&[0xc0, 12], TYPE_A, CLASS_IN));
    let mut pointer_loop = header(RD, [1, 0, 0, 0]);
    // "a" then a pointer to offset 16, which points back to offset 12.
    pointer_loop.extend(question(&[1, b'a', 0xc0, 16, 0xc0, 12], TYPE_A, CLASS_IN));
    let mut garbage_with_qr = garbage(64);
    garbage_with_qr[2] |= 0x80;
    // 0b10 label type is reserved, so the body cannot decode whatever follows.
    let garbage_after_header = [header(RD, [1, 0, 0, 0]), vec![0xbf], garbage(63)].concat();
    let oversized = [plain_query(), vec![0; 5000]].concat();
    let trailing = [plain_query(), garbage(20)].concat();

    vec![
        ("empty datagram", vec![], NoReply),
        ("five bytes", vec![1, 2, 3, 4, 5], NoReply),
        (
            "header only with QDCOUNT=1",
            header(RD, [1, 0, 0, 0]),
            Bare(ResponseCode::FormErr),
        ),
        (
            "QDCOUNT=0",
            header(RD, [0, 0, 0, 0]),
            Bare(ResponseCode::FormErr),
        ),
        (
            "QDCOUNT=2",
            message(
                RD,
                [2, 0, 0, 0],
                TYPE_A,
                CLASS_IN,
                &[&question(QNAME, TYPE_A, CLASS_IN)],
            ),
            Bare(ResponseCode::FormErr),
        ),
        (
            "compression pointer to itself",
            self_pointer,
            Bare(ResponseCode::FormErr),
        ),
        (
            "compression pointer loop of two",
            pointer_loop,
            Bare(ResponseCode::FormErr),
        ),
        (
            "label of 64 bytes",
            [
                header(RD, [1, 0, 0, 0]),
                question(&long_label, TYPE_A, CLASS_IN),
            ]
            .concat(),
            Bare(ResponseCode::FormErr),
        ),
        (
            "name over 255 bytes",
            [
                header(RD, [1, 0, 0, 0]),
                question(&long_name, TYPE_A, CLASS_IN),
            ]
            .concat(),
            Bare(ResponseCode::FormErr),
        ),
        (
            "opcode UPDATE",
            message(opcode(5), [1, 0, 0, 0], TYPE_SOA, CLASS_IN, &[]),
            Echoed(ResponseCode::NotImp),
        ),
        (
            "opcode STATUS",
            message(opcode(2), [1, 0, 0, 0], TYPE_A, CLASS_IN, &[]),
            Echoed(ResponseCode::NotImp),
        ),
        (
            "opcode STATUS without a question",
            header(opcode(2), [0, 0, 0, 0]),
            Bare(ResponseCode::NotImp),
        ),
        (
            "response sent as a query (QR=1)",
            message(QR | RD, [1, 0, 0, 0], TYPE_A, CLASS_IN, &[]),
            NoReply,
        ),
        (
            "unknown class",
            message(RD, [1, 0, 0, 0], TYPE_A, 0x1234, &[]),
            Answered,
        ),
        (
            "EDNS version 1",
            message(RD, [1, 0, 0, 1], TYPE_A, CLASS_IN, &[&opt(1)]),
            Echoed(ResponseCode::BADVERS),
        ),
        (
            "two OPT records",
            message(RD, [1, 0, 0, 2], TYPE_A, CLASS_IN, &[&opt(0), &opt(0)]),
            Bare(ResponseCode::FormErr),
        ),
        (
            "QUERY with an answer section",
            message(RD, [1, 1, 0, 0], TYPE_A, CLASS_IN, &[&answer_record()]),
            Echoed(ResponseCode::FormErr),
        ),
        (
            "QUERY with an authority section",
            message(RD, [1, 0, 1, 0], TYPE_A, CLASS_IN, &[&answer_record()]),
            Echoed(ResponseCode::FormErr),
        ),
        (
            "NOTIFY with an answer section",
            message(
                opcode(4),
                [1, 1, 0, 0],
                TYPE_SOA,
                CLASS_IN,
                &[&answer_record()],
            ),
            Answered,
        ),
        ("random garbage with QR set", garbage_with_qr, NoReply),
        (
            "random garbage after a query header",
            garbage_after_header,
            Bare(ResponseCode::FormErr),
        ),
        ("trailing garbage after a valid query", trailing, Answered),
        (
            "datagram larger than the receive buffer",
            oversized,
            NoReply,
        ),
    ]
}

/// Checks `reply` (or its absence) against `expected`. Codes are compared by number: BADVERS
/// and BADSIG share 16, and the decoder names it BADSIG.
fn check(name: &str, reply: Option<Vec<u8>>, expected: Outcome) {
    let Some(bytes) = reply else {
        assert_eq!(expected, Outcome::NoReply, "{name}: no reply");
        return;
    };
    let reply = Message::from_vec(&bytes).unwrap_or_else(|e| panic!("{name}: reply decodes: {e}"));
    assert_eq!(
        reply.metadata.id, ID,
        "{name}: reply carries the request ID"
    );
    let code = reply.metadata.response_code;
    match expected {
        Outcome::NoReply => panic!("{name}: expected no reply, got {code}"),
        Outcome::Bare(expected_code) => {
            assert_eq!(
                u16::from(code),
                u16::from(expected_code),
                "{name}: got {code}"
            );
            assert!(reply.queries.is_empty(), "{name}: no question section");
        }
        Outcome::Echoed(expected_code) => {
            assert_eq!(
                u16::from(code),
                u16::from(expected_code),
                "{name}: got {code}"
            );
            assert_eq!(reply.queries.len(), 1, "{name}: question echoed");
            if expected_code == ResponseCode::BADVERS {
                let edns = reply.edns.as_ref().expect("BADVERS carries an OPT");
                assert_eq!(edns.version(), 0, "{name}: we speak EDNS version 0");
            }
        }
        Outcome::Answered => {
            assert_eq!(code, ResponseCode::NoError, "{name}");
            assert_eq!(reply.answers.len(), 1, "{name}: the handler answered");
        }
    }
}

/// Sends `bytes`, then a valid probe query from the same socket. The server handles datagrams
/// in order, so whatever arrives before the probe's answer is the reply to `bytes`.
async fn udp_outcome(server: SocketAddr, bytes: &[u8]) -> Option<Vec<u8>> {
    let socket = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))
        .await
        .expect("bind");
    socket.send_to(bytes, server).await.expect("send");
    let mut probe = query("probe.example");
    probe.metadata.id = PROBE_ID;
    socket
        .send_to(&probe.to_vec().expect("encodes"), server)
        .await
        .expect("send");

    let mut reply = None;
    let mut buf = vec![0u8; 65535];
    loop {
        let (len, _) = tokio::time::timeout(GUARD, socket.recv_from(&mut buf))
            .await
            .expect("the probe is answered")
            .expect("receive");
        let datagram = buf[..len].to_vec();
        if datagram.starts_with(&PROBE_ID.to_be_bytes()) {
            return reply;
        }
        assert!(reply.is_none(), "more than one reply to one request");
        reply = Some(datagram);
    }
}

/// Sends `bytes` as one frame on a new connection: a reply, or `None` if the server closes.
async fn tcp_outcome(server: SocketAddr, bytes: &[u8]) -> Option<Vec<u8>> {
    let mut stream = TcpStream::connect(server).await.expect("connect");
    write_frame(&mut stream, bytes).await;
    let read = async {
        let len = stream.read_u16().await.ok()?;
        let mut reply = vec![0u8; usize::from(len)];
        stream.read_exact(&mut reply).await.ok()?;
        Some(reply)
    };
    tokio::time::timeout(GUARD, read)
        .await
        .expect("a reply or a close")
}

#[tokio::test]
async fn every_malformed_datagram_gets_its_due_and_the_server_still_answers() {
    let server = start(Answers::new(1), config()).await;
    for (name, bytes, expected) in corpus() {
        check(name, udp_outcome(server.addr, &bytes).await, expected);
    }

    let reply = exchange_udp(server.addr, &query("after.example"), GUARD)
        .await
        .expect("still serving");
    assert_eq!(reply.answers.len(), 1);
    assert!(server.stats.dropped.load(Ordering::Relaxed) >= 5);
    assert!(server.stats.formerr.load(Ordering::Relaxed) >= 10);
    assert_eq!(server.stats.notimp.load(Ordering::Relaxed), 3);
    assert_eq!(server.stats.badvers.load(Ordering::Relaxed), 1);
}

#[tokio::test]
async fn every_malformed_frame_gets_the_same_due_over_tcp() {
    let server = start(Answers::new(1), config()).await;
    // Framing decides before the size of a datagram buffer could matter.
    for (name, bytes, expected) in corpus()
        .into_iter()
        .filter(|(_, bytes, _)| bytes.len() <= 4096)
    {
        check(name, tcp_outcome(server.addr, &bytes).await, expected);
    }
    let reply = kdns_net::exchange_tcp(server.addr, &query("after.example"), GUARD)
        .await
        .expect("still serving");
    assert_eq!(reply.answers.len(), 1);
}

#[tokio::test]
async fn answer_message_gives_every_entry_the_servers_due_without_a_socket() {
    let handler = Arc::new(Answers::new(1));
    let src = SocketAddr::from((Ipv4Addr::LOCALHOST, 5353));
    for (name, bytes, expected) in corpus() {
        let reply = answer_message(handler.clone(), config(), &bytes, src, Protocol::Udp).await;
        check(name, reply, expected);
    }
    // Over TCP the datagram buffer does not apply: the oversized query is answered.
    let oversized = [plain_query(), vec![0; 5000]].concat();
    let reply = answer_message(handler, config(), &oversized, src, Protocol::Tcp).await;
    check("oversized over TCP", reply, Outcome::Answered);
}

#[tokio::test]
async fn serve_stream_answers_frames_in_order_until_junk_then_closes() {
    let (client, server) = tokio::io::duplex(64 * 1024);
    let peer = SocketAddr::from((Ipv4Addr::LOCALHOST, 5353));
    let serving = tokio::spawn(serve_stream(
        Arc::new(Answers::new(1)),
        config(),
        server,
        peer,
    ));
    let mut junk = plain_query();
    junk[2] |= 0x80;
    let mut stream = Vec::new();
    for message in [plain_query(), plain_query(), junk, plain_query()] {
        stream.extend_from_slice(&u16::try_from(message.len()).expect("short").to_be_bytes());
        stream.extend_from_slice(&message);
    }
    let (mut from_server, mut to_server) = tokio::io::split(client);
    to_server.write_all(&stream).await.expect("write");
    let mut replies = Vec::new();
    tokio::time::timeout(GUARD, from_server.read_to_end(&mut replies))
        .await
        .expect("the server closes after the junk frame")
        .expect("read");
    tokio::time::timeout(GUARD, serving)
        .await
        .expect("serve_stream returns")
        .expect("no panic");

    let mut rest = &replies[..];
    let mut answered = 0;
    while let [high, low, body @ ..] = rest {
        let len = usize::from(u16::from_be_bytes([*high, *low]));
        check(
            "pipelined query",
            Some(body[..len].to_vec()),
            Outcome::Answered,
        );
        rest = &body[len..];
        answered += 1;
    }
    assert_eq!(answered, 2, "the two frames before the junk are answered");
}
