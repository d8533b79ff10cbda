//! The client against hand-driven upstreams that misbehave on purpose.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use hickory_proto::op::Message;
use hickory_proto::rr::rdata::A;
use hickory_proto::rr::{Name, RData, RecordType};
use kdns_net::{ClientError, bind, exchange, exchange_tcp, exchange_udp};
use tokio::net::UdpSocket;

use crate::support::{GUARD, a_record, query, read_frame, write_frame};

/// Who sends a scripted reply.
#[derive(Clone, Copy)]
enum From {
    /// The address the client queried.
    Upstream,
    /// Another socket on the same host, as an off-path spoofer would.
    Spoofer,
}

/// A response to `query` with one A record `10.0.0.<marker>`, to tell replies apart.
fn reply(query: &Message, marker: u8) -> Message {
    let mut reply = query.clone().into_response();
    let name = query.queries[0].name().clone();
    reply.answers = vec![a_record(&name, usize::from(marker))];
    reply
}

fn marker(reply: &Message) -> Option<u8> {
    match reply.answers.first().map(|record| &record.data) {
        Some(RData::A(A(ip))) => Some(ip.octets()[3]),
        _ => None,
    }
}

/// Runs `exchange_udp` against an upstream that answers the query with `script`, in order.
async fn scripted(
    timeout: Duration,
    script: impl FnOnce(&Message) -> Vec<(From, Message)>,
) -> Result<Message, ClientError> {
    let upstream = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))
        .await
        .expect("bind");
    let spoofer = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))
        .await
        .expect("bind");
    let addr = upstream.local_addr().expect("local address");
    let client =
        tokio::spawn(async move { exchange_udp(addr, &query("scripted.example"), timeout).await });

    let mut buf = vec![0u8; 65535];
    let (len, client_addr) = tokio::time::timeout(GUARD, upstream.recv_from(&mut buf))
        .await
        .expect("the client sends a query")
        .expect("receive");
    let asked = Message::from_vec(&buf[..len]).expect("the client sends valid DNS");
    for (from, message) in script(&asked) {
        let socket = match from {
            From::Upstream => &upstream,
            From::Spoofer => &spoofer,
        };
        let bytes = message.to_vec().expect("encodes");
        socket.send_to(&bytes, client_addr).await.expect("send");
    }
    client.await.expect("no panic")
}

#[tokio::test]
async fn a_spoofed_reply_from_another_port_is_ignored_and_the_real_one_accepted() {
    let reply = scripted(GUARD, |asked| {
        vec![
            (From::Spoofer, reply(asked, 66)),
            (From::Upstream, reply(asked, 1)),
        ]
    })
    .await
    .expect("the real reply");
    assert_eq!(marker(&reply), Some(1));
}

#[tokio::test]
async fn a_reply_with_the_wrong_id_is_ignored() {
    let reply = scripted(GUARD, |asked| {
        let mut wrong = reply(asked, 66);
        wrong.metadata.id = asked.metadata.id.wrapping_add(1);
        vec![(From::Upstream, wrong), (From::Upstream, reply(asked, 1))]
    })
    .await
    .expect("the real reply");
    assert_eq!(marker(&reply), Some(1));
}

#[tokio::test]
async fn a_reply_to_another_question_is_ignored() {
    let reply = scripted(GUARD, |asked| {
        let mut other_name = reply(asked, 66);
        other_name.queries[0].set_name(Name::from_ascii("other.example.").expect("valid name"));
        let mut other_type = reply(asked, 67);
        other_type.queries[0].set_query_type(RecordType::AAAA);
        vec![
            (From::Upstream, other_name),
            (From::Upstream, other_type),
            (From::Upstream, reply(asked, 1)),
        ]
    })
    .await
    .expect("the real reply");
    assert_eq!(marker(&reply), Some(1));
}

#[tokio::test]
async fn a_reply_with_the_question_in_another_case_is_accepted() {
    let reply = scripted(GUARD, |asked| {
        let mut shouted = reply(asked, 1);
        shouted.queries[0].set_name(Name::from_ascii("SCRIPTED.Example.").expect("valid name"));
        vec![(From::Upstream, shouted)]
    })
    .await
    .expect("the reply");
    assert_eq!(marker(&reply), Some(1));
}

#[tokio::test]
async fn only_unacceptable_replies_end_in_a_timeout_that_counts_them() {
    let result = scripted(Duration::from_secs(2), |asked| {
        let mut wrong = reply(asked, 66);
        wrong.metadata.id = asked.metadata.id.wrapping_add(1);
        vec![(From::Upstream, wrong), (From::Spoofer, reply(asked, 67))]
    })
    .await;
    match result {
        Err(ClientError::Timeout { ignored, .. }) => assert_eq!(ignored, 2),
        other => panic!("expected a timeout, got {other:?}"),
    }
}

/// An upstream on one port for both transports: UDP answers with TC and no records, TCP with
/// the full answer.
#[tokio::test]
async fn a_truncated_udp_reply_is_retried_over_tcp() {
    let (udp, tcp) = bind((Ipv4Addr::LOCALHOST, 0).into()).await.expect("bind");
    let addr: SocketAddr = udp.local_addr().expect("local address");
    let client = tokio::spawn(async move { exchange(addr, &query("big.example"), GUARD).await });

    let mut buf = vec![0u8; 65535];
    let (len, client_addr) = tokio::time::timeout(GUARD, udp.recv_from(&mut buf))
        .await
        .expect("a UDP query")
        .expect("receive");
    let asked = Message::from_vec(&buf[..len]).expect("valid DNS");
    let mut truncated = asked.clone().into_response();
    truncated.metadata.truncation = true;
    udp.send_to(&truncated.to_vec().expect("encodes"), client_addr)
        .await
        .expect("send");

    let (mut stream, _) = tokio::time::timeout(GUARD, tcp.accept())
        .await
        .expect("a TCP retry")
        .expect("accept");
    let asked_again = Message::from_vec(&read_frame(&mut stream).await).expect("valid DNS");
    assert_eq!(asked_again.queries, asked.queries);
    let mut full = reply(&asked_again, 1);
    full.answers
        .extend((2..50).map(|i| a_record(full.queries[0].name(), i)));
    write_frame(&mut stream, &full.to_vec().expect("encodes")).await;

    let reply = client.await.expect("no panic").expect("the TCP reply");
    assert!(!reply.metadata.truncation);
    assert_eq!(reply.answers.len(), 49);
}

#[tokio::test]
async fn a_tcp_reply_to_another_query_is_a_mismatch() {
    let (_udp, tcp) = bind((Ipv4Addr::LOCALHOST, 0).into()).await.expect("bind");
    let addr = tcp.local_addr().expect("local address");
    let client =
        tokio::spawn(async move { exchange_tcp(addr, &query("tcp.example"), GUARD).await });

    let (mut stream, _) = tokio::time::timeout(GUARD, tcp.accept())
        .await
        .expect("a TCP query")
        .expect("accept");
    let asked = Message::from_vec(&read_frame(&mut stream).await).expect("valid DNS");
    let mut wrong = reply(&asked, 1);
    wrong.metadata.id = asked.metadata.id.wrapping_add(1);
    write_frame(&mut stream, &wrong.to_vec().expect("encodes")).await;

    assert!(matches!(
        client.await.expect("no panic"),
        Err(ClientError::Mismatch)
    ));
}
