use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use hickory_proto::op::{Edns, Message, OpCode, Query};
use hickory_proto::rr::Name;
use hickory_proto::serialize::binary::{BinDecodable, BinDecoder, BinEncodable, BinEncoder};
use kdns_net::{
    ClientError, Handler, Request, ServerConfig, WireQuery, exchange, exchange_tcp, exchange_udp,
    with_edns,
};

use crate::support::{self, Answers, GUARD, config, eventually, query, start, udp_raw};

/// A compressed A record: name pointer, type, class, TTL, length, address.
const A_RECORD_LEN: usize = 16;

/// The two ways of receiving UDP: a thread of its own (the default) and the runtime's loop.
fn udp_modes() -> [ServerConfig; 2] {
    [
        config(),
        ServerConfig {
            udp_thread: false,
            ..config()
        },
    ]
}

#[tokio::test]
async fn a_udp_query_gets_the_handler_answer() {
    for config in udp_modes() {
        let thread = config.udp_thread;
        let server = start(Answers::new(3), config).await;
        let query = query("svc.example");
        let reply = exchange_udp(server.addr, &query, GUARD)
            .await
            .expect("reply");
        assert_eq!(reply.metadata.id, query.metadata.id, "thread: {thread}");
        assert_eq!(reply.queries, query.queries);
        assert_eq!(reply.answers.len(), 3);
        assert!(!reply.metadata.truncation);
        assert_eq!(server.stats.udp_requests.load(Ordering::Relaxed), 1);
        server.stop().await.expect("stops");
    }
}

#[tokio::test]
async fn two_hundred_records_are_cut_to_512_bytes_with_tc_for_a_plain_query() {
    let server = start(Answers::new(200), config()).await;
    let bytes = udp_raw(
        server.addr,
        &query("many.example").to_vec().expect("encodes"),
    )
    .await;
    let reply = Message::from_vec(&bytes).expect("decodes");

    assert!(bytes.len() <= 512, "{} bytes", bytes.len());
    assert!(reply.metadata.truncation);
    assert!(!reply.answers.is_empty() && reply.answers.len() < 200);
    assert!(
        bytes.len() + A_RECORD_LEN > 512,
        "room was left for another record"
    );
    assert!(reply.edns.is_none());
    assert_eq!(server.stats.truncated.load(Ordering::Relaxed), 1);
}

#[tokio::test]
async fn an_edns_query_for_1232_bytes_gets_more_records_within_1232_bytes() {
    let server = start(Answers::new(200), config()).await;
    let plain = udp_raw(
        server.addr,
        &query("many.example").to_vec().expect("encodes"),
    )
    .await;
    let plain = Message::from_vec(&plain).expect("decodes");

    let edns = with_edns(query("many.example"), 1232);
    let bytes = udp_raw(server.addr, &edns.to_vec().expect("encodes")).await;
    let reply = Message::from_vec(&bytes).expect("decodes");

    assert!(bytes.len() <= 1232, "{} bytes", bytes.len());
    assert!(reply.metadata.truncation);
    assert!(reply.answers.len() > plain.answers.len());
    assert!(
        bytes.len() + A_RECORD_LEN > 1232,
        "room was left for another record"
    );
    assert!(reply.edns.is_some(), "the OPT survives truncation");
}

#[tokio::test]
async fn tcp_carries_all_two_hundred_records() {
    let server = start(Answers::new(200), config()).await;
    let reply = exchange_tcp(server.addr, &query("many.example"), GUARD)
        .await
        .expect("reply");
    assert_eq!(reply.answers.len(), 200);
    assert!(!reply.metadata.truncation);
}

#[tokio::test]
async fn the_client_falls_back_to_tcp_for_a_truncated_answer() {
    let server = start(Answers::new(200), config()).await;
    let reply = exchange(server.addr, &query("many.example"), GUARD)
        .await
        .expect("reply");
    assert_eq!(reply.answers.len(), 200);
    assert_eq!(server.stats.udp_requests.load(Ordering::Relaxed), 1);
    assert_eq!(server.stats.tcp_requests.load(Ordering::Relaxed), 1);
}

#[tokio::test]
async fn additional_records_are_dropped_before_any_answer_is_cut() {
    let handler = Answers {
        additionals: 30,
        ..Answers::new(20)
    };
    let server = start(handler, config()).await;
    let reply = exchange_udp(server.addr, &query("glue.example"), GUARD)
        .await
        .expect("reply");
    assert_eq!(reply.answers.len(), 20);
    assert!(reply.additionals.is_empty());
    assert!(
        !reply.metadata.truncation,
        "dropping additionals needs no TC"
    );
}

