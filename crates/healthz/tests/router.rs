//! The HTTP endpoints without sockets: checks in known states, requests through `oneshot`.

mod common;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::http::StatusCode;
use common::oneshot;
use healthz::check::{Check, Checks, ProbeResult, Target};
use healthz::exec::ExecSpec;
use healthz::http::{AppState, router};
use healthz::metrics::Metrics;
use serde_json::{Value, json};

const MAX_AGE: Duration = Duration::from_secs(30);

fn dns(label: &str) -> Check {
    let spec = format!("{label},127.0.0.1:10053,kubernetes.default.svc.cluster.local,5,SRV")
        .parse()
        .expect("valid probe");
    Check::new(label, Target::Dns(spec), MAX_AGE)
}

fn exec(url: &str, command: &str) -> Check {
    let spec = ExecSpec {
        url: url.into(),
        command: command.into(),
    };
    Check::new(spec.label(), Target::Exec(spec), MAX_AGE)
}

fn pass(latency_ms: u64) -> ProbeResult {
    ProbeResult::now(Duration::from_millis(latency_ms), None, String::new())
}

fn fail(error: &str, output: &str) -> ProbeResult {
    ProbeResult::now(
        Duration::from_millis(2000),
        Some(error.into()),
        output.into(),
    )
}

fn app(checks: Vec<Check>, output: bool) -> (Router, Checks) {
    let checks = Checks::new(checks);
    let metrics = Metrics::new("kubedns", checks.iter().map(|c| c.label()));
    let router = router(AppState {
        checks: checks.clone(),
        metrics,
        metrics_path: Arc::from("/metrics"),
        output,
    });
    (router, checks)
}

fn record(checks: &Checks, label: &str, result: ProbeResult) {
    checks.get(label).expect("known label").record(result);
}

#[tokio::test(start_paused = true)]
async fn healthz_is_ok_when_every_check_passes_and_names_each_one() {
    let (app, checks) = app(vec![dns("kubedns"), dns("dnsmasq")], false);
    record(&checks, "kubedns", pass(1));
    record(&checks, "dnsmasq", pass(2));

    let reply = oneshot(&app, "GET", "/healthz", None).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert!(reply.body.starts_with("ok\n"), "{}", reply.body);
    assert!(
        reply.body.contains("kubedns: ok (took 1.00ms"),
        "{}",
        reply.body
    );
    assert!(
        reply.body.contains("dnsmasq: ok (took 2.00ms"),
        "{}",
        reply.body
    );
}

#[tokio::test(start_paused = true)]
async fn healthz_says_which_check_failed_why_and_when_it_last_passed() {
    let (app, checks) = app(vec![dns("kubedns"), dns("dnsmasq")], false);
    record(&checks, "kubedns", pass(1));
    record(&checks, "dnsmasq", pass(1));
    tokio::time::advance(Duration::from_secs(5)).await;
    record(
        &checks,
        "kubedns",
        fail(
            "udp query to 127.0.0.1:10053: no matching reply within 2s",
            "",
        ),
    );

    let reply = oneshot(&app, "GET", "/healthz", None).await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
    let mut lines = reply.body.lines();
    assert_eq!(lines.next(), Some("unhealthy: kubedns"));
    let kubedns = lines.next().expect("a line per check");
    assert!(
        kubedns.starts_with(
            "kubedns: failing: udp query to 127.0.0.1:10053: no matching reply within 2s (checked "
        ),
        "{kubedns}"
    );
    assert!(kubedns.contains("1 in a row); last passed "), "{kubedns}");
    assert!(kubedns.ends_with("(5.0s ago)"), "{kubedns}");
    assert!(lines.next().is_some_and(|l| l.starts_with("dnsmasq: ok")));
}

#[tokio::test(start_paused = true)]
async fn healthz_answers_json_to_clients_that_ask_for_it() {
    let (app, checks) = app(
        vec![dns("kubedns"), exec("/healthz-dnsmasq", "nslookup x")],
        false,
    );
    record(&checks, "kubedns", pass(3));
    record(
        &checks,
        "dnsmasq",
        fail("exit status: 1", "server can't find x"),
    );

    let reply = oneshot(
        &app,
        "GET",
        "/healthz",
        Some("text/html;q=0.9, application/json"),
    )
    .await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(reply.content_type, "application/json");
    let body: Value = serde_json::from_str(&reply.body).expect("JSON body");
    assert_eq!(body["healthy"], json!(false));
    let kubedns = &body["checks"][0];
    assert_eq!(kubedns["label"], "kubedns");
    assert_eq!(kubedns["kind"], "dns");
    assert_eq!(kubedns["status"], "passing");
    assert_eq!(kubedns["path"], "/healthz-kubedns");
    assert_eq!(kubedns["error"], Value::Null);
    assert_eq!(kubedns["latency_seconds"], json!(0.003));
    assert!(
        kubedns["checked_at"]
            .as_str()
            .is_some_and(|t| t.ends_with('Z'))
    );
    assert!(kubedns["last_passed"].is_string());
    let dnsmasq = &body["checks"][1];
    assert_eq!(dnsmasq["kind"], "exec");
    assert_eq!(dnsmasq["status"], "failing");
    assert_eq!(dnsmasq["healthy"], json!(false));
    assert_eq!(dnsmasq["error"], "exit status: 1");
    assert_eq!(dnsmasq["last_passed"], Value::Null);
    assert_eq!(dnsmasq["consecutive_failures"], json!(1));

    let text = oneshot(&app, "GET", "/healthz", Some("text/plain")).await;
    assert!(
        text.body.starts_with("unhealthy: dnsmasq\n"),
        "{}",
        text.body
    );
}

