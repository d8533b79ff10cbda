//! Cache-poisoning attempts against dnsmasq-rs, each expected to fail: guessable source ports
//! or IDs, replies from the wrong address or port, a flood of guessed IDs, and an upstream
//! slipping records about other names into its answer.

use std::collections::HashSet;
use std::future::Future;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::RecordType;
use kdns_net::{Handler, Request};
use test_support::{rr, timeout_after};
use tokio::net::UdpSocket;

use crate::support::{Dnsmasq, FakeUpstream, GUARD, addresses, config};

/// Answers every A question with one record `192.0.2.80` and remembers each query's source
/// port and ID.
#[derive(Default)]
struct Recorder {
    seen: Mutex<Vec<(u16, u16)>>,
}

impl Handler for Recorder {
    fn handle(&self, request: Request) -> impl Future<Output = Message> + Send {
        self.seen
            .lock()
            .expect("lock")
            .push((request.src.port(), request.message.metadata.id));
        let mut reply = request.message.clone().into_response();
        if let Some(query) = request.message.queries.first() {
            reply.answers = vec![rr(&format!("{} 60 IN A 192.0.2.80", query.name()))];
        }
        std::future::ready(reply)
    }
}

#[tokio::test]
async fn upstream_queries_use_random_source_ports_and_ids() {
    let recorder = Arc::new(Recorder::default());
    let (addr, _stop) = test_support::serve_dns((Ipv4Addr::LOCALHOST, 0).into(), recorder.clone())
        .await
        .expect("bind");
    let _stop = _stop.drop_guard();
    let dnsmasq = Dnsmasq::start(config(&[format!("{}#{}", addr.ip(), addr.port())])).await;
    const QUERIES: usize = 300;
    for i in 0..QUERIES {
        let reply =
            timeout_after(GUARD, dnsmasq.ask(&format!("n{i}.example."), RecordType::A)).await;
        assert_eq!(addresses(&reply), [Ipv4Addr::new(192, 0, 2, 80)]);
    }
    let seen = recorder.seen.lock().expect("lock").clone();
    assert_eq!(seen.len(), QUERIES);
    let ports: HashSet<u16> = seen.iter().map(|(port, _)| *port).collect();
    let ids: HashSet<u16> = seen.iter().map(|(_, id)| *id).collect();
    let min_port = seen.iter().map(|(p, _)| *p).min().unwrap_or(0);
    let max_port = seen.iter().map(|(p, _)| *p).max().unwrap_or(0);
    // An ID or port that follows from the previous one is what a spoofer predicts.
    let sequential_ids = seen
        .windows(2)
        .filter(|w| w[1].1.wrapping_sub(w[0].1) <= 1)
        .count();
    let sequential_ports = seen
        .windows(2)
        .filter(|w| w[1].0.abs_diff(w[0].0) <= 1)
        .count();
    eprintln!(
        "{QUERIES} upstream queries: {} distinct ports in {min_port}..={max_port}, {} distinct \
         IDs, {sequential_ports} sequential ports, {sequential_ids} sequential IDs",
        ports.len(),
        ids.len()
    );
    // With uniformly random 16-bit IDs, 300 draws repeat about once; with ports drawn from
    // the kernel's ephemeral range (28,000 ports) a couple of times.
    assert!(ids.len() >= QUERIES - 10, "IDs repeat: {}", ids.len());
    assert!(ports.len() >= QUERIES - 20, "ports repeat: {}", ports.len());
    assert!(max_port - min_port >= 5_000, "ports span a narrow range");
    assert!(sequential_ids <= 5 && sequential_ports <= 5);
}

/// An upstream that, for the one query it receives, first lets `attack` send whatever it
/// likes to the querying socket, then answers truthfully with `192.0.2.80`.
async fn attacked_upstream<F, Fut>(attack: F) -> (SocketAddr, tokio::task::JoinHandle<()>)
where
    F: FnOnce(Message, SocketAddr, Arc<UdpSocket>) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send,
{
    let upstream = Arc::new(
        UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .expect("bind"),
    );
    let addr = upstream.local_addr().expect("local address");
    let task = tokio::spawn(async move {
        let mut buf = vec![0u8; 4096];
        let Ok((len, client)) = upstream.recv_from(&mut buf).await else {
            return;
        };
        let Ok(asked) = Message::from_vec(&buf[..len]) else {
            return;
        };
        attack(asked.clone(), client, upstream.clone()).await;
        let mut reply = asked.clone().into_response();
        reply.answers = vec![rr("bank.example. 60 IN A 192.0.2.80")];
        let _ = upstream
            .send_to(&reply.to_vec().expect("encodes"), client)
            .await;
    });
    (addr, task)
}

/// A reply to `asked` claiming `bank.example.` is at 6.6.6.6.
fn forged(asked: &Message) -> Message {
    let mut reply = asked.clone().into_response();
    reply.answers = vec![rr("bank.example. 86400 IN A 6.6.6.6")];
    reply
}

async fn assert_truthful_and_cached(dnsmasq: &Dnsmasq) {
    for round in ["answer", "cached answer"] {
        let reply = timeout_after(GUARD, dnsmasq.ask("bank.example.", RecordType::A)).await;
        assert_eq!(addresses(&reply), [Ipv4Addr::new(192, 0, 2, 80)], "{round}");
    }
}

