//! Upstreams that misbehave (slow, resetting TCP, answering late) and unsolicited replies
//! flooding dnsmasq-rs's own port, while well-behaved clients keep being answered.

use std::future::Future;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::RecordType;
use kdns_net::{Handler, Request};
use test_support::{rr, timeout_after};
use tokio::net::{TcpListener, UdpSocket};
use tokio_util::sync::CancellationToken;

use crate::support::{Dnsmasq, FakeUpstream, GUARD, addresses, ask, ask_tcp, config};

/// Answers every A question with `192.0.2.66`, but only after `delay`.
struct Slow {
    delay: Duration,
}

impl Handler for Slow {
    fn handle(&self, request: Request) -> impl Future<Output = Message> + Send {
        let delay = self.delay;
        async move {
            tokio::time::sleep(delay).await;
            let mut reply = request.message.clone().into_response();
            if let Some(query) = request.message.queries.first() {
                reply.answers = vec![rr(&format!("{} 60 IN A 192.0.2.66", query.name()))];
            }
            reply
        }
    }
}

async fn slow_upstream(delay: Duration) -> (SocketAddr, tokio_util::sync::DropGuard) {
    let (addr, stop) =
        test_support::serve_dns((Ipv4Addr::LOCALHOST, 0).into(), Arc::new(Slow { delay }))
            .await
            .expect("bind");
    (addr, stop.drop_guard())
}

fn server(addr: SocketAddr) -> String {
    format!("{}#{}", addr.ip(), addr.port())
}

#[tokio::test]
async fn a_slow_upstream_within_the_timeout_is_waited_for() {
    let (slow, _guard) = slow_upstream(Duration::from_millis(100)).await;
    let backup = FakeUpstream::start([192, 0, 2, 2]).await;
    let mut config = config(&[server(slow), backup.server()]);
    config.upstream_timeout = GUARD / 2;
    let dnsmasq = Dnsmasq::start(config).await;
    let reply = timeout_after(GUARD, dnsmasq.ask("slow.example.", RecordType::A)).await;
    assert_eq!(addresses(&reply), [Ipv4Addr::new(192, 0, 2, 66)]);
    assert!(backup.asked().is_empty());
}

#[tokio::test]
async fn an_upstream_slower_than_the_timeout_fails_over_and_its_late_answer_is_not_cached() {
    let (slow, _guard) = slow_upstream(Duration::from_millis(1500)).await;
    let backup = FakeUpstream::start([192, 0, 2, 2]).await;
    // config() sets a 500 ms upstream timeout.
    let dnsmasq = Dnsmasq::start(config(&[server(slow), backup.server()])).await;
    let started = Instant::now();
    let reply = timeout_after(GUARD, dnsmasq.ask("late.example.", RecordType::A)).await;
    eprintln!("answered by the backup in {:?}", started.elapsed());
    assert_eq!(addresses(&reply), [Ipv4Addr::new(192, 0, 2, 2)]);
    // Let the slow server's answer arrive at the (closed) socket, then ask again.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let cached = timeout_after(GUARD, dnsmasq.ask("late.example.", RecordType::A)).await;
    assert_eq!(addresses(&cached), [Ipv4Addr::new(192, 0, 2, 2)]);
    assert_eq!(
        backup.count("late.example."),
        1,
        "the second answer came from the cache"
    );
}

/// A TCP listener that accepts every connection and resets it at once.
async fn resetting_upstream(stop: CancellationToken) -> SocketAddr {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("local address");
    tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                () = stop.cancelled() => return,
                accepted = listener.accept() => accepted,
            };
            if let Ok((stream, _)) = accepted {
                // Linger 0: close sends RST instead of FIN.
                let _ = stream.set_zero_linger();
                drop(stream);
            }
        }
    });
    addr
}

