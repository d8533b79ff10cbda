//! A check (a DNS probe or an exechealthz command), its latest result, and the verdict the HTTP
//! endpoints serve.
//!
//! Probers write results with [`Check::record`]; handlers read a [`Report`] with
//! [`Check::report`]. The lock is held only to copy a few fields, never across an await, so a
//! slow HTTP client cannot hold up a prober.

use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use tokio::time::Instant;

use crate::exec::ExecSpec;
use crate::probe::ProbeSpec;

/// What a check runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// A native DNS probe.
    Dns(ProbeSpec),
    /// An exechealthz shell command.
    Exec(ExecSpec),
}

impl Target {
    /// `dns` or `exec`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Dns(_) => "dns",
            Self::Exec(_) => "exec",
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Dns(spec) => spec.fmt(f),
            Self::Exec(spec) => write!(f, "sh -c {:?}", spec.command),
        }
    }
}

/// The outcome of one run of a check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProbeResult {
    /// When it finished, on the runtime's clock (for ages).
    pub at: Instant,
    /// When it finished, on the wall clock (for people).
    pub wall: SystemTime,
    /// How long it took.
    pub latency: Duration,
    /// Why it failed; `None` when it passed.
    pub error: Option<String>,
    /// What an exec command printed (empty for DNS probes).
    pub output: String,
}

impl ProbeResult {
    /// A result finished now.
    pub fn now(latency: Duration, error: Option<String>, output: String) -> Self {
        Self {
            at: Instant::now(),
            wall: SystemTime::now(),
            latency,
            error,
            output,
        }
    }

    /// Whether the run passed.
    pub fn passed(&self) -> bool {
        self.error.is_none()
    }
}

/// Where a check stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// No result yet.
    Waiting,
    /// The latest result passed and is recent enough.
    Passing,
    /// The latest result failed.
    Failing,
    /// The latest result is older than the check's maximum age.
    Stale,
}

/// A check's state at one moment, copied out for the HTTP layer.
#[derive(Clone, Debug)]
pub struct Report {
    /// The check's label.
    pub label: String,
    /// What it runs.
    pub target: Target,
    /// Where it stands.
    pub status: Status,
    /// The latest result, if any.
    pub latest: Option<ProbeResult>,
    /// How old the latest result is.
    pub age: Option<Duration>,
    /// When the check last passed (wall clock), and how long ago.
    pub last_passed: Option<(SystemTime, Duration)>,
    /// Failures since the last pass.
    pub consecutive_failures: u64,
    /// Results recorded so far.
    pub runs: u64,
    /// How old a result may be and still count.
    pub max_age: Duration,
}

impl Report {
    /// Whether the check counts as healthy.
    pub fn healthy(&self) -> bool {
        self.status == Status::Passing
    }

    /// Why the check is not healthy, in one line; `None` when it is.
    pub fn problem(&self) -> Option<String> {
        match (self.status, &self.latest, self.age) {
            (Status::Passing, ..) => None,
            (Status::Waiting, ..) => Some("waiting for first probe".into()),
            (Status::Stale, _, Some(age)) => Some(format!(
                "latest result too old to be useful: taken {} ago, limit {}",
                seconds(age),
                seconds(self.max_age)
            )),
            (_, Some(latest), _) => latest.error.clone(),
            _ => Some("no result".into()),
        }
    }
}

/// Formats a duration for people: `12.3s`, `0.41ms`.
pub(crate) fn seconds(d: Duration) -> String {
    if d < Duration::from_secs(1) {
        format!("{:.2}ms", d.as_secs_f64() * 1000.0)
    } else {
        format!("{:.1}s", d.as_secs_f64())
    }
}

#[derive(Debug, Default)]
struct State {
    latest: Option<ProbeResult>,
    last_passed: Option<(Instant, SystemTime)>,
    consecutive_failures: u64,
    runs: u64,
}

/// One check and its latest result.
#[derive(Debug)]
pub struct Check {
    label: String,
    target: Target,
    max_age: Duration,
    state: Mutex<State>,
}

/// What [`Check::record`] changed, for logging transitions once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transition {
    /// The first result ever, or a change between passing and failing.
    Changed,
    /// Same as before.
    Unchanged,
}

impl Check {
    /// A check with no result yet. A result older than `max_age` counts as failed.
    pub fn new(label: impl Into<String>, target: Target, max_age: Duration) -> Self {
        Self {
            label: label.into(),
            target,
            max_age,
            state: Mutex::default(),
        }
    }

    /// The check's label.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// What it runs.
    pub fn target(&self) -> &Target {
        &self.target
    }

    /// The HTTP path answering in the exechealthz style: `/healthz-<label>` for DNS probes, the
    /// `--url` for commands. `None` for a command on `/healthz`, which the aggregate answers.
    pub fn path(&self) -> Option<String> {
        match &self.target {
            Target::Dns(_) => Some(format!("/healthz-{}", self.label)),
            Target::Exec(spec) => (spec.url != crate::http::HEALTHZ).then(|| spec.url.clone()),
        }
    }

