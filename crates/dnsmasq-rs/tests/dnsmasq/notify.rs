//! NOTIFY from kubedns: cached answers at and below a changed name are dropped at once.

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use clap::Parser as _;
use dnsmasq_rs::config::NotifyPolicy;
use hickory_proto::op::{OpCode, ResponseCode};
use hickory_proto::rr::RecordType;
use test_support::timeout_after;
use tokio_util::sync::CancellationToken;

use crate::support::{Dnsmasq, FakeUpstream, GUARD, addresses, config, eventually, notify_message};

const CLUSTER_NAMES: [&str; 3] = [
    "web.shop.svc.cluster.local.",
    "x.web.shop.svc.cluster.local.",
    "db.shop.svc.cluster.local.",
];

async fn cached_cluster(notify: NotifyPolicy) -> (FakeUpstream, Dnsmasq) {
    let kubedns = FakeUpstream::start([10, 96, 10, 20]).await;
    let mut config = config(&[format!("/cluster.local/{}", kubedns.server())]);
    config.notify = notify;
    let dnsmasq = Dnsmasq::start(config).await;
    for name in CLUSTER_NAMES {
        timeout_after(GUARD, dnsmasq.ask(name, RecordType::A)).await;
    }
    (kubedns, dnsmasq)
}

async fn send_notify(dnsmasq: &Dnsmasq, name: &str) -> hickory_proto::op::Message {
    let message = notify_message(name);
    let reply = kdns_net::exchange_udp(dnsmasq.addr, &message, GUARD)
        .await
        .expect("NOTIFY is answered");
    assert_eq!(reply.metadata.op_code, OpCode::Notify);
    assert_eq!(reply.metadata.id, message.metadata.id);
    assert_eq!(reply.queries, message.queries);
    reply
}

async fn upstream_counts(kubedns: &FakeUpstream, dnsmasq: &Dnsmasq) -> Vec<usize> {
    let mut counts = Vec::new();
    for name in CLUSTER_NAMES {
        timeout_after(GUARD, dnsmasq.ask(name, RecordType::A)).await;
        counts.push(kubedns.count(name));
    }
    counts
}

#[tokio::test]
async fn notify_from_kubedns_drops_the_name_and_everything_below_it() {
    let (kubedns, dnsmasq) =
        cached_cluster(NotifyPolicy::From(vec![IpAddr::V4(Ipv4Addr::LOCALHOST)])).await;
    let reply = send_notify(&dnsmasq, "WEB.shop.svc.cluster.local.").await;
    assert_eq!(reply.metadata.response_code, ResponseCode::NoError);
    assert!(reply.metadata.authoritative);
    assert_eq!(upstream_counts(&kubedns, &dnsmasq).await, [2, 2, 1]);
}

#[tokio::test]
async fn notify_for_the_zone_apex_drops_the_whole_zone() {
    let (kubedns, dnsmasq) =
        cached_cluster(NotifyPolicy::From(vec![IpAddr::V4(Ipv4Addr::LOCALHOST)])).await;
    send_notify(&dnsmasq, "cluster.local.").await;
    assert_eq!(upstream_counts(&kubedns, &dnsmasq).await, [2, 2, 2]);
}

#[tokio::test]
async fn notify_from_another_source_is_refused_and_drops_nothing() {
    let (kubedns, dnsmasq) = cached_cluster(NotifyPolicy::From(vec![IpAddr::V4(Ipv4Addr::new(
        127, 0, 0, 2,
    ))]))
    .await;
    let reply = send_notify(&dnsmasq, "cluster.local.").await;
    assert_eq!(reply.metadata.response_code, ResponseCode::Refused);
    assert_eq!(upstream_counts(&kubedns, &dnsmasq).await, [1, 1, 1]);
}