#[tokio::test(start_paused = true)]
async fn healthz_is_unavailable_until_every_check_has_a_result() {
    let (app, checks) = app(vec![dns("kubedns"), dns("dnsmasq")], false);
    record(&checks, "kubedns", pass(1));
    let reply = oneshot(&app, "GET", "/healthz", None).await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        reply
            .body
            .contains("dnsmasq: waiting: waiting for first probe"),
        "{}",
        reply.body
    );
}

#[tokio::test(start_paused = true)]
async fn healthz_without_checks_is_ok() {
    let (app, _) = app(vec![], false);
    let reply = oneshot(&app, "GET", "/healthz", None).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.body, "ok: no checks configured\n");
}

#[tokio::test(start_paused = true)]
async fn per_check_paths_answer_ok_or_the_reason_as_exechealthz_did() {
    let (app, checks) = app(
        vec![
            dns("kubedns"),
            exec("/healthz-dnsmasq", "nslookup x 127.0.0.1"),
        ],
        false,
    );
    record(&checks, "kubedns", pass(1));
    record(
        &checks,
        "dnsmasq",
        fail("exit status: 1", "** server can't find x"),
    );

    let ok = oneshot(&app, "GET", "/healthz-kubedns", None).await;
    assert_eq!((ok.status, ok.body.as_str()), (StatusCode::OK, "ok"));

    let failed = oneshot(&app, "GET", "/healthz-dnsmasq", None).await;
    assert_eq!(failed.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        failed.body.starts_with(
            "Healthz probe on /healthz-dnsmasq error: Result of last exec: ** server can't find x, at "
        ),
        "{}",
        failed.body
    );
    assert!(
        failed.body.ends_with(", error exit status: 1"),
        "{}",
        failed.body
    );

    record(
        &checks,
        "kubedns",
        fail(
            "no answer records for kubernetes.default.svc.cluster.local. SRV (rcode No Error)",
            "",
        ),
    );
    let dns_failed = oneshot(&app, "GET", "/healthz-kubedns", None).await;
    assert_eq!(dns_failed.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(dns_failed.body.starts_with("Healthz probe on /healthz-kubedns error: Result of last probe of kubernetes.default.svc.cluster.local. SRV at 127.0.0.1:10053"), "{}", dns_failed.body);
    assert!(
        dns_failed.body.contains("error no answer records"),
        "{}",
        dns_failed.body
    );
}

#[tokio::test(start_paused = true)]
async fn a_result_older_than_the_maximum_age_is_too_old_to_be_useful() {
    let (app, checks) = app(vec![dns("kubedns")], false);
    record(&checks, "kubedns", pass(1));
    tokio::time::advance(MAX_AGE).await;
    assert_eq!(
        oneshot(&app, "GET", "/healthz-kubedns", None).await.status,
        StatusCode::OK
    );

    tokio::time::advance(Duration::from_secs(1)).await;
    let stale = oneshot(&app, "GET", "/healthz-kubedns", None).await;
    assert_eq!(stale.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        stale
            .body
            .starts_with("Latest result too old to be useful: "),
        "{}",
        stale.body
    );

    let sidecar = oneshot(&app, "GET", "/healthcheck/kubedns", None).await;
    assert_eq!(sidecar.status, StatusCode::SERVICE_UNAVAILABLE);
    let body: Value = serde_json::from_str(&sidecar.body).expect("JSON body");
    assert!(
        body["Err"]
            .as_str()
            .is_some_and(|e| e.starts_with("latest result too old to be useful"))
    );

    let healthz = oneshot(&app, "GET", "/healthz", None).await;
    assert_eq!(healthz.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        healthz.body.contains(
            "kubedns: stale: latest result too old to be useful: taken 31.0s ago, limit 30.0s"
        ),
        "{}",
        healthz.body
    );
}

#[tokio::test(start_paused = true)]
async fn healthcheck_answers_the_sidecar_json() {
    let (app, checks) = app(vec![dns("kubedns"), dns("dnsmasq")], false);

    let waiting = oneshot(&app, "GET", "/healthcheck/kubedns", None).await;
    assert_eq!(waiting.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(waiting.content_type, "application/json");
    let body: Value = serde_json::from_str(&waiting.body).expect("JSON body");
    assert_eq!(
        body,
        json!({"IsOk": false, "LatencySeconds": 0.0, "Err": "waiting for first probe"})
    );

    record(&checks, "kubedns", pass(250));
    record(
        &checks,
        "dnsmasq",
        fail("no answer records for x. SRV (rcode Refused)", ""),
    );
    let ok = oneshot(&app, "GET", "/healthcheck/kubedns", None).await;
    assert_eq!(ok.status, StatusCode::OK);
    let body: Value = serde_json::from_str(&ok.body).expect("JSON body");
    assert_eq!(
        body,
        json!({"IsOk": true, "LatencySeconds": 0.25, "Err": ""})
    );

    let failed = oneshot(&app, "GET", "/healthcheck/dnsmasq", None).await;
    assert_eq!(failed.status, StatusCode::SERVICE_UNAVAILABLE);
    let body: Value = serde_json::from_str(&failed.body).expect("JSON body");
    assert_eq!(
        body,
        json!({"IsOk": false, "LatencySeconds": 0.0, "Err": "no answer records for x. SRV (rcode Refused)"})
    );
}

#[tokio::test(start_paused = true)]
async fn output_mode_answers_a_passing_command_with_its_output() {
    let (app, checks) = app(vec![exec("/healthz-x", "echo fine")], true);
    checks.get("x").expect("known").record(ProbeResult {
        output: "fine\n".into(),
        ..pass(1)
    });
    let reply = oneshot(&app, "GET", "/healthz-x", None).await;
    assert_eq!(
        (reply.status, reply.body.as_str()),
        (StatusCode::OK, "fine\n")
    );
}

#[tokio::test(start_paused = true)]
async fn a_command_on_healthz_is_answered_by_the_aggregate() {
    let (app, checks) = app(vec![exec("/healthz", "true")], false);
    record(&checks, "healthz", pass(1));
    let reply = oneshot(&app, "GET", "/healthz", None).await;
    assert_eq!(reply.status, StatusCode::OK);
    record(&checks, "healthz", fail("exit status: 1", ""));
    assert_eq!(
        oneshot(&app, "GET", "/healthz", None).await.status,
        StatusCode::SERVICE_UNAVAILABLE
    );
}

#[tokio::test(start_paused = true)]
async fn unknown_paths_are_not_found_and_other_methods_not_allowed() {
    let (app, _) = app(vec![dns("kubedns")], false);
    for path in [
        "/",
        "/nope",
        "/healthz-nope",
        "/healthcheck/nope",
        "/healthcheck/",
        "/healthcheck/kubedns/x",
        "/metrics/",
        "/healthz/",
    ] {
        let reply = oneshot(&app, "GET", path, None).await;
        assert_eq!(reply.status, StatusCode::NOT_FOUND, "{path}");
    }
    for path in [
        "/healthz",
        "/metrics",
        "/healthz-kubedns",
        "/healthcheck/kubedns",
    ] {
        let reply = oneshot(&app, "POST", path, None).await;
        assert_eq!(reply.status, StatusCode::METHOD_NOT_ALLOWED, "{path}");
        let head = oneshot(&app, "HEAD", path, None).await;
        assert_ne!(head.status, StatusCode::METHOD_NOT_ALLOWED, "{path}");
    }
}

#[tokio::test(start_paused = true)]
async fn metrics_are_served_in_the_prometheus_text_format_with_up_from_the_latest_verdict() {
    let (app, checks) = app(vec![dns("kubedns")], false);
    record(&checks, "kubedns", pass(1));
    let reply = oneshot(&app, "GET", "/metrics", None).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(
        reply.content_type,
        "text/plain; version=0.0.4; charset=utf-8"
    );
    assert!(
        reply
            .body
            .contains("healthz_probe_up{probe=\"kubedns\"} 1\n"),
        "{}",
        reply.body
    );

    // No prober ran since; the result went stale and up says so.
    tokio::time::advance(MAX_AGE + Duration::from_secs(1)).await;
    let reply = oneshot(&app, "GET", "/metrics", None).await;
    assert!(
        reply
            .body
            .contains("healthz_probe_up{probe=\"kubedns\"} 0\n"),
        "{}",
        reply.body
    );
}
