//! healthz's metrics, registered in one place and passed in explicitly.
//!
//! Two families:
//! - the sidecar's, under `--prometheus-namespace` (`kubedns`), with its exact names, which
//!   dashboards already query: `kubedns_dnsmasq_*` and `kubedns_probe_<label>_*`. Their counters
//!   carry no `_total` suffix, as the Go client wrote them.
//! - this implementation's own, `healthz_probe_*`, labelled by probe.
//!
//! The page is written in the Prometheus text format 0.0.4, which the legacy names need (the
//! OpenMetrics format would demand `_total` on every counter).

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use prometheus_client::encoding::{EncodeLabelSet, EncodeMetric, MetricEncoder};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::metrics::{MetricType, TypedMetric};
use prometheus_client::registry::Registry;

use crate::check::{ProbeResult, Report};
use crate::dnsmasq::Statistics;

/// The content type of [`Metrics::encode`]'s output.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// A counter written under its bare name, as the sidecar's Go client wrote counters.
#[derive(Clone, Debug, Default)]
pub struct LegacyCounter(Arc<AtomicU64>);

impl LegacyCounter {
    /// Adds one.
    pub fn inc(&self) {
        self.inc_by(1);
    }

    /// Adds `n`.
    pub fn inc_by(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }

    /// The current value.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }

    /// Raises the counter to `value` if it is below; never lowers it.
    fn raise_to(&self, value: u64) {
        self.0.fetch_max(value, Ordering::Relaxed);
    }
}

impl TypedMetric for LegacyCounter {
    const TYPE: MetricType = MetricType::Counter;
}

impl EncodeMetric for LegacyCounter {
    fn encode(&self, mut encoder: MetricEncoder<'_>) -> fmt::Result {
        // A gauge sample is the bare name and a value: the legacy counter line.
        encoder.encode_gauge(&self.get())
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Counter
    }
}

/// How much a dnsmasq counter grew between two polls. A value below the previous one means
/// dnsmasq restarted and counts from zero again, so all of it is new.
pub fn increase(previous: Option<u64>, current: u64) -> u64 {
    match previous {
        Some(previous) if current >= previous => current - previous,
        _ => current,
    }
}

/// `kubedns_dnsmasq_*`.
#[derive(Clone, Debug, Default)]
pub struct DnsmasqMetrics {
    /// `hits`
    pub hits: LegacyCounter,
    /// `misses`
    pub misses: LegacyCounter,
    /// `evictions`
    pub evictions: LegacyCounter,
    /// `insertions`
    pub insertions: LegacyCounter,
    /// `max_size`, from `cachesize.bind`: the largest cache size seen.
    pub max_size: LegacyCounter,
    /// Failed polls.
    pub errors: LegacyCounter,
}

