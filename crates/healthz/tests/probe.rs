//! Probes against real DNS servers on 127.0.0.1: a kubedns from this workspace, and a fake that
//! answers, answers empty, answers the wrong question, goes silent, sends garbage or goes away.
//! Time is paused: intervals and timeouts pass instantly and in order.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{FakeDns, Kubedns, LIMIT, Mode, eventually, garbage_server, http_get};
use healthz::check::{Check, Status, Target};
use healthz::probe::{ProbeSpec, probe};
use healthz::prober::Prober;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

const TIMEOUT: Duration = Duration::from_secs(2);
const INTERVAL: Duration = Duration::from_secs(5);
/// Past an instant where two timers could fire together.
const TICK: Duration = Duration::from_millis(1);

fn spec(label: &str, server: std::net::SocketAddr, qtype: &str, transport: &str) -> ProbeSpec {
    format!("{label},{server},kubernetes.default.svc.cluster.local,5,{qtype},{transport}")
        .parse()
        .expect("valid probe")
}

#[tokio::test(start_paused = true)]
async fn a_probe_of_a_real_kubedns_passes_over_udp_and_tcp() {
    test_support::subscribe();
    let kubedns = Kubedns::start(0).await;
    for transport in ["udp", "tcp"] {
        let spec = spec("kubedns", kubedns.dns, "SRV", transport);
        let outcome = test_support::timeout_after(LIMIT, probe(&spec, TIMEOUT)).await;
        assert_eq!(outcome, Ok(()), "{transport}");
    }
    kubedns.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_probe_fails_on_a_server_that_is_silent_empty_wrong_garbled_or_gone() {
    test_support::subscribe();
    let mut fake = FakeDns::start().await;
    let udp = spec("fake", fake.addr, "SRV", "udp");
    let tcp = spec("fake", fake.addr, "SRV", "tcp");
    assert_eq!(probe(&udp, TIMEOUT).await, Ok(()));
    assert_eq!(probe(&tcp, TIMEOUT).await, Ok(()));

    let cases = [
        (
            Mode::Empty,
            "no answer records for kubernetes.default.svc.cluster.local. SRV (rcode No Error)",
            "no answer records",
        ),
        (
            Mode::WrongQuestion,
            "no matching reply within 2s (1 other datagrams ignored)",
            "reply does not match the query",
        ),
        (
            Mode::Silent,
            "no matching reply within 2s (0 other datagrams ignored)",
            "no matching reply within 2s",
        ),
    ];
    for (mode, udp_error, tcp_error) in cases {
        fake.set_mode(mode);
        let error = probe(&udp, TIMEOUT).await.expect_err("udp fails");
        assert!(error.contains(udp_error), "{mode:?} over udp: {error}");
        let error = probe(&tcp, TIMEOUT).await.expect_err("tcp fails");
        assert!(error.contains(tcp_error), "{mode:?} over tcp: {error}");
    }

    fake.stop().await;
    let error = probe(&udp, TIMEOUT).await.expect_err("nobody listens");
    assert!(error.contains("no matching reply within 2s"), "{error}");
    let error = probe(&tcp, TIMEOUT).await.expect_err("nobody listens");
    assert!(error.contains("network error"), "{error}");

    let (garbage, task) = garbage_server().await;
    let error = probe(&spec("junk", garbage, "A", "udp"), TIMEOUT)
        .await
        .expect_err("garbage is no answer");
    assert!(error.contains("(1 other datagrams ignored)"), "{error}");
    task.abort();
}

/// Runs a prober against `fake` and returns its check.
fn spawn_prober(fake: &FakeDns, shutdown: &CancellationToken) -> Arc<Check> {
    let spec = spec("fake", fake.addr, "SRV", "udp");
    let check = Arc::new(Check::new(
        "fake",
        Target::Dns(spec),
        Duration::from_secs(30),
    ));
    let prober = Prober::new(Arc::clone(&check), INTERVAL, TIMEOUT);
    tokio::spawn(prober.run(shutdown.clone()));
    check
}

#[tokio::test(start_paused = true)]
async fn a_failing_server_is_reported_sick_within_one_interval_plus_the_timeout_and_healthy_again_within_one_interval()
 {
    test_support::subscribe();
    let mut fake = FakeDns::start().await;
    let shutdown = CancellationToken::new();
    let check = spawn_prober(&fake, &shutdown);

    // The first probe comes at a random offset within the first interval.
    tokio::time::sleep(INTERVAL).await;
    assert_eq!(check.report(Instant::now()).status, Status::Passing);

    for fault in ["silent", "empty", "wrong question", "down"] {
        match fault {
            "silent" => fake.set_mode(Mode::Silent),
            "empty" => fake.set_mode(Mode::Empty),
            "wrong question" => fake.set_mode(Mode::WrongQuestion),
            _ => fake.stop().await,
        }
        tokio::time::sleep(INTERVAL + TIMEOUT + TICK).await;
        let report = check.report(Instant::now());
        assert_eq!(report.status, Status::Failing, "{fault}");

        match fault {
            "down" => fake.restart().await,
            _ => fake.set_mode(Mode::Answer),
        }
        tokio::time::sleep(INTERVAL + TICK).await;
        let report = check.report(Instant::now());
        assert_eq!(report.status, Status::Passing, "{fault}: back");
    }
    shutdown.cancel();
}

#[tokio::test(start_paused = true)]
async fn probes_keep_their_interval() {
    let fake = FakeDns::start().await;
    let shutdown = CancellationToken::new();
    let check = spawn_prober(&fake, &shutdown);
    tokio::time::sleep(INTERVAL).await;
    let first = check.report(Instant::now()).runs;
    tokio::time::sleep(INTERVAL * 10).await;
    assert_eq!(check.report(Instant::now()).runs, first + 10);
    shutdown.cancel();
}

#[tokio::test(start_paused = true)]
async fn healthz_reports_a_real_kubedns_healthy_on_every_endpoint() {
    test_support::subscribe();
    let kubedns = Kubedns::start(0).await;
    let config = common::config(&[
        "--prometheus-addr=127.0.0.1",
        "--prometheus-port=0",
        "--dnsmasq-poll-interval-ms=0",
        &format!(
            "--probe=kubedns,{},kubernetes.default.svc.cluster.local,5,SRV",
            kubedns.dns
        ),
        &format!(
            "--probe=kubedns_tcp,{},kubernetes.default.svc.cluster.local,5,SRV,tcp",
            kubedns.dns
        ),
    ]);
    let shutdown = CancellationToken::new();
    let running = healthz::start(config, shutdown.clone())
        .await
        .expect("starts");
    tokio::time::sleep(INTERVAL).await;
    for path in [
        "/healthz",
        "/healthz-kubedns",
        "/healthz-kubedns_tcp",
        "/healthcheck/kubedns",
        "/healthcheck/kubedns_tcp",
    ] {
        let reply = http_get(running.http, path).await;
        assert_eq!(reply.status, 200, "{path}: {}", reply.body);
    }
    shutdown.cancel();
    test_support::timeout_after(LIMIT, running.wait())
        .await
        .expect("clean stop");
    kubedns.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_slow_http_client_cannot_hold_up_probing() {
    use tokio::io::AsyncWriteExt;

    let fake = FakeDns::start().await;
    let config = common::config(&[
        "--prometheus-addr=127.0.0.1",
        "--prometheus-port=0",
        "--dnsmasq-poll-interval-ms=0",
        &format!(
            "--probe=fake,{},kubernetes.default.svc.cluster.local,5,SRV",
            fake.addr
        ),
    ]);
    let shutdown = CancellationToken::new();
    let running = healthz::start(config, shutdown.clone())
        .await
        .expect("starts");

    // One client stops halfway through its request; another asks and never reads.
    let mut stalled = tokio::net::TcpStream::connect(running.http)
        .await
        .expect("connect");
    stalled
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .await
        .expect("send");
    let mut unread = tokio::net::TcpStream::connect(running.http)
        .await
        .expect("connect");
    unread
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .expect("send");

    let check = Arc::clone(running.checks.get("fake").expect("known probe"));
    tokio::time::sleep(INTERVAL).await;
    let before = check.report(Instant::now()).runs;
    tokio::time::sleep(INTERVAL * 3).await;
    assert_eq!(check.report(Instant::now()).runs, before + 3);

    let reply = http_get(running.http, "/healthz-fake").await;
    assert_eq!((reply.status.as_u16(), reply.body.as_str()), (200, "ok"));
    eventually(LIMIT, "fake was queried", || {
        let queries = fake.queries();
        async move { queries >= 4 }
    })
    .await;

    shutdown.cancel();
    test_support::timeout_after(LIMIT, running.wait())
        .await
        .expect("stops despite the slow clients");
    drop((stalled, unread));
}
