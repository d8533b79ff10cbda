//! Shutdown under load (what SIGTERM triggers in the binary): queries already waiting on an
//! upstream are answered, then the servers drain and stop within the grace period.

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use hickory_proto::rr::RecordType;
use test_support::timeout_after;
use tokio_util::sync::CancellationToken;

use crate::support::{FakeUpstream, GUARD, addresses, ask, ask_tcp, config};

#[tokio::test]
async fn queries_in_flight_at_shutdown_are_answered_and_the_server_then_stops() {
    let (upstream, gate) = FakeUpstream::gated([192, 0, 2, 7]).await;
    let mut config = config(&[upstream.server()]);
    config.upstream_timeout = GUARD;
    let shutdown = CancellationToken::new();
    let _stop = shutdown.clone().drop_guard();
    let running = dnsmasq_rs::start(config, shutdown.clone())
        .await
        .expect("dnsmasq-rs starts");
    let addr = running.dns[0];

    // Twenty distinct names in flight over UDP and five over TCP, all held at the upstream.
    let mut clients = Vec::new();
    for i in 0..20 {
        let name = format!("udp{i}.example.");
        clients.push(tokio::spawn(async move {
            ask(addr, &name, RecordType::A).await
        }));
    }
    for i in 0..5 {
        let name = format!("tcp{i}.example.");
        clients.push(tokio::spawn(async move {
            ask_tcp(addr, &name, RecordType::A).await
        }));
    }
    let deadline = Instant::now() + GUARD;
    while upstream.asked().len() < 25 {
        assert!(
            Instant::now() < deadline,
            "queries never reached the upstream"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    let stopping = Instant::now();
    shutdown.cancel();
    gate.add_permits(25);
    for client in clients {
        let reply = timeout_after(GUARD, client).await.expect("no panic");
        assert_eq!(addresses(&reply), [Ipv4Addr::new(192, 0, 2, 7)]);
    }
    timeout_after(GUARD, running.wait())
        .await
        .expect("clean stop");
    let took = stopping.elapsed();
    // Within kdns-net's 5 s shutdown grace, or the waiting clients would have been abandoned.
    eprintln!("25 in-flight queries answered and the server stopped {took:?} after shutdown");

    // Nothing is served any more.
    let query = kdns_net::query_message("after.example.", RecordType::A).expect("valid name");
    assert!(
        kdns_net::exchange_udp(addr, &query, Duration::from_millis(300))
            .await
            .is_err()
    );
}
