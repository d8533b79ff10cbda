//! The pod end to end: the real `kubedns`, `dnsmasq-rs` and `healthz` binaries as processes on
//! loopback ports, wired as `manifests/kube-dns.yaml` (or the recommended variant) wires them,
//! kubedns fed by the Kubernetes API stand-in, dnsmasq-rs and kubedns forwarding to a fake
//! upstream for `example.com.`. Every question goes to dnsmasq-rs, the pod's port 53.
//!
//! Real processes take real time. Every wait polls for a state and is bounded by a hang guard
//! that is far shorter than the TTLs involved, so what a test proves never depends on how fast
//! the machine is; the measured latencies are printed, never judged.
//!
//! The pods run one at a time: each is three processes, and the machine may be small.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::{Name, RecordType};
use integration_tests::client::{
    addresses, answer_lines, ask, describe, http_get, is_nxdomain, must_ask, sample,
};
use integration_tests::pod::{Pod, Wiring};
use integration_tests::{eventually, repo_root};
use serde_json::Value;
use test_support::fixtures::service;
use test_support::{FakeApiServer, FakeUpstream};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

static ONE_POD_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The API stand-in serving the demo cluster (`tests/fixtures/state/demo.yaml`).
async fn demo_cluster() -> FakeApiServer {
    let api = FakeApiServer::start().await;
    let path = repo_root().join("tests/fixtures/state/demo.yaml");
    let text = std::fs::read_to_string(&path).expect("the demo cluster-state file");
    let list: Value = serde_yaml_ng::from_str(&text).expect("the demo file is YAML");
    for item in list["items"].as_array().expect("a List") {
        api.apply(item.clone());
    }
    api
}

/// A ClusterIP Service `name` in namespace `shop` at `ip`.
fn shop_service(name: &str, ip: &str) -> Value {
    service("shop", name)
        .cluster_ip(ip)
        .port("http", 80, "TCP")
        .build()
}

/// An upstream answering `zone` on a free loopback port.
async fn upstream(zone: &str) -> FakeUpstream {
    FakeUpstream::start("127.0.0.1:0".parse().expect("address"), zone, 60)
        .await
        .expect("start the fake upstream")
}

/// `name`'s A address at the fake upstreams.
fn upstream_v4(name: &str) -> IpAddr {
    IpAddr::V4(FakeUpstream::addresses_of(name).0)
}

/// Asks dnsmasq-rs until `accept` holds for the reply; returns how long that took.
async fn until_answer(
    pod: &Pod,
    name: &str,
    qtype: RecordType,
    what: &str,
    accept: impl Fn(&hickory_proto::op::Message) -> bool,
) -> Duration {
    let started = Instant::now();
    eventually(what, || async {
        let reply = ask(pod.dns(), name, qtype).await.ok()?;
        accept(&reply).then_some(())
    })
    .await;
    started.elapsed()
}

fn only_address(ip: &str) -> impl Fn(&hickory_proto::op::Message) -> bool {
    let want: BTreeSet<IpAddr> = [ip.parse().expect("an IP")].into();
    move |reply| reply.metadata.response_code == ResponseCode::NoError && addresses(reply) == want
}

