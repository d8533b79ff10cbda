//! kubedns's Prometheus metrics, registered in one place and passed in explicitly.

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::store::Resource;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    qtype: &'static str,
    rcode: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResourceLabels {
    resource: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EventLabels {
    resource: &'static str,
    event: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: &'static str,
}

/// Every metric kubedns exports (see the crate README's Metrics section).
#[derive(Clone, Debug)]
pub struct Metrics(Arc<Inner>);

#[derive(Debug)]
struct Inner {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    request_duration: Histogram,
    forwards: Family<OutcomeLabels, Counter>,
    records: Gauge,
    objects: Family<ResourceLabels, Gauge>,
    watch_events: Family<EventLabels, Counter>,
    watch_restarts: Family<ResourceLabels, Counter>,
    watch_errors: Family<ResourceLabels, Counter>,
    malformed: Family<ResourceLabels, Counter>,
    programming_latency: Histogram,
    config_errors: Counter,
    ready: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Creates and registers every metric.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("kubedns");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "dns_requests",
            "DNS requests answered, by query type and response code",
            requests.clone(),
        );
        let request_duration = Histogram::new(exponential_buckets(0.000_025, 2.0, 16));
        registry.register(
            "dns_request_duration_seconds",
            "Time to answer a DNS request, forwarding included",
            request_duration.clone(),
        );
        let forwards = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "forward_requests",
            "Queries forwarded to upstream nameservers, by outcome (answered, failed)",
            forwards.clone(),
        );
        let records = Gauge::default();
        registry.register(
            "records",
            "Address, SRV and PTR records held",
            records.clone(),
        );
        let objects = Family::<ResourceLabels, Gauge>::default();
        registry.register(
            "objects",
            "Kubernetes objects held, by resource",
            objects.clone(),
        );
        let watch_events = Family::<EventLabels, Counter>::default();
        registry.register(
            "watch_events",
            "Watch events received, by resource and event (apply, delete, relist)",
            watch_events.clone(),
        );
        let watch_restarts = Family::<ResourceLabels, Counter>::default();
        registry.register(
            "watch_restarts",
            "Times a watch started over with a full list after the first",
            watch_restarts.clone(),
        );
        let watch_errors = Family::<ResourceLabels, Counter>::default();
        registry.register(
            "watch_errors",
            "Errors from watches and sources (retried with backoff)",
            watch_errors.clone(),
        );
        let malformed = Family::<ResourceLabels, Counter>::default();
        registry.register(
            "malformed_fields",
            "Object fields skipped because they were malformed (bad IP, bad port name, ...)",
            malformed.clone(),
        );
        let programming_latency = Histogram::new(exponential_buckets(0.001, 2.0, 16));
        registry.register(
            "dns_programming_latency_seconds",
            "Time from a change in the cluster to the new answer being served",
            programming_latency.clone(),
        );
        let config_errors = Counter::default();
        registry.register(
            "config_errors",
            "Configuration updates rejected as invalid (the previous configuration stays)",
            config_errors.clone(),
        );
        let ready = Gauge::default();
        registry.register("ready", "1 once the first full sync is done", ready.clone());
        Self(Arc::new(Inner {
            registry,
            requests,
            request_duration,
            forwards,
            records,
            objects,
            watch_events,
            watch_restarts,
            watch_errors,
            malformed,
            programming_latency,
            config_errors,
            ready,
        }))
    }

    /// Counts one answered request.
    pub fn request(&self, qtype: &'static str, rcode: &'static str, took: Duration) {
        self.0
            .requests
            .get_or_create(&RequestLabels { qtype, rcode })
            .inc();
        self.0.request_duration.observe(took.as_secs_f64());
    }

    /// Counts one forwarded query.
    pub fn forward(&self, answered: bool) {
        let outcome = if answered { "answered" } else { "failed" };
        self.0
            .forwards
            .get_or_create(&OutcomeLabels { outcome })
            .inc();
    }

    /// Sets the number of records held.
    pub fn set_records(&self, count: usize) {
        self.0.records.set(i64::try_from(count).unwrap_or(i64::MAX));
    }

    /// Sets the number of objects of a resource held.
    pub fn set_objects(&self, resource: Resource, count: usize) {
        self.0
            .objects
            .get_or_create(&ResourceLabels {
                resource: resource.as_str(),
            })
            .set(i64::try_from(count).unwrap_or(i64::MAX));
    }

    /// Counts a watch event.
    pub fn watch_event(&self, resource: Resource, event: &'static str) {
        self.0
            .watch_events
            .get_or_create(&EventLabels {
                resource: resource.as_str(),
                event,
            })
            .inc();
    }

    /// Counts a watch that started over.
    pub fn watch_restart(&self, resource: Resource) {
        self.0
            .watch_restarts
            .get_or_create(&ResourceLabels {
                resource: resource.as_str(),
            })
            .inc();
    }

    /// Counts a source error.
    pub fn source_error(&self, resource: Resource) {
        self.0
            .watch_errors
            .get_or_create(&ResourceLabels {
                resource: resource.as_str(),
            })
            .inc();
    }

    /// Counts a malformed field.
    pub fn malformed(&self, resource: Resource) {
        self.0
            .malformed
            .get_or_create(&ResourceLabels {
                resource: resource.as_str(),
            })
            .inc();
    }

    /// Records how long a change took to be served.
    pub fn programmed(&self, latency: Duration) {
        self.0.programming_latency.observe(latency.as_secs_f64());
    }

    /// Counts a rejected configuration update.
    pub fn config_error(&self) {
        self.0.config_errors.inc();
    }

    /// Marks the first full sync.
    pub fn set_ready(&self) {
        self.0.ready.set(1);
    }

    /// The metrics in the Prometheus text format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.0.registry);
        out
    }
}
