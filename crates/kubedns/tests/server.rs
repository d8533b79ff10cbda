//! kubedns over real sockets on 127.0.0.1: UDP and TCP, truncation, readiness, live reload of the
//! cluster-state file, forwarding, and `dig` as a client.

mod common;

use std::io::Write;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use common::{eventually, loopback_args, query};
use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::rdata::A;
use hickory_proto::rr::{RData, Record, RecordType};
use kdns_net::{Handler, Request};
use serde_json::{Value, json};
use test_support::fixtures::{endpoint_slice, service};
use test_support::http_get;
use tokio_util::sync::{CancellationToken, DropGuard};

const TIMEOUT: Duration = Duration::from_secs(3);
const LOOPBACK: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 0);

fn state_file(objects: Vec<Value>) -> tempfile::NamedTempFile {
    let mut file = tempfile::NamedTempFile::new().expect("temp file");
    let text = json!({"apiVersion": "v1", "kind": "List", "items": objects}).to_string();
    file.write_all(text.as_bytes()).expect("write state");
    file
}

struct Kubedns {
    running: kubedns::Running,
    shutdown: CancellationToken,
}

impl Drop for Kubedns {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

async fn start(extra: &[&str]) -> Kubedns {
    let shutdown = CancellationToken::new();
    let running = kubedns::start(loopback_args(extra), shutdown.clone())
        .await
        .expect("kubedns starts");
    Kubedns { running, shutdown }
}

async fn start_with(objects: Vec<Value>, extra: &[&str]) -> (Kubedns, tempfile::NamedTempFile) {
    let file = state_file(objects);
    let path = file.path().to_str().expect("utf-8 path").to_owned();
    let mut args = vec!["--cluster-state", path.as_str()];
    args.extend_from_slice(extra);
    let kubedns = start(&args).await;
    let readiness = kubedns.running.readiness.clone();
    eventually(TIMEOUT, "kubedns ready", || {
        let r = readiness.clone();
        async move { r.is_ready() }
    })
    .await;
    (kubedns, file)
}

fn headless_with(n: usize) -> Vec<Value> {
    let mut slice = endpoint_slice("big", "many-1", "many");
    for i in 0..n {
        slice = slice.endpoint(
            &format!("10.{}.{}.{}", 100 + i / 65536, (i / 256) % 256, i % 256),
            true,
        );
    }
    vec![service("big", "many").headless().build(), slice.build()]
}

#[tokio::test]
async fn answers_over_udp_and_tcp() {
    let (k, _file) = start_with(
        vec![service("ns1", "svc1").cluster_ip("10.0.0.1").build()],
        &[],
    )
    .await;
    let q = query("svc1.ns1.svc.cluster.local.", RecordType::A);
    for reply in [
        kdns_net::exchange_udp(k.running.dns, &q, TIMEOUT)
            .await
            .expect("udp"),
        kdns_net::exchange_tcp(k.running.dns, &q, TIMEOUT)
            .await
            .expect("tcp"),
    ] {
        assert_eq!(reply.metadata.response_code, ResponseCode::NoError);
        assert!(reply.metadata.authoritative);
        test_support::assert_records_eq(
            &reply.answers,
            &["svc1.ns1.svc.cluster.local. 30 IN A 10.0.0.1"],
        );
    }
}

#[tokio::test]
async fn a_headless_service_with_500_endpoints_is_truncated_over_udp_and_whole_over_tcp() {
    let (k, _file) = start_with(headless_with(500), &[]).await;
    let q = query("many.big.svc.cluster.local.", RecordType::A);
    let udp = kdns_net::exchange_udp(k.running.dns, &q, TIMEOUT)
        .await
        .expect("udp");
    assert!(
        udp.metadata.truncation,
        "UDP answer without EDNS must be cut"
    );
    assert!(!udp.answers.is_empty() && udp.answers.len() < 500);
    assert!(udp.to_vec().expect("encodes").len() <= 512);
    let edns = kdns_net::with_edns(q.clone(), 1232);
    let udp_edns = kdns_net::exchange_udp(k.running.dns, &edns, TIMEOUT)
        .await
        .expect("udp edns");
    assert!(udp_edns.metadata.truncation);
    assert!(udp_edns.answers.len() > udp.answers.len());
    assert!(udp_edns.edns.is_some(), "EDNS queries get an OPT back");
    let tcp = kdns_net::exchange_tcp(k.running.dns, &q, TIMEOUT)
        .await
        .expect("tcp");
    assert!(!tcp.metadata.truncation);
    assert_eq!(tcp.answers.len(), 500);
}

#[tokio::test]
async fn readiness_cache_and_metrics_are_served() {
    let (k, _file) = start_with(
        vec![service("ns1", "svc1").cluster_ip("10.0.0.1").build()],
        &[],
    )
    .await;
    let (status, body) = http_get(k.running.healthz, "/readiness").await;
    assert_eq!((status, body.as_str()), (200, "ok\n"));
    let (status, body) = http_get(k.running.healthz, "/cache").await;
    assert_eq!(status, 200);
    let cache: Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(
        cache["tree"]["local"]["cluster"]["svc"]["ns1"]["svc1"]["clusterIPs"][0],
        "10.0.0.1"
    );
    let q = query("svc1.ns1.svc.cluster.local.", RecordType::A);
    kdns_net::exchange_udp(k.running.dns, &q, TIMEOUT)
        .await
        .expect("udp");
    let metrics = k.running.metrics.expect("metrics on");
    let (status, body) = http_get(metrics, "/metrics").await;
    assert_eq!(status, 200);
    for name in [
        "kubedns_dns_requests_total{qtype=\"A\",rcode=\"No Error\"} 1",
        "kubedns_dns_request_duration_seconds_count",
        "kubedns_records 2",
        "kubedns_objects{resource=\"services\"} 1",
        "kubedns_dns_programming_latency_seconds",
        "kubedns_ready 1",
    ] {
        assert!(body.contains(name), "metrics lack {name}:\n{body}");
    }
    let (status, _) = http_get(k.running.healthz, "/nope").await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn before_the_first_sync_cluster_names_get_servfail_and_readiness_is_503() {
    // An API server that never answers: kubedns stays unready and keeps trying.
    let k = start(&["--kube-master-url", "http://127.0.0.1:1"]).await;
    let (status, _) = http_get(k.running.healthz, "/readiness").await;
    assert_eq!(status, 503);
    let q = query("kubernetes.default.svc.cluster.local.", RecordType::A);
    let reply = kdns_net::exchange_udp(k.running.dns, &q, TIMEOUT)
        .await
        .expect("udp");
    assert_eq!(reply.metadata.response_code, ResponseCode::ServFail);
    let q = query("10.0.96.10.in-addr.arpa.", RecordType::PTR);
    let reply = kdns_net::exchange_udp(k.running.dns, &q, TIMEOUT)
        .await
        .expect("udp");
    assert_eq!(reply.metadata.response_code, ResponseCode::ServFail);
}

#[tokio::test]
async fn editing_the_cluster_state_file_changes_the_answers() {
    let (k, file) = start_with(
        vec![service("ns1", "svc1").cluster_ip("10.0.0.1").build()],
        &[],
    )
    .await;
    let text = json!({"apiVersion": "v1", "kind": "List", "items": [
        service("ns1", "svc1").cluster_ip("10.0.0.99").build(),
        service("ns1", "svc2").cluster_ip("10.0.0.2").build(),
    ]})
    .to_string();
    std::fs::write(file.path(), text).expect("rewrite state");
    let dns = k.running.dns;
    eventually(TIMEOUT, "new address served", || async move {
        let q = query("svc1.ns1.svc.cluster.local.", RecordType::A);
        let reply = kdns_net::exchange_udp(dns, &q, TIMEOUT).await.expect("udp");
        reply.answers.first().map(|r| r.data.to_string()) == Some("10.0.0.99".into())
    })
    .await;
    let q = query("svc2.ns1.svc.cluster.local.", RecordType::A);
    let reply = kdns_net::exchange_udp(dns, &q, TIMEOUT).await.expect("udp");
    assert_eq!(reply.answers.len(), 1);
    // A broken edit keeps the last good state.
    std::fs::write(file.path(), "{ not json").expect("rewrite state");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let reply = kdns_net::exchange_udp(dns, &q, TIMEOUT).await.expect("udp");
    assert_eq!(
        reply.answers.len(),
        1,
        "a broken file must not drop records"
    );
}

/// An upstream that answers every A question with 192.0.2.1 and counts the questions.
#[derive(Default)]
struct FakeUpstream {
    seen: std::sync::Mutex<Vec<String>>,
}

impl Handler for FakeUpstream {
    async fn handle(&self, request: Request) -> Message {
        let q = request.message.queries[0].clone();
        self.seen.lock().expect("lock").push(q.name().to_ascii());
        let mut reply = Message::response(
            request.message.metadata.id,
            request.message.metadata.op_code,
        );
        reply.metadata.recursion_available = true;
        reply.add_query(q.clone());
        if q.query_type() == RecordType::A {
            reply.add_answer(Record::from_rdata(
                q.name().clone(),
                60,
                RData::A(A::new(192, 0, 2, 1)),
            ));
        }
        reply
    }
}

/// A [`FakeUpstream`] on loopback; it stops when the guard is dropped.
async fn fake_upstream() -> (SocketAddr, Arc<FakeUpstream>, DropGuard) {
    let handler = Arc::new(FakeUpstream::default());
    let (addr, stop) = test_support::serve_dns(LOOPBACK, handler.clone())
        .await
        .expect("bind");
    (addr, handler, stop.drop_guard())
}

#[tokio::test]
async fn names_outside_the_cluster_and_unknown_reverse_names_are_forwarded() {
    let (upstream, seen, _guard) = fake_upstream().await;
    let upstream_text = upstream.to_string();
    let (k, _file) = start_with(
        vec![
            service("ns1", "ext")
                .external_name("www.example.com")
                .build(),
        ],
        &["--nameservers", &upstream_text],
    )
    .await;
    let reply = kdns_net::exchange_udp(
        k.running.dns,
        &query("www.example.org.", RecordType::A),
        TIMEOUT,
    )
    .await
    .expect("udp");
    test_support::assert_records_eq(&reply.answers, &["www.example.org. 60 IN A 192.0.2.1"]);
    let reply = kdns_net::exchange_udp(
        k.running.dns,
        &query("ext.ns1.svc.cluster.local.", RecordType::A),
        TIMEOUT,
    )
    .await
    .expect("udp");
    test_support::assert_records_eq(
        &reply.answers,
        &[
            "ext.ns1.svc.cluster.local. 30 IN CNAME www.example.com.",
            "www.example.com. 60 IN A 192.0.2.1",
        ],
    );
    let reply = kdns_net::exchange_udp(
        k.running.dns,
        &query("8.8.8.8.in-addr.arpa.", RecordType::PTR),
        TIMEOUT,
    )
    .await
    .expect("udp");
    assert_eq!(reply.metadata.response_code, ResponseCode::NoError);
    let seen = seen.seen.lock().expect("lock").clone();
    assert!(
        seen.contains(&"8.8.8.8.in-addr.arpa.".to_owned()),
        "{seen:?}"
    );
}

#[tokio::test]
async fn when_every_upstream_fails_the_client_gets_servfail() {
    // Port 1 on loopback refuses; nothing listens there.
    let (k, _file) = start_with(
        Vec::new(),
        &[
            "--nameservers",
            "127.0.0.1:1",
            "--upstream-timeout",
            "200ms",
        ],
    )
    .await;
    let reply = kdns_net::exchange_udp(
        k.running.dns,
        &query("www.example.org.", RecordType::A),
        TIMEOUT,
    )
    .await
    .expect("udp");
    assert_eq!(reply.metadata.response_code, ResponseCode::ServFail);
}

#[tokio::test]
async fn upstream_nameservers_come_from_the_config_dir() {
    let (upstream, _, _guard) = fake_upstream().await;
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(
        dir.path().join("upstreamNameservers"),
        format!("[\"{upstream}\"]"),
    )
    .expect("write config");
    let dir_text = dir.path().to_str().expect("utf-8").to_owned();
    let (k, _file) = start_with(
        Vec::new(),
        &["--config-dir", &dir_text, "--nameservers", "127.0.0.1:1"],
    )
    .await;
    let reply = kdns_net::exchange_udp(
        k.running.dns,
        &query("www.example.org.", RecordType::A),
        TIMEOUT,
    )
    .await
    .expect("udp");
    test_support::assert_records_eq(&reply.answers, &["www.example.org. 60 IN A 192.0.2.1"]);
}

#[tokio::test]
async fn dig_sees_the_answers_kube_dns_gave() {
    if !test_support::dig_available() {
        eprintln!("dig is not installed; `make test-deps` installs it");
        return;
    }
    let (k, _file) = start_with(
        vec![
            service("default", "kubernetes")
                .cluster_ip("10.96.0.1")
                .port("https", 443, "TCP")
                .build(),
            service("shop", "db")
                .headless()
                .port("postgres", 5432, "TCP")
                .build(),
            endpoint_slice("shop", "db-1", "db")
                .endpoint_with_hostname("10.244.1.10", "db-0", true)
                .port("postgres", 5432, "TCP")
                .build(),
        ],
        &[],
    )
    .await;
    let dns = k.running.dns;
    let out = test_support::dig_async(dns, &["kubernetes.default.svc.cluster.local", "SRV"]).await;
    assert_eq!(out.status, "NOERROR", "{out:?}");
    assert_eq!(
        out.answer,
        [
            "kubernetes.default.svc.cluster.local. 30 IN SRV 10 100 0 6266366134663036.kubernetes.default.svc.cluster.local."
        ]
    );
    let out = test_support::dig_async(
        dns,
        &["+tcp", "_postgres._tcp.db.shop.svc.cluster.local", "SRV"],
    )
    .await;
    assert_eq!(
        out.answer,
        [
            "_postgres._tcp.db.shop.svc.cluster.local. 30 IN SRV 10 100 5432 db-0.db.shop.svc.cluster.local."
        ]
    );
    let out = test_support::dig_async(dns, &["-x", "10.244.1.10"]).await;
    assert_eq!(
        out.answer,
        ["10.1.244.10.in-addr.arpa. 30 IN PTR db-0.db.shop.svc.cluster.local."]
    );
    let out = test_support::dig_async(dns, &["missing.shop.svc.cluster.local"]).await;
    assert_eq!(out.status, "NXDOMAIN");
    assert!(out.flags.contains(&"aa".to_owned()), "{out:?}");
}

/// Records the questions of NOTIFY messages and acknowledges them.
#[derive(Default)]
struct NotifyReceiver {
    names: std::sync::Mutex<Vec<String>>,
}

impl Handler for NotifyReceiver {
    async fn handle(&self, request: Request) -> Message {
        let q = request.message.queries[0].clone();
        if request.message.metadata.op_code == hickory_proto::op::OpCode::Notify {
            self.names.lock().expect("lock").push(q.name().to_ascii());
        }
        let mut reply = Message::response(
            request.message.metadata.id,
            request.message.metadata.op_code,
        );
        reply.add_query(q);
        reply
    }
}

#[tokio::test]
async fn changes_are_announced_with_notify() {
    let receiver = Arc::new(NotifyReceiver::default());
    let (receiver_addr, stop) = test_support::serve_dns(LOOPBACK, receiver.clone())
        .await
        .expect("bind");
    let _guard = stop.drop_guard();
    let receiver_addr = receiver_addr.to_string();
    let (_k, file) = start_with(
        vec![service("ns1", "svc1").cluster_ip("10.0.0.1").build()],
        &["--notify", &receiver_addr],
    )
    .await;
    let text = json!({"apiVersion": "v1", "kind": "List", "items": [
        service("ns1", "svc1").cluster_ip("10.0.0.2").build(),
    ]})
    .to_string();
    std::fs::write(file.path(), text).expect("rewrite state");
    let names = &receiver.names;
    eventually(TIMEOUT, "NOTIFY for the changed names", || async move {
        let names = names.lock().expect("lock");
        [
            "svc1.ns1.svc.cluster.local.",
            "1.0.0.10.in-addr.arpa.",
            "2.0.0.10.in-addr.arpa.",
        ]
        .iter()
        .all(|n| names.iter().any(|seen| seen == n))
    })
    .await;
}

#[tokio::test]
async fn sigterm_stops_the_binary_cleanly() {
    let file = state_file(vec![service("ns1", "svc1").cluster_ip("10.0.0.1").build()]);
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_kubedns"))
        .args(["--cluster-state", file.path().to_str().expect("utf-8")])
        .args(["--dns-bind-address", "127.0.0.1", "--dns-port", "0"])
        .args([
            "--http-bind-address",
            "127.0.0.1",
            "--healthz-port",
            "0",
            "--metrics-port",
            "off",
        ])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("kubedns starts");
    let pid = child.id().to_string();
    let stderr = child.stderr.take().expect("stderr");
    // Wait for the ready line, then ask for a graceful stop.
    let ready = std::thread::spawn(move || {
        use std::io::BufRead;
        let mut lines = Vec::new();
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            let done = line.contains("ready");
            lines.push(line);
            if done {
                break;
            }
        }
        lines
    });
    let lines = ready.join().expect("reader");
    assert!(lines.iter().any(|l| l.contains("ready")), "{lines:?}");
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill");
    assert!(killed.success());
    let status = child.wait().expect("exit status");
    assert!(
        status.success(),
        "SIGTERM must end with exit 0, got {status}"
    );
}

#[test]
fn a_broken_cluster_state_file_is_a_usage_error() {
    let mut file = tempfile::NamedTempFile::new().expect("temp file");
    file.write_all(b"{ not json").expect("write");
    let status = std::process::Command::new(env!("CARGO_BIN_EXE_kubedns"))
        .args([
            "--cluster-state",
            file.path().to_str().expect("utf-8"),
            "--dns-port",
            "0",
        ])
        .args(["--healthz-port", "0", "--metrics-port", "off"])
        .stderr(std::process::Stdio::null())
        .status()
        .expect("kubedns runs");
    assert_eq!(status.code(), Some(64));
    let status = std::process::Command::new(env!("CARGO_BIN_EXE_kubedns"))
        .arg("--no-such-flag")
        .stderr(std::process::Stdio::null())
        .status()
        .expect("kubedns runs");
    assert_eq!(status.code(), Some(64));
}