#[tokio::test]
async fn the_reply_has_an_opt_exactly_when_the_query_had_one() {
    for always_edns in [false, true] {
        let handler = Answers {
            always_edns,
            ..Answers::new(1)
        };
        let server = start(handler, config()).await;

        let plain = exchange_udp(server.addr, &query("opt.example"), GUARD)
            .await
            .expect("reply");
        assert!(plain.edns.is_none(), "handler OPT: {always_edns}");

        let edns = with_edns(query("opt.example"), 1232);
        let reply = exchange_udp(server.addr, &edns, GUARD)
            .await
            .expect("reply");
        assert!(reply.edns.is_some(), "handler OPT: {always_edns}");
    }
}

#[tokio::test]
async fn a_handler_that_must_wait_still_gets_its_answer_sent() {
    for config in udp_modes() {
        let (handler, gate) = Answers::gated(2);
        let server = start(handler, config).await;
        let query = query("slow.example");
        let addr = server.addr;
        let reply = tokio::spawn(async move { exchange_udp(addr, &query, GUARD).await });
        gate.add_permits(1);
        let reply = reply.await.expect("no panic").expect("reply");
        assert_eq!(reply.answers.len(), 2);
        server.stop().await.expect("stops");
    }
}

#[tokio::test]
async fn udp_requests_beyond_max_in_flight_are_dropped_and_counted() {
    let (handler, gate) = Answers::gated(1);
    let started = handler.started.clone();
    let config = ServerConfig {
        max_in_flight: 1,
        ..config()
    };
    let server = start(handler, config).await;
    let (addr, stats) = (server.addr, server.stats.clone());

    let first =
        tokio::spawn(async move { exchange_udp(addr, &query("first.example"), GUARD).await });
    eventually("the first request waits in the handler", || {
        started.load(Ordering::SeqCst) == 1
    })
    .await;

    // The second must wait as well, but the only in-flight permit is taken.
    let second = tokio::spawn(async move {
        exchange_udp(addr, &query("second.example"), Duration::from_millis(500)).await
    });
    eventually("the second request is dropped", || {
        stats.overloaded.load(Ordering::Relaxed) == 1
    })
    .await;
    assert!(matches!(
        second.await.expect("no panic"),
        Err(ClientError::Timeout { .. })
    ));

    gate.add_permits(100);
    let first = first
        .await
        .expect("no panic")
        .expect("first request answered");
    assert_eq!(first.answers.len(), 1);

    // The permit comes back once the first request's task ends, shortly after its reply.
    let mut answered = None;
    for _ in 0..20 {
        let third = query("third.example");
        if let Ok(reply) = exchange_udp(addr, &third, Duration::from_millis(500)).await {
            answered = Some(reply);
            break;
        }
    }
    assert!(
        answered.is_some(),
        "capacity is released after a request ends"
    );
}

#[tokio::test]
async fn a_burst_from_several_clients_is_answered_once_each_around_junk_and_oversized_datagrams() {
    for config in udp_modes() {
        burst_answered_once_each(config).await;
    }
}

async fn burst_answered_once_each(config: ServerConfig) {
    const CLIENTS: usize = 4;
    const QUERIES: u16 = 25;
    let server = start(Answers::new(1), config).await;
    let mut clients = Vec::new();
    for _ in 0..CLIENTS {
        clients.push(
            tokio::net::UdpSocket::bind((std::net::Ipv4Addr::LOCALHOST, 0))
                .await
                .expect("bind"),
        );
    }
    // Everything is sent at once, so it arrives in batches (full ones for the runtime's loop,
    // which does not run until this task waits), with a datagram too short to be DNS and one
    // larger than any request among the queries.
    for i in 0..QUERIES {
        for (c, client) in clients.iter().enumerate() {
            let mut message = query(&format!("q{i}.c{c}.example"));
            message.metadata.id = i;
            let bytes = message.to_vec().expect("encodes");
            client.send_to(&bytes, server.addr).await.expect("send");
            if i == QUERIES / 2 && c == 0 {
                client.send_to(&[1, 2, 3], server.addr).await.expect("send");
                client
                    .send_to(&vec![0u8; 5000], server.addr)
                    .await
                    .expect("send");
            }
        }
    }

    for (c, client) in clients.iter().enumerate() {
        for reply in one_reply_per_id(client, QUERIES).await {
            let id = reply.metadata.id;
            assert_eq!(
                reply.queries[0].name().to_ascii(),
                format!("q{id}.c{c}.example."),
                "the reply goes to the client that asked, under its ID"
            );
            assert_eq!(reply.answers.len(), 1);
        }
    }
    assert_eq!(
        server.stats.udp_requests.load(Ordering::Relaxed),
        CLIENTS as u64 * u64::from(QUERIES)
    );
    assert_eq!(server.stats.dropped.load(Ordering::Relaxed), 2);
}

