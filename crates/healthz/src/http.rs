//! The HTTP endpoints, as one [`axum::Router`] over the checks and metrics.
//!
//! | path | answer |
//! |---|---|
//! | `/healthz` | 200 when every check passes, else 503; text, or JSON for `Accept: application/json` |
//! | `/healthz-<label>`, each `--url` | exechealthz: 200 `ok`, or 503 and the reason |
//! | `/healthcheck/<label>` | sidecar: `{"IsOk":..,"LatencySeconds":..,"Err":..}`, 200 or 503 |
//! | `--prometheus-path` | metrics, Prometheus text format |
//! | anything else | 404 |
//!
//! Paths from flags are looked up in a table rather than registered as routes, so no flag value
//! can be mistaken for route syntax.

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::SystemTime;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Serialize;
use tokio::time::Instant;

use crate::check::{Checks, Report, Status, Target, seconds};
use crate::metrics::{self, Metrics};

/// The aggregate health path.
pub const HEALTHZ: &str = "/healthz";

/// The sidecar's per-probe path prefix.
pub const HEALTHCHECK_PREFIX: &str = "/healthcheck/";

/// What the handlers read.
#[derive(Clone, Debug)]
pub struct AppState {
    /// The checks.
    pub checks: Checks,
    /// The metrics.
    pub metrics: Metrics,
    /// Where the metrics page is served.
    pub metrics_path: Arc<str>,
    /// exechealthz `--output`: a passing command's url answers with its output.
    pub output: bool,
}

/// The router over `state`; serve it with `axum::serve` or call it with `oneshot` in tests.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route(HEALTHZ, get(healthz))
        .route("/healthcheck/{label}", get(healthcheck))
        .fallback(by_path)
        .with_state(state)
}

async fn healthz(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let reports = state.checks.reports(Instant::now());
    let healthy = reports.iter().all(Report::healthy);
    let status = if healthy {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    if wants_json(&headers) {
        let body = HealthzJson {
            healthy,
            checks: reports.iter().map(CheckJson::from).collect(),
        };
        (status, axum::Json(body)).into_response()
    } else {
        (status, healthz_text(&reports)).into_response()
    }
}

fn wants_json(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|media| {
            let media = media.split(';').next().unwrap_or_default().trim();
            media.eq_ignore_ascii_case("application/json")
        })
}

fn healthz_text(reports: &[Report]) -> String {
    let failing: Vec<&str> = reports
        .iter()
        .filter(|r| !r.healthy())
        .map(|r| r.label.as_str())
        .collect();
    let mut text = if reports.is_empty() {
        "ok: no checks configured\n".to_owned()
    } else if failing.is_empty() {
        "ok\n".to_owned()
    } else {
        format!("unhealthy: {}\n", failing.join(", "))
    };
    for report in reports {
        let _ = writeln!(text, "{}", report_line(report));
    }
    text
}

fn report_line(report: &Report) -> String {
    let label = &report.label;
    let checked = report
        .age
        .map(|age| format!("checked {} ago", seconds(age)))
        .unwrap_or_default();
    let last_passed = match report.last_passed {
        Some((wall, ago)) => format!("last passed {} ({} ago)", timestamp(wall), seconds(ago)),
        None => "never passed".to_owned(),
    };
    let problem = report.problem().unwrap_or_default();
    match (report.status, &report.latest) {
        (Status::Passing, Some(latest)) => {
            format!("{label}: ok (took {}, {checked})", seconds(latest.latency))
        }
        (Status::Waiting, _) => format!("{label}: waiting: {problem}"),
        (Status::Failing, _) => format!(
            "{label}: failing: {problem} ({checked}, {} in a row); {last_passed}",
            report.consecutive_failures
        ),
        _ => format!("{label}: stale: {problem}; {last_passed}"),
    }
}

/// Wall-clock time as RFC 3339 in UTC, to the millisecond.
fn timestamp(time: SystemTime) -> String {
    jiff::Timestamp::try_from(time)
        .map(|ts| format!("{ts:.3}"))
        .unwrap_or_else(|_| format!("{time:?}"))
}

#[derive(Serialize)]
struct HealthzJson {
    healthy: bool,
    checks: Vec<CheckJson>,
}

#[derive(Serialize)]
struct CheckJson {
    label: String,
    kind: &'static str,
    target: String,
    path: Option<String>,
    status: Status,
    healthy: bool,
    error: Option<String>,
    latency_seconds: Option<f64>,
    checked_at: Option<String>,
    age_seconds: Option<f64>,
    last_passed: Option<String>,
    last_passed_seconds_ago: Option<f64>,
    consecutive_failures: u64,
}