impl DnsmasqMetrics {
    /// Adds what grew since `previous` (everything on the first poll, or after a restart).
    pub fn export(&self, previous: Option<&Statistics>, current: &Statistics) {
        let pairs = [
            (&self.hits, previous.map(|p| p.hits), current.hits),
            (&self.misses, previous.map(|p| p.misses), current.misses),
            (
                &self.evictions,
                previous.map(|p| p.evictions),
                current.evictions,
            ),
            (
                &self.insertions,
                previous.map(|p| p.insertions),
                current.insertions,
            ),
        ];
        for (counter, previous, current) in pairs {
            counter.inc_by(increase(previous, current));
        }
        self.max_size.raise_to(current.cache_size);
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProbeLabels {
    probe: String,
}

/// The metrics of one check.
#[derive(Clone, Debug)]
pub struct ProbeMetrics {
    label: String,
    latency_ms: Histogram,
    errors: LegacyCounter,
    own: OwnMetrics,
}

impl ProbeMetrics {
    /// Counts one result: latency of passes, errors of failures, and the up gauge.
    pub fn observe(&self, result: &ProbeResult) {
        let labels = self.labels();
        if result.passed() {
            let seconds = result.latency.as_secs_f64();
            self.latency_ms.observe(seconds * 1000.0);
            self.own.duration.get_or_create(&labels).observe(seconds);
        } else {
            self.errors.inc();
        }
        self.own
            .up
            .get_or_create(&labels)
            .set(i64::from(result.passed()));
    }

    fn labels(&self) -> ProbeLabels {
        ProbeLabels {
            probe: self.label.clone(),
        }
    }
}

type DurationFamily = Family<ProbeLabels, Histogram, fn() -> Histogram>;

#[derive(Clone, Debug)]
struct OwnMetrics {
    duration: DurationFamily,
    up: Family<ProbeLabels, Gauge>,
}

/// Every metric healthz exports (see the crate README's Metrics section).
#[derive(Clone, Debug)]
pub struct Metrics(Arc<Inner>);

#[derive(Debug)]
struct Inner {
    legacy: Registry,
    own_registry: Registry,
    own: OwnMetrics,
    dnsmasq: DnsmasqMetrics,
    probes: HashMap<String, ProbeMetrics>,
}

/// The sidecar's latency buckets: 0.25 ms doubling to 8192 ms.
fn legacy_latency_buckets() -> impl Iterator<Item = f64> {
    exponential_buckets(0.25, 2.0, 16)
}

fn duration_histogram() -> Histogram {
    Histogram::new(legacy_latency_buckets().map(|ms| ms / 1000.0))
}

impl Metrics {
    /// Registers the dnsmasq metrics and those of each check label. `namespace` prefixes the
    /// sidecar's names (empty for none).
    pub fn new<'a>(namespace: &str, labels: impl IntoIterator<Item = &'a str>) -> Self {
        let mut legacy = if namespace.is_empty() {
            Registry::default()
        } else {
            Registry::with_prefix(namespace)
        };
        let dnsmasq = DnsmasqMetrics::default();
        let described = [
            (
                "dnsmasq_hits",
                "Number of DNS cache hits (from start of process)",
                &dnsmasq.hits,
            ),
            (
                "dnsmasq_misses",
                "Number of DNS cache misses (from start of process)",
                &dnsmasq.misses,
            ),
            (
                "dnsmasq_evictions",
                "Counter of DNS cache evictions (from start of process)",
                &dnsmasq.evictions,
            ),
            (
                "dnsmasq_insertions",
                "Counter of DNS cache insertions (from start of process)",
                &dnsmasq.insertions,
            ),
            (
                "dnsmasq_max_size",
                "Maximum size of the DNS cache",
                &dnsmasq.max_size,
            ),
            (
                "dnsmasq_errors",
                "Number of errors that have occurred getting metrics",
                &dnsmasq.errors,
            ),
        ];
        for (name, help, counter) in described {
            legacy.register(name, help, counter.clone());
        }

        let mut own_registry = Registry::with_prefix("healthz");
        let own = OwnMetrics {
            duration: DurationFamily::new_with_constructor(duration_histogram),
            up: Family::default(),
        };
        own_registry.register(
            "probe_duration_seconds",
            "Time a passing probe took, by probe",
            own.duration.clone(),
        );
        own_registry.register(
            "probe_up",
            "1 when the probe's latest result passed and is recent enough, else 0",
            own.up.clone(),
        );

        let mut probes = HashMap::new();
        for label in labels {
            let latency_ms = Histogram::new(legacy_latency_buckets());
            legacy.register(
                format!("probe_{label}_latency_ms"),
                format!("Latency of the DNS probe request {label}"),
                latency_ms.clone(),
            );
            let errors = LegacyCounter::default();
            legacy.register(
                format!("probe_{label}_errors"),
                format!("Counter of errors during DNS probe {label}"),
                errors.clone(),
            );
            let metrics = ProbeMetrics {
                label: label.to_owned(),
                latency_ms,
                errors,
                own: own.clone(),
            };
            // Present from the start (at 0), so that an alert on `up == 0` sees a probe that
            // never passed.
            own.up.get_or_create(&metrics.labels()).set(0);
            probes.insert(label.to_owned(), metrics);
        }
        Self(Arc::new(Inner {
            legacy,
            own_registry,
            own,
            dnsmasq,
            probes,
        }))
    }

    /// The dnsmasq counters.
    pub fn dnsmasq(&self) -> DnsmasqMetrics {
        self.0.dnsmasq.clone()
    }

    /// The metrics of the check labelled `label`, if it was registered.
    pub fn probe(&self, label: &str) -> Option<ProbeMetrics> {
        self.0.probes.get(label).cloned()
    }

    /// Sets each probe's up gauge from a report, so that a stale result reads as down even if
    /// its prober stopped.
    pub fn refresh(&self, reports: &[Report]) {
        for report in reports {
            let labels = ProbeLabels {
                probe: report.label.clone(),
            };
            self.0
                .own
                .up
                .get_or_create(&labels)
                .set(i64::from(report.healthy()));
        }
    }

    /// The metrics page in the Prometheus text format.
    pub fn encode(&self) -> String {
        let mut page = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode_registry(&mut page, &self.0.legacy);
        let _ = prometheus_client::encoding::text::encode_registry(&mut page, &self.0.own_registry);
        page
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dnsmasq_counters_only_grow_even_across_a_restart() {
        let cases = [
            (None, 10, 10),
            (Some(10), 15, 5),
            (Some(15), 15, 0),
            // Restarted: counting from zero again.
            (Some(15), 3, 3),
            (Some(3), 0, 0),
        ];
        for (previous, current, want) in cases {
            assert_eq!(
                increase(previous, current),
                want,
                "{previous:?} -> {current}"
            );
        }

        let metrics = DnsmasqMetrics::default();
        let stats = |hits, cache_size| Statistics {
            hits,
            cache_size,
            ..Statistics::default()
        };
        let polls = [
            stats(10, 1000),
            stats(25, 1000),
            stats(4, 150),
            stats(6, 150),
        ];
        let mut previous = None;
        let mut seen = Vec::new();
        for poll in polls {
            metrics.export(previous.as_ref(), &poll);
            previous = Some(poll);
            seen.push((metrics.hits.get(), metrics.max_size.get()));
        }
        assert_eq!(seen, [(10, 1000), (25, 1000), (29, 1000), (31, 1000)]);
    }

    #[test]
    fn legacy_counters_are_written_without_a_total_suffix() {
        let metrics = Metrics::new("kubedns", ["kubedns"]);
        metrics.dnsmasq().hits.inc_by(7);
        let page = metrics.encode();
        assert!(
            page.contains("# TYPE kubedns_dnsmasq_hits counter\n"),
            "{page}"
        );
        assert!(page.contains("\nkubedns_dnsmasq_hits 7\n"), "{page}");
        assert!(
            page.contains("\nkubedns_probe_kubedns_errors 0\n"),
            "{page}"
        );
        assert!(
            page.contains("kubedns_probe_kubedns_latency_ms_bucket{le=\"8192.0\"} 0"),
            "{page}"
        );
        assert!(
            page.contains("healthz_probe_up{probe=\"kubedns\"} 0"),
            "{page}"
        );
        assert!(!page.contains("_total"), "{page}");
        assert!(!page.contains("# EOF"), "{page}");
    }

    #[test]
    fn an_empty_namespace_leaves_the_names_bare() {
        let page = Metrics::new("", ["x"]).encode();
        assert!(page.contains("\ndnsmasq_hits 0\n"), "{page}");
        assert!(page.contains("\nprobe_x_errors 0\n"), "{page}");
    }
}