#[tokio::test]
async fn replies_from_another_address_or_port_are_ignored() {
    let (addr, upstream) = attacked_upstream(|asked, client, upstream| async move {
        let port = upstream.local_addr().expect("local address").port();
        let bytes = forged(&asked).to_vec().expect("encodes");
        // Right port, wrong address: 127.0.0.2 is loopback too.
        let other_address = UdpSocket::bind((Ipv4Addr::new(127, 0, 0, 2), port))
            .await
            .expect("bind 127.0.0.2 on the upstream's port");
        other_address.send_to(&bytes, client).await.expect("send");
        // Right address, wrong port.
        let other_port = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .expect("bind");
        other_port.send_to(&bytes, client).await.expect("send");
    })
    .await;
    let dnsmasq = Dnsmasq::start(config(&[format!("{}#{}", addr.ip(), addr.port())])).await;
    assert_truthful_and_cached(&dnsmasq).await;
    timeout_after(GUARD, upstream).await.expect("upstream task");
}

#[tokio::test]
async fn a_flood_of_guessed_ids_from_the_right_address_is_ignored() {
    let (addr, upstream) = attacked_upstream(|asked, client, upstream| async move {
        // Every ID but the right one: what a spoofer who knows the port has to try.
        let mut forged = forged(&asked);
        let right = asked.metadata.id;
        for step in 1..=2_000u16 {
            forged.metadata.id = right.wrapping_add(step);
            let _ = upstream
                .send_to(&forged.to_vec().expect("encodes"), client)
                .await;
        }
        // And the right ID for another question.
        let mut other = forged.clone();
        other.metadata.id = right;
        other.queries[0].set_name("evil.example.".parse().expect("name"));
        let _ = upstream
            .send_to(&other.to_vec().expect("encodes"), client)
            .await;
    })
    .await;
    let mut config = config(&[format!("{}#{}", addr.ip(), addr.port())]);
    config.upstream_timeout = GUARD / 2;
    let dnsmasq = Dnsmasq::start(config).await;
    assert_truthful_and_cached(&dnsmasq).await;
    timeout_after(GUARD, upstream).await.expect("upstream task");
}

/// Answers `www.example.com. A` truthfully, plus, in the authority and additional sections,
/// records about names it has no authority over.
struct Overreaching;

impl Handler for Overreaching {
    fn handle(&self, request: Request) -> impl Future<Output = Message> + Send {
        let mut reply = request.message.clone().into_response();
        if let Some(query) = request.message.queries.first() {
            reply.answers = vec![rr(&format!("{} 60 IN A 192.0.2.80", query.name()))];
            reply.authorities = vec![
                rr("example.com. 60 IN NS ns1.example.com."),
                rr("bank.test. 86400 IN NS ns.evil.test."),
                rr("cluster.local. 86400 IN NS ns.evil.test."),
            ];
            reply.additionals = vec![
                rr("ns1.example.com. 60 IN A 192.0.2.53"),
                rr("bank.test. 86400 IN A 6.6.6.6"),
                rr("kubernetes.default.svc.cluster.local. 86400 IN A 6.6.6.6"),
                rr("ns.evil.test. 86400 IN A 6.6.6.6"),
            ];
        }
        std::future::ready(reply)
    }
}

#[tokio::test]
async fn records_outside_the_upstreams_bailiwick_never_reach_the_cache_or_clients() {
    let (overreaching, _stop) =
        test_support::serve_dns((Ipv4Addr::LOCALHOST, 0).into(), Arc::new(Overreaching))
            .await
            .expect("bind");
    let _stop = _stop.drop_guard();
    let default = FakeUpstream::start([192, 0, 2, 1]).await;
    let cluster = FakeUpstream::start([10, 96, 0, 1]).await;
    let dnsmasq = Dnsmasq::start(config(&[
        format!("/example.com/{}#{}", overreaching.ip(), overreaching.port()),
        format!("/cluster.local/{}", cluster.server()),
        default.server(),
    ]))
    .await;

    for round in ["answer", "cached answer"] {
        let reply = timeout_after(GUARD, dnsmasq.ask("www.example.com.", RecordType::A)).await;
        assert_eq!(addresses(&reply), [Ipv4Addr::new(192, 0, 2, 80)], "{round}");
        let extra: Vec<String> = reply
            .authorities
            .iter()
            .chain(&reply.additionals)
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            extra.len(),
            2,
            "{round}: only the zone's NS and its glue stay: {extra:?}"
        );
        assert!(
            extra
                .iter()
                .all(|r| !r.contains("6.6.6.6") && !r.contains("evil")),
            "{round}: {extra:?}"
        );
    }

    let bank = timeout_after(GUARD, dnsmasq.ask("bank.test.", RecordType::A)).await;
    assert_eq!(addresses(&bank), [Ipv4Addr::new(192, 0, 2, 1)]);
    assert_eq!(default.count("bank.test."), 1, "asked where it belongs");
    let kubernetes = timeout_after(
        GUARD,
        dnsmasq.ask("kubernetes.default.svc.cluster.local.", RecordType::A),
    )
    .await;
    assert_eq!(kubernetes.metadata.response_code, ResponseCode::NoError);
    assert_eq!(addresses(&kubernetes), [Ipv4Addr::new(10, 96, 0, 1)]);
    assert_eq!(cluster.count("kubernetes.default.svc.cluster.local."), 1);

    let page = dnsmasq.running.metrics.encode();
    assert!(
        page.contains("dnsmasq_out_of_bailiwick_records_total 5"),
        "{page}"
    );
}
