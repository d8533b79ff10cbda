//! The loop that runs one check on its schedule and records each result.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::check::{Check, ProbeResult, Target, Transition};
use crate::metrics::ProbeMetrics;
use crate::{exec, probe};

/// Runs one [`Check`] every `interval`, starting at a random offset within the first interval
/// so that checks started together do not fire together.
#[derive(Debug)]
pub struct Prober {
    check: Arc<Check>,
    metrics: Option<ProbeMetrics>,
    interval: Duration,
    timeout: Duration,
    first_delay: Duration,
    quiet: bool,
}

impl Prober {
    /// A prober for `check`, with a random start offset below `interval`.
    pub fn new(check: Arc<Check>, interval: Duration, timeout: Duration) -> Self {
        // A zero interval would spin (and tokio refuses it); the flags never give one.
        let interval = interval.max(Duration::from_millis(1));
        let millis = u64::try_from(interval.as_millis())
            .unwrap_or(u64::MAX)
            .max(1);
        Self {
            check,
            metrics: None,
            interval,
            timeout,
            first_delay: Duration::from_millis(rand::random_range(0..millis)),
            quiet: false,
        }
    }

    /// Counts each result in these metrics.
    pub fn metrics(mut self, metrics: ProbeMetrics) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// Logs only failures.
    pub fn quiet(mut self, quiet: bool) -> Self {
        self.quiet = quiet;
        self
    }

    /// Replaces the random start offset.
    pub fn first_delay(mut self, delay: Duration) -> Self {
        self.first_delay = delay;
        self
    }

    /// Runs the check once, now.
    pub async fn run_once(&self) -> ProbeResult {
        let started = Instant::now();
        let (error, output) = match self.check.target() {
            Target::Dns(spec) => (probe::probe(spec, self.timeout).await.err(), String::new()),
            Target::Exec(spec) => {
                let outcome = exec::run(&spec.command, self.timeout).await;
                (outcome.error, outcome.output)
            }
        };
        ProbeResult::now(started.elapsed(), error, output)
    }

    /// Runs the check on schedule until `shutdown`.
    pub async fn run(self, shutdown: CancellationToken) {
        let label = self.check.label().to_owned();
        debug!(probe = %label, target = %self.check.target(), first_in = ?self.first_delay, "probe scheduled");
        let mut ticker = tokio::time::interval_at(probe::deadline(self.first_delay), self.interval);
        // A probe that overruns its interval pushes the next one back instead of bunching up.
        ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                _ = ticker.tick() => {}
            }
            let result = tokio::select! {
                () = shutdown.cancelled() => return,
                result = self.run_once() => result,
            };
            if let Some(metrics) = &self.metrics {
                metrics.observe(&result);
            }
            let passed = result.passed();
            let latency = result.latency;
            let error = result.error.clone();
            let transition = self.check.record(result);
            match (passed, transition) {
                (false, Transition::Changed) => {
                    warn!(probe = %label, error = error.as_deref().unwrap_or_default(), "probe failing");
                }
                (false, Transition::Unchanged) => {
                    debug!(probe = %label, error = error.as_deref().unwrap_or_default(), "probe still failing");
                }
                (true, Transition::Changed) if !self.quiet => {
                    info!(probe = %label, ?latency, "probe passing");
                }
                (true, _) => debug!(probe = %label, ?latency, "probe passed"),
            }
        }
    }
}