impl From<&Report> for CheckJson {
    fn from(report: &Report) -> Self {
        let path = match &report.target {
            Target::Dns(_) => Some(format!("/healthz-{}", report.label)),
            Target::Exec(spec) => Some(spec.url.clone()),
        };
        Self {
            label: report.label.clone(),
            kind: report.target.kind(),
            target: report.target.to_string(),
            path,
            status: report.status,
            healthy: report.healthy(),
            error: report.problem(),
            latency_seconds: report.latest.as_ref().map(|r| r.latency.as_secs_f64()),
            checked_at: report.latest.as_ref().map(|r| timestamp(r.wall)),
            age_seconds: report.age.map(|a| a.as_secs_f64()),
            last_passed: report.last_passed.map(|(wall, _)| timestamp(wall)),
            last_passed_seconds_ago: report.last_passed.map(|(_, ago)| ago.as_secs_f64()),
            consecutive_failures: report.consecutive_failures,
        }
    }
}

/// The sidecar's body, field names and all.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct SidecarJson {
    is_ok: bool,
    latency_seconds: f64,
    err: String,
}

async fn healthcheck(State(state): State<AppState>, Path(label): Path<String>) -> Response {
    let Some(check) = state.checks.get(&label) else {
        return not_found();
    };
    let report = check.report(Instant::now());
    let (status, body) = match (report.problem(), &report.latest) {
        (None, Some(latest)) => (
            StatusCode::OK,
            SidecarJson {
                is_ok: true,
                latency_seconds: latest.latency.as_secs_f64(),
                err: String::new(),
            },
        ),
        (problem, _) => (
            StatusCode::SERVICE_UNAVAILABLE,
            SidecarJson {
                is_ok: false,
                latency_seconds: 0.0,
                err: problem.unwrap_or_default(),
            },
        ),
    };
    (status, axum::Json(body)).into_response()
}

async fn by_path(State(state): State<AppState>, method: Method, uri: Uri) -> Response {
    let path = uri.path();
    let known = path == &*state.metrics_path || state.checks.by_path(path).is_some();
    if !known {
        return not_found();
    }
    if method != Method::GET && method != Method::HEAD {
        return (
            StatusCode::METHOD_NOT_ALLOWED,
            [(header::ALLOW, "GET, HEAD")],
        )
            .into_response();
    }
    if path == &*state.metrics_path {
        let reports = state.checks.reports(Instant::now());
        state.metrics.refresh(&reports);
        return (
            [(header::CONTENT_TYPE, metrics::CONTENT_TYPE)],
            state.metrics.encode(),
        )
            .into_response();
    }
    let Some(check) = state.checks.by_path(path) else {
        return not_found();
    };
    exechealthz_answer(&check.report(Instant::now()), path, state.output)
}

/// Answers as exechealthz did: `ok`, or 503 and what went wrong.
fn exechealthz_answer(report: &Report, path: &str, output: bool) -> Response {
    let unavailable = |body: String| (StatusCode::SERVICE_UNAVAILABLE, body).into_response();
    let Some(latest) = &report.latest else {
        return unavailable("waiting for first probe".into());
    };
    let result = match &report.target {
        Target::Exec(_) => format!(
            "Result of last exec: {}, at {}, error {}",
            latest.output,
            timestamp(latest.wall),
            latest.error.as_deref().unwrap_or("<nil>")
        ),
        Target::Dns(spec) => format!(
            "Result of last probe of {} {} at {}: took {}, at {}, error {}",
            spec.name,
            spec.qtype,
            spec.server,
            seconds(latest.latency),
            timestamp(latest.wall),
            latest.error.as_deref().unwrap_or("<nil>")
        ),
    };
    match report.status {
        Status::Stale => unavailable(format!("Latest result too old to be useful: {result}.")),
        Status::Failing => unavailable(format!("Healthz probe on {path} error: {result}")),
        Status::Passing if output && matches!(report.target, Target::Exec(_)) => {
            (StatusCode::OK, latest.output.clone()).into_response()
        }
        Status::Passing => (StatusCode::OK, "ok").into_response(),
        Status::Waiting => unavailable("waiting for first probe".into()),
    }
}

fn not_found() -> Response {
    (StatusCode::NOT_FOUND, "404 page not found\n").into_response()
}
