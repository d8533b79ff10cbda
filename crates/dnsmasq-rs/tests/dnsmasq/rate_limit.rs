//! `--rate-limit`: a flooding client network is held to its rate, partly with truncated
//! replies that send real clients to TCP, while another network is answered in full.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use dnsmasq_rs::rrl::RateLimit;
use hickory_proto::op::Message;
use hickory_proto::rr::RecordType;
use test_support::timeout_after;
use tokio::net::UdpSocket;

use crate::support::{Dnsmasq, FakeUpstream, GUARD, addresses, config};

const RATE: u32 = 20;

/// Sends `count` queries for `name` from `from` in quick bursts of 50 while collecting the
/// replies, until none came for a second. Returns the full answers, the truncated empty
/// replies, and the time from the first query sent to the last full answer received (every
/// answer was granted within it).
async fn flood(
    server: SocketAddr,
    from: Ipv4Addr,
    name: &str,
    count: u16,
) -> (usize, usize, Duration) {
    let socket = Arc::new(UdpSocket::bind((from, 0)).await.expect("bind"));
    let started = Instant::now();
    let receiver = {
        let socket = socket.clone();
        tokio::spawn(async move {
            let (mut full, mut truncated, mut last_full) = (0, 0, Duration::ZERO);
            let mut buf = vec![0u8; 4096];
            // Replies to a burst come at once; a quiet second means there are no more.
            while let Ok(Ok((len, _))) =
                tokio::time::timeout(Duration::from_secs(1), socket.recv_from(&mut buf)).await
            {
                let reply = Message::from_vec(&buf[..len]).expect("a DNS reply");
                if reply.metadata.truncation {
                    assert!(reply.answers.is_empty(), "a slipped reply carries nothing");
                    truncated += 1;
                } else {
                    assert_eq!(addresses(&reply), [Ipv4Addr::new(192, 0, 2, 1)]);
                    full += 1;
                    last_full = started.elapsed();
                }
            }
            (full, truncated, last_full)
        })
    };
    for id in 0..count {
        let mut query = kdns_net::query_message(name, RecordType::A).expect("valid name");
        query.metadata.id = id;
        socket
            .send_to(&query.to_vec().expect("encodes"), server)
            .await
            .expect("send");
        if id % 50 == 49 {
            // Lets the server drain its socket, so the kernel drops nothing.
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
    receiver.await.expect("no panic")
}

/// The value of the metric line starting with `prefix`, 0 when absent.
fn metric(page: &str, prefix: &str) -> usize {
    page.lines()
        .find_map(|line| line.strip_prefix(prefix))
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or(0)
}

#[tokio::test]
async fn a_flooding_network_is_limited_while_another_is_answered_in_full() {
    let upstream = FakeUpstream::start([192, 0, 2, 1]).await;
    let mut config = config(&[upstream.server()]);
    config.rate_limit = Some(RateLimit::new(RATE));
    let dnsmasq = Dnsmasq::start(config).await;
    // Cached first, so every answer is immediate.
    let warm = timeout_after(GUARD, dnsmasq.ask("www.example.com.", RecordType::A)).await;
    assert_eq!(addresses(&warm), [Ipv4Addr::new(192, 0, 2, 1)]);

    // 127.1.0.0/24 floods; 127.2.0.0/24 is another client network.
    let flooder = Ipv4Addr::new(127, 1, 0, 1);
    let (full, truncated, window) = timeout_after(
        GUARD * 3,
        flood(dnsmasq.addr, flooder, "www.example.com.", 500),
    )
    .await;
    // A full bucket, plus what refills while answers were being granted.
    let allowed = f64::from(RATE) * (1.0 + window.as_secs_f64());
    eprintln!(
        "flooder: 500 sent, {full} answered within {window:?}, {truncated} truncated \
         (allowed at most {allowed:.1})"
    );
    assert!(
        (full as f64) <= allowed,
        "{full} answers beyond the rate (at most {allowed:.0})"
    );
    let page = dnsmasq.running.metrics.encode();
    let slipped = metric(&page, r#"dnsmasq_rate_limited_total{action="slipped"} "#);
    let dropped = metric(&page, r#"dnsmasq_rate_limited_total{action="dropped"} "#);
    eprintln!("server: {slipped} slipped, {dropped} dropped");
    assert!(full + slipped + dropped <= 500);
    assert!(slipped + dropped >= 250, "most of the flood was limited");
    // Slip 2: every second limited query gets a truncated reply.
    assert!(
        slipped.abs_diff(dropped) <= 1,
        "{slipped} slipped, {dropped} dropped"
    );
    assert!(
        truncated > 0 && truncated <= slipped,
        "{truncated} truncated replies received"
    );

    let other = Ipv4Addr::new(127, 2, 0, 1);
    let (full, truncated, _) = timeout_after(
        GUARD * 3,
        flood(dnsmasq.addr, other, "www.example.com.", 10),
    )
    .await;
    assert_eq!(
        (full, truncated),
        (10, 0),
        "another network is answered in full"
    );

    // A real client of the limited network that gets TC retries over TCP and is answered.
    let query = kdns_net::query_message("www.example.com.", RecordType::A).expect("valid name");
    let reply = kdns_net::exchange(dnsmasq.addr, &query, GUARD)
        .await
        .expect("answered over UDP or, after TC, over TCP");
    assert_eq!(addresses(&reply), [Ipv4Addr::new(192, 0, 2, 1)]);
}

#[tokio::test]
async fn without_rate_limit_a_burst_is_answered_in_full() {
    let upstream = FakeUpstream::start([192, 0, 2, 1]).await;
    let dnsmasq = Dnsmasq::start(config(&[upstream.server()])).await;
    let warm = timeout_after(GUARD, dnsmasq.ask("www.example.com.", RecordType::A)).await;
    assert_eq!(addresses(&warm), [Ipv4Addr::new(192, 0, 2, 1)]);
    let (full, truncated, _) = timeout_after(
        GUARD * 3,
        flood(
            dnsmasq.addr,
            Ipv4Addr::new(127, 1, 0, 1),
            "www.example.com.",
            100,
        ),
    )
    .await;
    assert_eq!((full, truncated), (100, 0));
}