/// dnsmasq-rs's count of NOTIFY messages it acted on.
async fn notifies_accepted(pod: &Pod) -> f64 {
    let (status, metrics) = http_get(pod.dnsmasq_metrics(), "/metrics").await;
    assert_eq!(status, 200, "dnsmasq-rs /metrics");
    sample(&metrics, "dnsmasq_notify_total{result=\"accepted\"}").unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pod_answers_service_headless_srv_ptr_pod_and_external_names_through_dnsmasq() {
    let _one = ONE_POD_AT_A_TIME.lock().await;
    let api = demo_cluster().await;
    let external = upstream("example.com.").await;
    let pod = Pod::start(&Wiring::new(
        "manifests/kube-dns.yaml",
        api.url(),
        external.addr(),
    ))
    .await;

    let web_v6: Ipv6Addr = "fd00:10:96::a14".parse().expect("IPv6");
    let web_v6_reverse = Name::from(web_v6).to_ascii();
    let payments = upstream_v4("payments.example.com");
    let (www_v4, www_v6) = FakeUpstream::addresses_of("www.example.com");
    let cases: Vec<(&str, RecordType, Vec<String>)> = vec![
        (
            "kubernetes.default.svc.cluster.local.",
            RecordType::A,
            vec!["kubernetes.default.svc.cluster.local. A 10.96.0.1".into()],
        ),
        (
            "web.shop.svc.cluster.local.",
            RecordType::AAAA,
            vec![format!("web.shop.svc.cluster.local. AAAA {web_v6}")],
        ),
        (
            "db.shop.svc.cluster.local.",
            RecordType::A,
            vec![
                "db.shop.svc.cluster.local. A 10.244.1.10".into(),
                "db.shop.svc.cluster.local. A 10.244.2.11".into(),
            ],
        ),
        (
            "db-0.db.shop.svc.cluster.local.",
            RecordType::A,
            vec!["db-0.db.shop.svc.cluster.local. A 10.244.1.10".into()],
        ),
        (
            "_http._tcp.web.shop.svc.cluster.local.",
            RecordType::SRV,
            vec!["_http._tcp.web.shop.svc.cluster.local. SRV 10 100 80 web.shop.svc.cluster.local.".into()],
        ),
        (
            "_postgres._tcp.db.shop.svc.cluster.local.",
            RecordType::SRV,
            vec![
                "_postgres._tcp.db.shop.svc.cluster.local. SRV 10 50 5432 db-0.db.shop.svc.cluster.local.".into(),
                "_postgres._tcp.db.shop.svc.cluster.local. SRV 10 50 5432 db-1.db.shop.svc.cluster.local.".into(),
            ],
        ),
        (
            "10.1.244.10.in-addr.arpa.",
            RecordType::PTR,
            vec!["10.1.244.10.in-addr.arpa. PTR db-0.db.shop.svc.cluster.local.".into()],
        ),
        (
            "20.10.96.10.in-addr.arpa.",
            RecordType::PTR,
            vec!["20.10.96.10.in-addr.arpa. PTR web.shop.svc.cluster.local.".into()],
        ),
        (
            &web_v6_reverse,
            RecordType::PTR,
            vec![format!("{web_v6_reverse} PTR web.shop.svc.cluster.local.")],
        ),
        (
            "10-244-1-5.shop.pod.cluster.local.",
            RecordType::A,
            vec!["10-244-1-5.shop.pod.cluster.local. A 10.244.1.5".into()],
        ),
        (
            "payments.shop.svc.cluster.local.",
            RecordType::A,
            vec![
                "payments.shop.svc.cluster.local. CNAME payments.example.com.".into(),
                format!("payments.example.com. A {payments}"),
            ],
        ),
        (
            "www.example.com.",
            RecordType::A,
            vec![format!("www.example.com. A {www_v4}")],
        ),
        (
            "www.example.com.",
            RecordType::AAAA,
            vec![format!("www.example.com. AAAA {www_v6}")],
        ),
    ];
    for (name, qtype, want) in &cases {
        let reply = must_ask(pod.dns(), name, *qtype).await;
        assert_eq!(
            reply.metadata.response_code,
            ResponseCode::NoError,
            "{name} {qtype}: {}",
            describe(&reply)
        );
        let mut want = want.clone();
        want.sort();
        assert_eq!(answer_lines(&reply), want, "{name} {qtype}");
    }
    for name in [
        "missing.shop.svc.cluster.local.",
        "nope.example.org.",
        "10-244-1-5.nowhere.svc.cluster.local.",
    ] {
        let reply = must_ask(pod.dns(), name, RecordType::A).await;
        assert!(is_nxdomain(&reply), "{name}: {}", describe(&reply));
    }
    assert!(
        external.count("www.example.com") >= 1,
        "external names came from the upstream"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_notify_a_created_changed_and_deleted_service_is_answered_long_before_its_ttl() {
    let _one = ONE_POD_AT_A_TIME.lock().await;
    let api = demo_cluster().await;
    let external = upstream("example.com.").await;
    // The recommended wiring: NOTIFY from kubedns, negative caching in dnsmasq-rs. TTLs of an
    // hour for answers and denials alike: only NOTIFY can make dnsmasq-rs let go of one within
    // the hang guard.
    let wiring = Wiring::new(
        "manifests/kube-dns-recommended.yaml",
        api.url(),
        external.addr(),
    )
    .kubedns("--ttl=3600")
    .dnsmasq("--neg-ttl=3600");
    let pod = Pod::start(&wiring).await;
    let name = "fresh.shop.svc.cluster.local.";

    let before = must_ask(pod.dns(), name, RecordType::A).await;
    assert!(is_nxdomain(&before), "{}", describe(&before));
    // Asked again: now from the negative cache.
    assert!(is_nxdomain(&must_ask(pod.dns(), name, RecordType::A).await));

    api.apply(shop_service("fresh", "10.96.77.1"));
    let created = until_answer(
        &pod,
        name,
        RecordType::A,
        "the created Service",
        only_address("10.96.77.1"),
    )
    .await;

    // A real API server keeps clusterIP immutable; the stand-in does not, and to kubedns this is
    // a MODIFIED event like any other, the shortest way to a new answer for the same name.
    api.apply(shop_service("fresh", "10.96.77.2"));
    let changed = until_answer(
        &pod,
        name,
        RecordType::A,
        "the changed Service",
        only_address("10.96.77.2"),
    )
    .await;

    assert!(api.delete("v1", "Service", "shop", "fresh"));
    let deleted = until_answer(
        &pod,
        name,
        RecordType::A,
        "the deleted Service to be gone",
        is_nxdomain,
    )
    .await;

    println!(
        "with NOTIFY (TTL 3600 s): created answered after {created:?}, changed after {changed:?}, deleted after {deleted:?}"
    );
    assert!(
        notifies_accepted(&pod).await >= 3.0,
        "dnsmasq-rs acted on a NOTIFY for each change"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_notify_a_changed_service_is_answered_once_its_ttl_runs_out() {
    let _one = ONE_POD_AT_A_TIME.lock().await;
    let api = demo_cluster().await;
    let external = upstream("example.com.").await;
    let wiring =
        Wiring::new("manifests/kube-dns.yaml", api.url(), external.addr()).kubedns("--ttl=2");
    let pod = Pod::start(&wiring).await;
    assert!(
        !pod.kubedns_args().iter().any(|a| a.starts_with("--notify")),
        "the stock wiring sends no NOTIFY"
    );
    let name = "plain.shop.svc.cluster.local.";

    api.apply(shop_service("plain", "10.96.88.1"));
    // The stock manifest does not cache NXDOMAIN, so a creation shows at once.
    until_answer(
        &pod,
        name,
        RecordType::A,
        "the created Service",
        only_address("10.96.88.1"),
    )
    .await;
    let cached = must_ask(pod.dns(), name, RecordType::A).await;
    assert!(only_address("10.96.88.1")(&cached), "{}", describe(&cached));

    api.apply(shop_service("plain", "10.96.88.2"));
    let changed = until_answer(
        &pod,
        name,
        RecordType::A,
        "the changed Service",
        only_address("10.96.88.2"),
    )
    .await;

    assert!(api.delete("v1", "Service", "shop", "plain"));
    let deleted = until_answer(
        &pod,
        name,
        RecordType::A,
        "the deleted Service to be gone",
        is_nxdomain,
    )
    .await;

    println!(
        "without NOTIFY (TTL 2 s): changed answered after {changed:?}, deleted after {deleted:?}"
    );
    assert_eq!(
        notifies_accepted(&pod).await,
        0.0,
        "the TTL did it, not a NOTIFY"
    );
}

/// Writes one key of the mounted ConfigMap as the kubelet does: the new file appears whole.
fn write_config_key(dir: &std::path::Path, key: &str, value: &str) {
    let temporary = dir.join(format!(".{key}.new"));
    std::fs::write(&temporary, value).expect("write the ConfigMap key");
    std::fs::rename(&temporary, dir.join(key)).expect("replace the ConfigMap key");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stub_domain_added_to_the_config_dir_takes_effect_and_removed_stops() {
    let _one = ONE_POD_AT_A_TIME.lock().await;
    let api = demo_cluster().await;
    let external = upstream("example.com.").await;
    let corp = upstream("corp.internal.").await;
    let pod = Pod::start(&Wiring::new(
        "manifests/kube-dns.yaml",
        api.url(),
        external.addr(),
    ))
    .await;
    let name = "db.corp.internal.";
    let want = upstream_v4(name).to_string();

    let before = must_ask(pod.dns(), name, RecordType::A).await;
    assert!(
        is_nxdomain(&before),
        "the default upstream does not know it: {}",
        describe(&before)
    );

    let started = Instant::now();
    write_config_key(
        pod.config_dir(),
        "stubDomains",
        &format!(r#"{{"corp.internal": ["{}"]}}"#, corp.addr()),
    );
    until_answer(
        &pod,
        name,
        RecordType::A,
        "the stub domain through dnsmasq-rs",
        only_address(&want),
    )
    .await;
    // kubedns reads the same ConfigMap and forwards the stub domain itself when asked.
    let kubedns_name = "api.corp.internal.";
    let kubedns_want: BTreeSet<IpAddr> = [upstream_v4(kubedns_name)].into();
    eventually("the stub domain through kubedns", || async {
        let reply = ask(pod.kubedns_dns(), kubedns_name, RecordType::A)
            .await
            .ok()?;
        (addresses(&reply) == kubedns_want).then_some(())
    })
    .await;
    println!("stub domain in effect after {:?}", started.elapsed());
    assert!(corp.count(name) >= 1, "the stub domain's server answered");

    std::fs::remove_file(pod.config_dir().join("stubDomains")).expect("remove the key");
    // The cached answer came from a route that no longer exists, so it is dropped.
    until_answer(
        &pod,
        name,
        RecordType::A,
        "the stub domain to be gone",
        is_nxdomain,
    )
    .await;
}

/// What the pod answered for existing names while kubedns was killed and restarted; shared by
/// the test and the task asking.
#[derive(Debug, Default)]
struct Tally {
    /// Set while kubedns is dead: from the kill until the new process has bound its port.
    kubedns_down: AtomicBool,
    outcomes: Mutex<Outcomes>,
}

#[derive(Debug, Default)]
struct Outcomes {
    right: usize,
    servfail: usize,
    no_reply: usize,
    wrong: Vec<String>,
    /// Questions asked while kubedns was dead.
    while_down: usize,
}

impl Tally {
    fn outcomes(&self) -> MutexGuard<'_, Outcomes> {
        self.outcomes.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn kubedns_down(&self, down: bool) {
        self.kubedns_down.store(down, Ordering::SeqCst);
    }
}

/// Asks dnsmasq-rs about existing names until `stop`, recording every outcome.
async fn keep_asking(server: SocketAddr, tally: Arc<Tally>, stop: CancellationToken) {
    let questions: [(&str, &[&str]); 3] = [
        ("web.shop.svc.cluster.local.", &["10.96.10.20"]),
        (
            "db.shop.svc.cluster.local.",
            &["10.244.1.10", "10.244.2.11"],
        ),
        ("kubernetes.default.svc.cluster.local.", &["10.96.0.1"]),
    ];
    while !stop.is_cancelled() {
        for (name, want) in questions {
            let want: BTreeSet<IpAddr> = want.iter().map(|ip| ip.parse().expect("IP")).collect();
            let down = tally.kubedns_down.load(Ordering::SeqCst);
            let result = ask(server, name, RecordType::A).await;
            let mut outcomes = tally.outcomes();
            outcomes.while_down += usize::from(down);
            match result {
                Ok(reply) if reply.metadata.response_code == ResponseCode::ServFail => {
                    outcomes.servfail += 1;
                }
                Ok(reply)
                    if reply.metadata.response_code == ResponseCode::NoError
                        && addresses(&reply) == want =>
                {
                    outcomes.right += 1;
                }
                // NXDOMAIN or NODATA for a name that exists, or other addresses: a client would
                // act on it (and may cache it).
                Ok(reply) => outcomes.wrong.push(format!("{name}: {}", describe(&reply))),
                Err(_) => outcomes.no_reply += 1,
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn healthcheck(pod: &Pod, label: &str) -> (u16, String) {
    http_get(pod.sidecar(), &format!("/healthcheck/{label}")).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_kubedns_is_reported_by_healthz_and_recovers_without_a_wrong_answer_between() {
    let _one = ONE_POD_AT_A_TIME.lock().await;
    let api = demo_cluster().await;
    let external = upstream("example.com.").await;
    // A one-second TTL, so that questions while kubedns is dead soon get past the cache to it
    // rather than all being answered from the cache.
    let wiring =
        Wiring::new("manifests/kube-dns.yaml", api.url(), external.addr()).kubedns("--ttl=1");
    let mut pod = Pod::start(&wiring).await;
    assert_eq!(healthcheck(&pod, "kubedns").await.0, 200);

    let tally = Arc::new(Tally::default());
    let stop = CancellationToken::new();
    let asking = tokio::spawn(keep_asking(pod.dns(), Arc::clone(&tally), stop.clone()));
    eventually("answers before the kill", || async {
        (tally.outcomes().right >= 6).then_some(())
    })
    .await;

    tally.kubedns_down(true);
    let killed = Instant::now();
    pod.kill_kubedns().await;
    let body = eventually("healthz to report kubedns down", || async {
        let (status, body) = healthcheck(&pod, "kubedns").await;
        (status == 503).then_some(body)
    })
    .await;
    let reported = killed.elapsed();
    assert!(body.contains(r#""IsOk":false"#), "{body}");
    assert_eq!(
        http_get(pod.sidecar(), "/healthz").await.0,
        503,
        "/healthz too"
    );
    eventually("questions asked while kubedns is dead", || async {
        (tally.outcomes().while_down >= 3).then_some(())
    })
    .await;

    let restarted = Instant::now();
    pod.restart_kubedns().await;
    tally.kubedns_down(false);
    eventually("healthz to report kubedns healthy again", || async {
        (healthcheck(&pod, "kubedns").await.0 == 200).then_some(())
    })
    .await;
    let healthy = restarted.elapsed();
    eventually("kubedns ready again", || async {
        (http_get(pod.readiness(), "/readiness").await.0 == 200).then_some(())
    })
    .await;
    let right_before = tally.outcomes().right;
    eventually("right answers through dnsmasq-rs again", || async {
        (tally.outcomes().right > right_before + 3).then_some(())
    })
    .await;
    stop.cancel();
    asking.await.expect("the asking task");

    let outcomes = tally.outcomes();
    println!(
        "kubedns killed: healthz reported it after {reported:?}, healthy {healthy:?} after the \
         restart; {} questions while it was dead; answers: {} right, {} SERVFAIL, {} without reply",
        outcomes.while_down, outcomes.right, outcomes.servfail, outcomes.no_reply
    );
    assert!(
        outcomes.wrong.is_empty(),
        "wrong answers for existing names:\n{}",
        outcomes.wrong.join("\n")
    );
}