#[tokio::test]
async fn notify_is_not_implemented_when_turned_off() {
    let (kubedns, dnsmasq) = cached_cluster(NotifyPolicy::Disabled).await;
    let reply = send_notify(&dnsmasq, "cluster.local.").await;
    assert_eq!(reply.metadata.response_code, ResponseCode::NotImp);
    assert_eq!(upstream_counts(&kubedns, &dnsmasq).await, [1, 1, 1]);
}

/// The NOTIFY path end to end: kubedns (in process, fed by a cluster-state file) notifies
/// dnsmasq-rs when a Service's address changes, and the new address is served through
/// dnsmasq-rs long before the old answer's 30 s TTL would have run out.
#[tokio::test]
async fn a_changed_service_is_served_anew_through_the_cache_as_soon_as_kubedns_publishes_it() {
    test_support::subscribe();
    let state_dir = tempfile::tempdir().expect("tempdir");
    let state = state_dir.path().join("state.yaml");
    let demo = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/fixtures/state/demo.yaml"
    ))
    .expect("the demo cluster-state file");
    std::fs::write(&state, &demo).expect("write state");

    // dnsmasq-rs first: kubedns needs its address for --notify; the route to kubedns arrives
    // through the config dir once kubedns has a port.
    let config_dir = tempfile::tempdir().expect("tempdir");
    let mut config = config(&[]);
    config.config_dir = Some(config_dir.path().to_owned());
    config.sync_interval = Duration::from_millis(50);
    config.notify = NotifyPolicy::From(vec![IpAddr::V4(Ipv4Addr::LOCALHOST)]);
    let dnsmasq = Dnsmasq::start(config).await;

    let kubedns_shutdown = CancellationToken::new();
    let _stop_kubedns = kubedns_shutdown.clone().drop_guard();
    let args = kubedns::Args::try_parse_from([
        "kubedns".to_owned(),
        format!("--cluster-state={}", state.display()),
        "--cluster-state-period=20ms".to_owned(),
        "--dns-port=0".to_owned(),
        "--dns-bind-address=127.0.0.1".to_owned(),
        "--healthz-port=0".to_owned(),
        "--metrics-port=0".to_owned(),
        "--http-bind-address=127.0.0.1".to_owned(),
        format!("--notify={}", dnsmasq.addr),
    ])
    .expect("kubedns flags");
    let kubedns = kubedns::start(args, kubedns_shutdown.clone())
        .await
        .expect("kubedns starts");
    std::fs::write(
        config_dir.path().join("stubDomains"),
        format!(r#"{{"cluster.local": ["{}"]}}"#, kubedns.dns),
    )
    .expect("write stubDomains");

    let web = "web.shop.svc.cluster.local.";
    eventually("dnsmasq-rs answers the Service through kubedns", || async {
        addresses(&dnsmasq.ask(web, RecordType::A).await) == [Ipv4Addr::new(10, 96, 10, 20)]
    })
    .await;
    let cached = timeout_after(GUARD, dnsmasq.ask(web, RecordType::A)).await;
    assert_eq!(
        addresses(&cached),
        [Ipv4Addr::new(10, 96, 10, 20)],
        "served from the cache"
    );

    let changed = demo.replacen("10.96.10.20", "10.96.10.21", 2);
    assert_ne!(changed, demo);
    let written = Instant::now();
    std::fs::write(&state, changed).expect("write state");
    eventually("the new address is served", || async {
        addresses(&dnsmasq.ask(web, RecordType::A).await) == [Ipv4Addr::new(10, 96, 10, 21)]
    })
    .await;
    let elapsed = written.elapsed();
    let accepted = dnsmasq
        .running
        .metrics
        .encode()
        .lines()
        .find_map(|l| {
            l.strip_prefix("dnsmasq_notify_total{result=\"accepted\"} ")
                .map(str::to_owned)
        })
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0);
    assert!(
        accepted >= 1,
        "the change arrived by NOTIFY, not by TTL expiry"
    );
    // Reported, not asserted: it includes the cluster-state poll period (20 ms).
    eprintln!("new Service address served through dnsmasq-rs {elapsed:?} after the change");
}