#[tokio::test]
async fn an_upstream_resetting_tcp_connections_fails_over_and_alone_gives_servfail() {
    let stop = CancellationToken::new();
    let _stop = stop.clone().drop_guard();
    let resetting = resetting_upstream(stop.clone()).await;
    let backup = FakeUpstream::start([192, 0, 2, 2]).await;

    let mut failover = config(&[server(resetting), backup.server()]);
    failover.always_tcp = vec![resetting];
    let dnsmasq = Dnsmasq::start(failover).await;
    let reply = timeout_after(GUARD, dnsmasq.ask("reset.example.", RecordType::A)).await;
    assert_eq!(addresses(&reply), [Ipv4Addr::new(192, 0, 2, 2)]);

    let mut alone = config(&[server(resetting)]);
    alone.always_tcp = vec![resetting];
    let dnsmasq = Dnsmasq::start(alone).await;
    let started = Instant::now();
    let reply = timeout_after(GUARD, dnsmasq.ask("reset.example.", RecordType::A)).await;
    eprintln!("SERVFAIL after {:?}", started.elapsed());
    assert_eq!(reply.metadata.response_code, ResponseCode::ServFail);
    // And it is not cached: a working server behind the same name is asked next time.
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsolicited_replies_flooding_port_53_are_dropped_and_never_cached() {
    let upstream = FakeUpstream::start([192, 0, 2, 1]).await;
    let dnsmasq = Dnsmasq::start(config(&[upstream.server()])).await;
    let target = dnsmasq.addr;
    let stop = CancellationToken::new();
    let _stop = stop.clone().drop_guard();

    let flooder = {
        let stop = stop.clone();
        tokio::spawn(async move {
            let socket = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))
                .await
                .expect("bind");
            let mut sent = 0usize;
            while !stop.is_cancelled() {
                for _ in 0..32 {
                    let mut forged = kdns_net::query_message("victim.example.", RecordType::A)
                        .expect("valid name")
                        .into_response();
                    forged.answers = vec![rr("victim.example. 86400 IN A 6.6.6.6")];
                    let _ = socket
                        .send_to(&forged.to_vec().expect("encodes"), target)
                        .await;
                    sent += 1;
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            sent
        })
    };

    for i in 0..50 {
        let name = format!("good{i}.example.");
        let reply = timeout_after(GUARD, ask(target, &name, RecordType::A)).await;
        assert_eq!(addresses(&reply), [Ipv4Addr::new(192, 0, 2, 1)], "{name}");
    }
    let reply = timeout_after(GUARD, ask_tcp(target, "victim.example.", RecordType::A)).await;
    assert_eq!(addresses(&reply), [Ipv4Addr::new(192, 0, 2, 1)]);
    stop.cancel();
    let sent = flooder.await.expect("no panic");
    eprintln!("{sent} unsolicited replies sent at port 53");
    assert!(sent >= 32);
    assert_eq!(
        upstream.count("victim.example."),
        1,
        "asked upstream, not taken from the flood"
    );
}

#[tokio::test]
async fn while_kubedns_is_down_cached_cluster_names_are_still_answered() {
    let kubedns = FakeUpstream::start([10, 96, 0, 1]).await;
    let cluster_route = format!("/cluster.local/{}", kubedns.server());
    let dnsmasq = Dnsmasq::start(config(&[cluster_route])).await;
    let name = "kubernetes.default.svc.cluster.local.";
    let before = timeout_after(GUARD, dnsmasq.ask(name, RecordType::A)).await;
    assert_eq!(addresses(&before), [Ipv4Addr::new(10, 96, 0, 1)]);

    // kubedns goes away (its sockets close).
    drop(kubedns);
    for _ in 0..20 {
        let cached = timeout_after(GUARD, dnsmasq.ask(name, RecordType::A)).await;
        assert_eq!(addresses(&cached), [Ipv4Addr::new(10, 96, 0, 1)]);
        let cached = timeout_after(GUARD, ask_tcp(dnsmasq.addr, name, RecordType::A)).await;
        assert_eq!(addresses(&cached), [Ipv4Addr::new(10, 96, 0, 1)]);
    }
    let uncached = timeout_after(
        GUARD,
        dnsmasq.ask("new.shop.svc.cluster.local.", RecordType::A),
    )
    .await;
    assert_eq!(uncached.metadata.response_code, ResponseCode::ServFail);
}
