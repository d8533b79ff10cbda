//! The three servers in one process, started as the binary starts them, on free loopback ports:
//! cluster names are answered through dnsmasq-rs's port by kubedns's handler with no socket in
//! between, other names go upstream, repeats come from the cache, and the health endpoints
//! answer.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::{RData, RecordType};
use kube_dns_single::{Command, Plan, Running};
use test_support::{FakeUpstream, http_get, timeout_after};
use tokio_util::sync::{CancellationToken, DropGuard};

const LOOPBACK: Ipv4Addr = Ipv4Addr::LOCALHOST;
const HANG_GUARD: Duration = Duration::from_secs(60);

fn demo_state() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/state/demo.yaml")
}

/// Two ports free for UDP and TCP, released for the servers to bind: the DNS ports the other
/// groups must name before anything is bound (everything else binds port 0).
async fn two_free_dns_ports() -> (u16, u16) {
    let mut held = Vec::new();
    let mut ports = Vec::new();
    while ports.len() < 2 {
        let (udp, tcp) = kdns_net::bind((LOOPBACK, 0).into())
            .await
            .expect("bind a free DNS port");
        ports.push(udp.local_addr().expect("bound").port());
        held.push((udp, tcp));
    }
    (ports[0], ports[1])
}

fn args(line: &[String]) -> Plan {
    let argv = std::iter::once("kube-dns-single".to_owned()).chain(line.iter().cloned());
    match kube_dns_single::parse(argv).expect("the test's command line parses") {
        Command::Run(plan) => *plan,
        Command::Print(text) => panic!("asked to print instead of run: {text}"),
    }
}

struct Started {
    running: Running,
    upstream: FakeUpstream,
    _config_dir: tempfile::TempDir,
    _stop: DropGuard,
}

/// Starts the single binary's servers with explicit groups: kubedns on the demo cluster file,
/// dnsmasq-rs sending the cluster zones to kubedns's DNS address and the rest to a fake
/// upstream, healthz probing dnsmasq-rs for an external name only (so that nothing but the test
/// itself asks kubedns, over its port or in-process).
async fn start() -> Started {
    let upstream = FakeUpstream::start((LOOPBACK, 0).into(), "example.com.", 300)
        .await
        .expect("start the fake upstream");
    let config_dir = tempfile::tempdir().expect("temp dir");
    let mut last_error = None;
    // A port found free may be taken before it is bound again; try afresh a few times.
    for _ in 0..3 {
        let (kubedns_port, dnsmasq_port) = two_free_dns_ports().await;
        let kubedns = format!("127.0.0.1#{kubedns_port}");
        let line: Vec<String> = [
            format!("--cluster-state={}", demo_state().display()),
            "--dns-bind-address=127.0.0.1".into(),
            format!("--dns-port={kubedns_port}"),
            "--http-bind-address=127.0.0.1".into(),
            "--healthz-port=0".into(),
            "--metrics-port=0".into(),
            format!("--nameservers={}", upstream.addr()),
            "--dnsmasq".into(),
            format!("-configDir={}", config_dir.path().display()),
            "--".into(),
            "-k".into(),
            "--cache-size=1000".into(),
            "--listen-address=127.0.0.1".into(),
            format!("--port={dnsmasq_port}"),
            "--metrics-port=0".into(),
            "--no-resolv".into(),
            "--no-hosts".into(),
            format!("--server=/cluster.local/{kubedns}"),
            format!("--server=/in-addr.arpa/{kubedns}"),
            format!("--server=/ip6.arpa/{kubedns}"),
            format!("--server={}", upstream.addr().to_string().replace(':', "#")),
            "--healthz".into(),
            "--port=0".into(),
            "--prometheus-addr=127.0.0.1".into(),
            format!("--probe=dnsmasq,127.0.0.1:{dnsmasq_port},probe.example.com,1,A"),
            format!("--dnsmasq-port={dnsmasq_port}"),
        ]
        .into();
        let shutdown = CancellationToken::new();
        let stop = shutdown.clone().drop_guard();
        match kube_dns_single::start(args(&line), shutdown, &tokio::runtime::Handle::current())
            .await
        {
            Ok(running) => {
                return Started {
                    running,
                    upstream,
                    _config_dir: config_dir,
                    _stop: stop,
                };
            }
            Err(e) => last_error = Some(format!("{e:#}")),
        }
    }
    panic!("kube-dns-single did not start: {last_error:?}");
}

async fn ask(server: SocketAddr, name: &str, qtype: RecordType) -> Message {
    let query = kdns_net::query_message(name, qtype).expect("valid name");
    kdns_net::exchange(server, &query, Duration::from_secs(5))
        .await
        .unwrap_or_else(|e| panic!("{name} {qtype} to {server}: {e}"))
}

fn rdata(reply: &Message) -> Vec<String> {
    let mut lines: Vec<String> = reply.answers.iter().map(|r| r.data.to_string()).collect();
    lines.sort();
    lines
}

fn socket_requests(running: &Running) -> u64 {
    let stats = &running.kubedns.dns_stats;
    stats.udp_requests.load(Ordering::Relaxed) + stats.tcp_requests.load(Ordering::Relaxed)
}

/// The in-process kubedns upstream's (queries, failures).
fn in_process_counters(running: &Running) -> (u64, u64) {
    let upstreams = running.dnsmasq.forwarder.routes().upstreams();
    let kubedns: Vec<_> = upstreams.iter().filter(|u| u.is_in_process()).collect();
    assert_eq!(
        kubedns.len(),
        1,
        "exactly one upstream, kubedns, is in-process"
    );
    assert_eq!(kubedns[0].addr(), running.kubedns.dns);
    (kubedns[0].queries(), kubedns[0].failures())
}