    /// Stores a result as the latest.
    pub fn record(&self, result: ProbeResult) -> Transition {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let before = state.latest.as_ref().map(ProbeResult::passed);
        state.runs += 1;
        if result.passed() {
            state.last_passed = Some((result.at, result.wall));
            state.consecutive_failures = 0;
        } else {
            state.consecutive_failures += 1;
        }
        let changed = before != Some(result.passed());
        state.latest = Some(result);
        if changed {
            Transition::Changed
        } else {
            Transition::Unchanged
        }
    }

    /// The check's state as of `now`.
    pub fn report(&self, now: Instant) -> Report {
        let state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let age = state
            .latest
            .as_ref()
            .map(|r| now.saturating_duration_since(r.at));
        let status = match (&state.latest, age) {
            (None, _) => Status::Waiting,
            (Some(_), Some(age)) if age > self.max_age => Status::Stale,
            (Some(latest), _) if latest.passed() => Status::Passing,
            (Some(_), _) => Status::Failing,
        };
        Report {
            label: self.label.clone(),
            target: self.target.clone(),
            status,
            latest: state.latest.clone(),
            age,
            last_passed: state
                .last_passed
                .map(|(at, wall)| (wall, now.saturating_duration_since(at))),
            consecutive_failures: state.consecutive_failures,
            runs: state.runs,
            max_age: self.max_age,
        }
    }
}

/// Every check, in flag order. Cheap to clone.
#[derive(Clone, Debug, Default)]
pub struct Checks(Arc<[Arc<Check>]>);

impl Checks {
    /// Wraps the checks.
    pub fn new(checks: Vec<Check>) -> Self {
        Self(checks.into_iter().map(Arc::new).collect())
    }

    /// All checks.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<Check>> {
        self.0.iter()
    }

    /// The check with this label.
    pub fn get(&self, label: &str) -> Option<&Arc<Check>> {
        self.0.iter().find(|c| c.label == label)
    }

    /// The check answering on this exechealthz-style path.
    pub fn by_path(&self, path: &str) -> Option<&Arc<Check>> {
        self.0.iter().find(|c| c.path().as_deref() == Some(path))
    }

    /// Reports for all checks as of `now`.
    pub fn reports(&self, now: Instant) -> Vec<Report> {
        self.0.iter().map(|c| c.report(now)).collect()
    }

    /// How many checks there are.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(max_age: Duration) -> Check {
        let spec = "kubedns,127.0.0.1:10053,kubernetes.default.svc.cluster.local,5,SRV"
            .parse()
            .expect("valid probe");
        Check::new("kubedns", Target::Dns(spec), max_age)
    }

    fn result(at: Instant, error: Option<&str>) -> ProbeResult {
        ProbeResult {
            at,
            wall: SystemTime::UNIX_EPOCH,
            latency: Duration::from_millis(1),
            error: error.map(str::to_owned),
            output: String::new(),
        }
    }

    #[test]
    fn a_check_waits_passes_fails_and_goes_stale_by_the_clock_it_is_given() {
        let t0 = Instant::now();
        let max_age = Duration::from_secs(30);
        let check = check(max_age);
        assert_eq!(check.report(t0).status, Status::Waiting);
        assert_eq!(
            check.report(t0).problem().as_deref(),
            Some("waiting for first probe")
        );

        assert_eq!(check.record(result(t0, None)), Transition::Changed);
        let report = check.report(t0 + Duration::from_secs(30));
        assert_eq!(report.status, Status::Passing);
        assert!(report.healthy());
        assert_eq!(report.problem(), None);

        let stale = check.report(t0 + Duration::from_secs(31));
        assert_eq!(stale.status, Status::Stale);
        let problem = stale.problem().expect("stale is a problem");
        assert!(
            problem.starts_with("latest result too old to be useful"),
            "{problem}"
        );

        let t1 = t0 + Duration::from_secs(5);
        assert_eq!(
            check.record(result(t1, Some("timeout"))),
            Transition::Changed
        );
        assert_eq!(
            check.record(result(t1, Some("timeout"))),
            Transition::Unchanged
        );
        let failing = check.report(t1);
        assert_eq!(failing.status, Status::Failing);
        assert_eq!(failing.problem().as_deref(), Some("timeout"));
        assert_eq!(failing.consecutive_failures, 2);
        let (_, ago) = failing.last_passed.expect("passed once");
        assert_eq!(ago, Duration::from_secs(5));

        check.record(result(t1, None));
        assert_eq!(check.report(t1).consecutive_failures, 0);
    }

    #[test]
    fn a_command_on_healthz_has_no_path_of_its_own() {
        let exec = |url: &str| {
            Check::new(
                "c",
                Target::Exec(ExecSpec {
                    url: url.into(),
                    command: "true".into(),
                }),
                Duration::from_secs(30),
            )
        };
        assert_eq!(exec("/healthz").path(), None);
        assert_eq!(
            exec("/healthz-kubedns").path().as_deref(),
            Some("/healthz-kubedns")
        );
        assert_eq!(
            check(Duration::ZERO).path().as_deref(),
            Some("/healthz-kubedns")
        );
    }
}
