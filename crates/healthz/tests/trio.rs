//! The whole pod on loopback: kubedns (in process), a dnsmasq in front of it (a child process),
//! and healthz probing both. Stopping kubedns turns its endpoints and `/healthz` to 503 while the
//! dnsmasq probe reports what dnsmasq really answers; starting it again turns all back to 200.
//!
//! The dnsmasq is `dnsmasq-rs` from `target/debug` when it has been built, else Debian's
//! `/usr/sbin/dnsmasq`; `HEALTHZ_TRIO_DNSMASQ` names another binary. Without any, the test
//! says so and passes. Real processes need real time: the waits below are hang guards only.

mod common;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use common::{Kubedns, LIMIT, eventually, http_get};
use healthz::check::Status;
use hickory_proto::rr::RecordType;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

const NAME: &str = "kubernetes.default.svc.cluster.local.";

/// The dnsmasq binary to run, and flags it needs beyond dnsmasq's own.
fn dnsmasq_binary() -> Option<(PathBuf, Vec<String>)> {
    if let Some(path) = std::env::var_os("HEALTHZ_TRIO_DNSMASQ") {
        return Some((PathBuf::from(path), Vec::new()));
    }
    let ours = common::repo_root().join("target/debug/dnsmasq-rs");
    if ours.exists() {
        // Its own metrics port would default to a fixed one; turn it off.
        return Some((ours, vec!["--metrics-port=0".into()]));
    }
    let debian = PathBuf::from("/usr/sbin/dnsmasq");
    debian.exists().then(|| (debian, Vec::new()))
}

/// A dnsmasq child process in front of kubedns, killed on drop (also when the test fails).
struct Dnsmasq {
    addr: SocketAddr,
    _child: Child,
}