async fn wait_ready(running: &Running) {
    let started = Instant::now();
    timeout_after(HANG_GUARD, async {
        while !running.kubedns.readiness.is_ready() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    println!("kubedns ready after {:?}", started.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_names_are_answered_through_the_cache_port_without_a_socket_to_kubedns() {
    test_support::subscribe();
    let started = timeout_after(HANG_GUARD, start()).await;
    let running = &started.running;
    wait_ready(running).await;
    let dns = running.dnsmasq.dns[0];

    let sockets_before = socket_requests(running);
    let began = Instant::now();
    let a = ask(dns, "kubernetes.default.svc.cluster.local", RecordType::A).await;
    assert_eq!(a.metadata.response_code, ResponseCode::NoError);
    assert_eq!(rdata(&a), ["10.96.0.1"]);
    println!(
        "first cluster answer (cache miss, in-process) took {:?}",
        began.elapsed()
    );

    let srv = ask(
        dns,
        "_http._tcp.web.shop.svc.cluster.local",
        RecordType::SRV,
    )
    .await;
    assert_eq!(rdata(&srv), ["10 100 80 web.shop.svc.cluster.local."]);

    let ptr = ask(dns, "10.1.244.10.in-addr.arpa", RecordType::PTR).await;
    assert_eq!(rdata(&ptr), ["db-0.db.shop.svc.cluster.local."]);

    let missing = ask(
        dns,
        "no-such-service.default.svc.cluster.local",
        RecordType::A,
    )
    .await;
    assert_eq!(missing.metadata.response_code, ResponseCode::NXDomain);
    assert!(missing.answers.is_empty());

    assert_eq!(
        socket_requests(running),
        sockets_before,
        "no query reached kubedns's sockets"
    );
    assert_eq!(
        in_process_counters(running),
        (4, 0),
        "each cluster question went to kubedns once, in-process, and none failed"
    );

    // Repeats come from the cache: kubedns is not asked again.
    let hits_before = running.dnsmasq.forwarder.stats().hits;
    let began = Instant::now();
    let again = ask(dns, "kubernetes.default.svc.cluster.local", RecordType::A).await;
    println!("cached cluster answer took {:?}", began.elapsed());
    assert_eq!(rdata(&again), ["10.96.0.1"]);
    let missing_again = ask(
        dns,
        "no-such-service.default.svc.cluster.local",
        RecordType::A,
    )
    .await;
    assert_eq!(missing_again.metadata.response_code, ResponseCode::NXDomain);
    // At least: healthz's statistics polling (CHAOS queries, counted as hits as dnsmasq
    // counts them) may land in between.
    assert!(running.dnsmasq.forwarder.stats().hits >= hits_before + 2);
    assert_eq!(in_process_counters(running), (4, 0));
    assert_eq!(socket_requests(running), sockets_before);

    // kubedns still serves its own port, for probes and outside clients.
    let direct = ask(
        running.kubedns.dns,
        "kubernetes.default.svc.cluster.local",
        RecordType::A,
    )
    .await;
    assert_eq!(rdata(&direct), ["10.96.0.1"]);
    assert_eq!(socket_requests(running), sockets_before + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_names_go_upstream_once_and_then_come_from_the_cache() {
    test_support::subscribe();
    let started = timeout_after(HANG_GUARD, start()).await;
    let running = &started.running;
    wait_ready(running).await;
    let dns = running.dnsmasq.dns[0];
    let in_process_before = in_process_counters(running);

    let (v4, _) = FakeUpstream::addresses_of("www.example.com");
    for _ in 0..2 {
        let reply = ask(dns, "www.example.com", RecordType::A).await;
        assert_eq!(reply.metadata.response_code, ResponseCode::NoError);
        assert_eq!(
            reply
                .answers
                .iter()
                .map(|r| r.data.clone())
                .collect::<Vec<_>>(),
            [RData::A(v4.into())]
        );
    }
    assert_eq!(
        started.upstream.count("www.example.com"),
        1,
        "asked upstream once; the repeat came from the cache"
    );
    let external = running
        .dnsmasq
        .forwarder
        .routes()
        .upstreams()
        .into_iter()
        .find(|u| u.addr() == started.upstream.addr())
        .expect("the fake upstream is a default server");
    assert!(!external.is_in_process());
    assert_eq!((external.queries(), external.failures()), (1, 0));
    assert_eq!(
        in_process_counters(running),
        in_process_before,
        "kubedns was not asked for an outside name"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pods_health_endpoints_answer_from_one_process() {
    test_support::subscribe();
    let started = timeout_after(HANG_GUARD, start()).await;
    let running = &started.running;
    wait_ready(running).await;

    let (status, body) = http_get(running.kubedns.healthz, "/readiness").await;
    assert_eq!(status, 200, "/readiness: {body}");
    let metrics = running.kubedns.metrics.expect("kubedns metrics are on");
    let (status, body) = http_get(metrics, "/metrics").await;
    assert_eq!(status, 200);
    assert!(body.contains("kubedns_ready 1"), "{body}");

    // healthz's dnsmasq probe runs within its first second; wait for it to pass.
    let began = Instant::now();
    let healthz = running.healthz.http;
    let (status, body) = timeout_after(HANG_GUARD, async {
        loop {
            let (status, body) = http_get(healthz, "/healthz").await;
            if status == 200 {
                return (status, body);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    println!("/healthz passing after {:?}: {body}", began.elapsed());
    assert_eq!(status, 200);
    for path in ["/healthz-dnsmasq", "/healthcheck/dnsmasq", "/metrics"] {
        let (status, body) = http_get(healthz, path).await;
        assert_eq!(status, 200, "{path}: {body}");
    }
}