/// Answers names under `wire.` from their wire form, as a cache would, and everything else
/// through [`Answers`] (the ordinary path, which the UDP thread hands to the runtime).
#[derive(Clone, Default)]
struct WireAnswers {
    ordinary: Answers,
    wire_answered: Arc<AtomicUsize>,
}

impl Handler for WireAnswers {
    const ANSWERS_WIRE: bool = true;

    fn handle(&self, request: Request) -> impl Future<Output = Message> + Send {
        self.ordinary.handle(request)
    }

    fn handle_wire(&self, query: &WireQuery<'_>, _limit: usize, reply: &mut Vec<u8>) -> bool {
        let name = Name::read(&mut BinDecoder::new(query.name)).expect("a plain query's name");
        if !name.to_ascii().starts_with("wire.") {
            return false;
        }
        let mut response = Message::response(query.id, OpCode::Query);
        response.metadata.recursion_desired = query.recursion_desired;
        response.queries = vec![Query::query(name.clone(), query.qtype)];
        response.answers = vec![support::a_record(&name, 7)];
        if query.edns.is_some() {
            response.edns = Some(Edns::new());
        }
        let mut encoder = BinEncoder::new(reply);
        response.emit(&mut encoder).expect("encodes");
        self.wire_answered.fetch_add(1, Ordering::SeqCst);
        true
    }
}

#[tokio::test]
async fn wire_answers_and_ordinary_ones_are_both_sent_once_each() {
    const QUERIES: u16 = 40;
    for config in udp_modes() {
        let handler = WireAnswers {
            ordinary: Answers::new(2),
            ..WireAnswers::default()
        };
        let (ordinary, wire) = (
            handler.ordinary.started.clone(),
            handler.wire_answered.clone(),
        );
        let server = start(handler, config).await;
        let client = tokio::net::UdpSocket::bind((std::net::Ipv4Addr::LOCALHOST, 0))
            .await
            .expect("bind");
        for id in 0..QUERIES {
            let kind = if id.is_multiple_of(2) {
                "wire"
            } else {
                "other"
            };
            let mut message = query(&format!("{kind}.q{id}.example"));
            message.metadata.id = id;
            let bytes = message.to_vec().expect("encodes");
            client.send_to(&bytes, server.addr).await.expect("send");
        }
        for reply in one_reply_per_id(&client, QUERIES).await {
            let id = reply.metadata.id;
            let kind = if id.is_multiple_of(2) {
                "wire"
            } else {
                "other"
            };
            assert_eq!(
                reply.queries[0].name().to_ascii(),
                format!("{kind}.q{id}.example.")
            );
            assert_eq!(
                reply.answers.len(),
                if id.is_multiple_of(2) { 1 } else { 2 }
            );
        }
        assert_eq!(wire.load(Ordering::SeqCst), usize::from(QUERIES / 2));
        assert_eq!(ordinary.load(Ordering::SeqCst), usize::from(QUERIES / 2));
        assert_eq!(
            server.stats.udp_requests.load(Ordering::Relaxed),
            u64::from(QUERIES)
        );
        server.stop().await.expect("stops");
    }
}

/// Receives replies on `client` until each of the IDs `0..count` has one, and fails if any ID
/// is answered twice or the replies stop coming.
async fn one_reply_per_id(client: &tokio::net::UdpSocket, count: u16) -> Vec<Message> {
    let mut replies = std::collections::BTreeMap::new();
    let mut buf = vec![0u8; 4096];
    while replies.len() < usize::from(count) {
        let (len, _) = tokio::time::timeout(GUARD, client.recv_from(&mut buf))
            .await
            .expect("every query is answered")
            .expect("receive");
        let reply = Message::from_vec(&buf[..len]).expect("decodes");
        let id = reply.metadata.id;
        assert!(id < count, "an ID never asked: {id}");
        assert!(
            replies.insert(id, reply).is_none(),
            "query {id} answered twice"
        );
    }
    replies.into_values().collect()
}