impl Dnsmasq {
    async fn start(binary: &(PathBuf, Vec<String>), kubedns: SocketAddr) -> Self {
        for _ in 0..5 {
            // A free port: bound and released, then handed to dnsmasq.
            let port = {
                let (udp, _tcp) = kdns_net::bind("127.0.0.1:0".parse().expect("valid address"))
                    .await
                    .expect("bind");
                udp.local_addr().expect("bound").port()
            };
            let mut child = Command::new(&binary.0)
                .args([
                    "-k".to_owned(),
                    format!("--port={port}"),
                    "--listen-address=127.0.0.1".to_owned(),
                    "--bind-interfaces".to_owned(),
                    "--no-resolv".to_owned(),
                    "--no-hosts".to_owned(),
                    "--user=root".to_owned(),
                    format!("--server=/cluster.local/127.0.0.1#{}", kubedns.port()),
                    "--cache-size=1000".to_owned(),
                    "--log-facility=-".to_owned(),
                ])
                .args(&binary.1)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .kill_on_drop(true)
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start {}: {e}", binary.0.display()));
            if let Some(stderr) = child.stderr.take() {
                tokio::spawn(async move {
                    let mut lines = BufReader::new(stderr).lines();
                    while let Ok(Some(line)) = lines.next_line().await {
                        tracing::debug!(target: "dnsmasq", "{line}");
                    }
                });
            }
            let addr = SocketAddr::from(([127, 0, 0, 1], port));
            // Up once it answers anything; gone if it exited (the port was taken meanwhile).
            let deadline = Instant::now() + LIMIT;
            loop {
                if let Ok(Some(status)) = child.try_wait() {
                    tracing::warn!(%status, port, "dnsmasq exited at start; trying another port");
                    break;
                }
                if query(addr).await.is_some() {
                    return Self {
                        addr,
                        _child: child,
                    };
                }
                assert!(
                    Instant::now() < deadline,
                    "dnsmasq never answered on {addr}"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        panic!("dnsmasq did not start");
    }
}

/// Asks `server` for the probed name: `Some(answered)` if any reply came, `None` if none did.
async fn query(server: SocketAddr) -> Option<bool> {
    let query = kdns_net::query_message(NAME, RecordType::SRV).expect("valid name");
    let reply = kdns_net::exchange_udp(server, &query, Duration::from_secs(2))
        .await
        .ok()?;
    Some(!reply.answers.is_empty())
}

async fn statuses(addr: SocketAddr, paths: &[&str]) -> Vec<u16> {
    let mut codes = Vec::new();
    for path in paths {
        codes.push(http_get(addr, path).await.status.as_u16());
    }
    codes
}

const ALL: [&str; 5] = [
    "/healthz",
    "/healthz-kubedns",
    "/healthcheck/kubedns",
    "/healthz-dnsmasq",
    "/healthcheck/dnsmasq",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthz_follows_kubedns_going_away_and_coming_back_behind_dnsmasq() {
    test_support::subscribe();
    let Some(binary) = dnsmasq_binary() else {
        eprintln!("no dnsmasq binary; skipping the trio test");
        return;
    };
    tracing::info!(dnsmasq = %binary.0.display(), "trio");
    let kubedns = Kubedns::start(0).await;
    let kubedns_addr = kubedns.dns;
    let dnsmasq = Dnsmasq::start(&binary, kubedns_addr).await;

    let config = common::config(&[
        "--prometheus-addr=127.0.0.1",
        "--prometheus-port=0",
        &format!("--probe=kubedns,{kubedns_addr},kubernetes.default.svc.cluster.local,1,SRV"),
        &format!(
            "--probe=dnsmasq,{},kubernetes.default.svc.cluster.local,1,SRV",
            dnsmasq.addr
        ),
        &format!("--dnsmasq-port={}", dnsmasq.addr.port()),
        "--dnsmasq-poll-interval-ms=500",
    ]);
    let shutdown = CancellationToken::new();
    let running = healthz::start(config, shutdown.clone())
        .await
        .expect("healthz starts");
    let http = running.http;

    eventually(LIMIT, "everything healthy", || async move {
        statuses(http, &ALL).await == [200; 5]
    })
    .await;
    // The statistics come from the real dnsmasq's CHAOS answers.
    eventually(LIMIT, "dnsmasq statistics polled", || async move {
        http_get(http, "/metrics")
            .await
            .body
            .contains("\nkubedns_dnsmasq_max_size 1000\n")
    })
    .await;

    // kubedns goes away.
    kubedns.stop().await;
    eventually(LIMIT, "kubedns reported down", || async move {
        statuses(
            http,
            &["/healthz-kubedns", "/healthcheck/kubedns", "/healthz"],
        )
        .await
            == [503; 3]
    })
    .await;
    let body = http_get(http, "/healthz").await.body;
    assert!(body.contains("kubedns: failing: "), "{body}");

    // The dnsmasq probe reports what dnsmasq answers now: from its cache while the SRV
    // record's TTL lasts, and nothing once it has expired.
    let dnsmasq_check = running
        .checks
        .get("dnsmasq")
        .expect("dnsmasq probe")
        .clone();
    let answered = query(dnsmasq.addr).await.unwrap_or(false);
    let runs = dnsmasq_check.report(Instant::now()).runs;
    // Two more results: the second comes from a probe started after the query above.
    eventually(LIMIT, "two more dnsmasq probes", || {
        let now = dnsmasq_check.report(Instant::now()).runs;
        async move { now >= runs + 2 }
    })
    .await;
    let status = dnsmasq_check.report(Instant::now()).status;
    tracing::info!(answered, ?status, "dnsmasq with kubedns gone");
    assert_eq!(
        status == Status::Passing,
        answered,
        "probe verdict {status:?}, dnsmasq answered: {answered}"
    );
    let code = http_get(http, "/healthz-dnsmasq").await.status.as_u16();
    assert_eq!(code, if answered { 200 } else { 503 });

    // kubedns comes back on the same port.
    let kubedns = Kubedns::start_on(kubedns_addr.port()).await;
    eventually(LIMIT, "everything healthy again", || async move {
        statuses(http, &ALL).await == [200; 5]
    })
    .await;

    shutdown.cancel();
    test_support::timeout_after(LIMIT, running.wait())
        .await
        .expect("healthz stops");
    kubedns.stop().await;
    drop(dnsmasq);
}
