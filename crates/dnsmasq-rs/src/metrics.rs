//! dnsmasq-rs's Prometheus metrics, registered in one place and passed in explicitly.
//!
//! The cache counters are also what the CHAOS `*.bind` statistics report, so the two can never
//! disagree.

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    qtype: &'static str,
    rcode: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ServerLabels {
    server: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ActionLabels {
    action: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: &'static str,
}

/// Every metric dnsmasq-rs exports (see the crate README's Metrics section).
#[derive(Clone, Debug)]
pub struct Metrics(Arc<Inner>);

#[derive(Debug)]
struct Inner {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    /// The `requests` series once looked up, by label: the family's own lookup hashes the
    /// labels and takes a lock on every request.
    request_series: [[OnceLock<Counter>; RCODE_LABELS.len()]; QTYPE_LABELS.len()],
    hits: Counter,
    misses: Counter,
    insertions: Counter,
    evictions: Counter,
    cache_records: Gauge,
    coalesced: Counter,
    upstream_duration: Family<ServerLabels, Histogram>,
    upstream_failures: Family<ServerLabels, Counter>,
    forward_rejected: Counter,
    notify: Family<ResultLabels, Counter>,
    notify_invalidated: Counter,
    config_reloads: Counter,
    config_errors: Counter,
    rate_limited: Family<ActionLabels, Counter>,
    out_of_bailiwick: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Creates and registers every metric.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("dnsmasq");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "requests",
            "DNS requests answered, by query type and response code",
            requests.clone(),
        );
        let hits = Counter::default();
        registry.register(
            "cache_hits",
            "Requests answered from the cache or local data (hits.bind)",
            hits.clone(),
        );
        let misses = Counter::default();
        registry.register(
            "cache_misses",
            "Requests that had to be forwarded (misses.bind)",
            misses.clone(),
        );
        let insertions = Counter::default();
        registry.register(
            "cache_insertions",
            "Records inserted into the cache (insertions.bind)",
            insertions.clone(),
        );
        let evictions = Counter::default();
        registry.register(
            "cache_evictions",
            "Unexpired records evicted to make room (evictions.bind)",
            evictions.clone(),
        );
        let cache_records = Gauge::default();
        registry.register(
            "cache_size",
            "Records held in the cache",
            cache_records.clone(),
        );
        let coalesced = Counter::default();
        registry.register(
            "coalesced_requests",
            "Requests that joined an identical upstream query already in flight",
            coalesced.clone(),
        );
        let upstream_duration = Family::<ServerLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.000_1, 2.0, 16))
        });
        registry.register(
            "upstream_request_duration_seconds",
            "Time for one upstream server to answer or fail, by server",
            upstream_duration.clone(),
        );
        let upstream_failures = Family::<ServerLabels, Counter>::default();
        registry.register(
            "upstream_failures",
            "Upstream attempts without a usable answer (timeout, error, SERVFAIL, REFUSED), by server",
            upstream_failures.clone(),
        );
        let forward_rejected = Counter::default();
        registry.register(
            "forward_rejected",
            "Requests answered SERVFAIL because --dns-forward-max queries were already in flight",
            forward_rejected.clone(),
        );
        let notify = Family::<ResultLabels, Counter>::default();
        registry.register(
            "notify",
            "NOTIFY messages received, by result (accepted, refused, disabled)",
            notify.clone(),
        );
        let notify_invalidated = Counter::default();
        registry.register(
            "notify_invalidated_entries",
            "Cached answers dropped because of NOTIFY",
            notify_invalidated.clone(),
        );
        let config_reloads = Counter::default();
        registry.register(
            "config_reloads",
            "Routing changes applied from the config dir, resolv file or stub-domain names",
            config_reloads.clone(),
        );
        let config_errors = Counter::default();
        registry.register(
            "config_errors",
            "Config dir updates rejected as invalid (the previous configuration stays)",
            config_errors.clone(),
        );
        let rate_limited = Family::<ActionLabels, Counter>::default();
        registry.register(
            "rate_limited",
            "UDP requests over --rate-limit, by action (dropped, or slipped: answered empty with TC)",
            rate_limited.clone(),
        );
        let out_of_bailiwick = Counter::default();
        registry.register(
            "out_of_bailiwick_records",
            "Upstream authority and additional records dropped for lying outside the question's domain",
            out_of_bailiwick.clone(),
        );
        Self(Arc::new(Inner {
            registry,
            requests,
            request_series: Default::default(),
            hits,
            misses,
            insertions,
            evictions,
            cache_records,
            coalesced,
            upstream_duration,
            upstream_failures,
            forward_rejected,
            notify,
            notify_invalidated,
            config_reloads,
            config_errors,
            rate_limited,
            out_of_bailiwick,
        }))
    }

    /// The Prometheus text exposition of every metric.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.0.registry);
        out
    }

    /// One request answered.
    pub fn request(&self, qtype: RecordType, rcode: ResponseCode) {
        let (qtype, rcode) = (qtype_index(qtype), rcode_index(rcode));
        self.0.request_series[qtype][rcode]
            .get_or_init(|| {
                let labels = RequestLabels {
                    qtype: QTYPE_LABELS[qtype],
                    rcode: RCODE_LABELS[rcode],
                };
                self.0.requests.get_or_create(&labels).clone()
            })
            .inc();
    }

    /// One request answered from the cache or local data.
    pub fn hit(&self) {
        self.0.hits.inc();
    }

    /// One request forwarded (or joined to a forward in flight).
    pub fn miss(&self) {
        self.0.misses.inc();
    }

    /// Cache insertions and evictions, in records, and the records now held.
    pub fn cache_changed(&self, inserted: usize, evicted: usize, held: usize) {
        self.0.insertions.inc_by(inserted as u64);
        self.0.evictions.inc_by(evicted as u64);
        self.0
            .cache_records
            .set(i64::try_from(held).unwrap_or(i64::MAX));
    }

    /// The records now held, after entries were dropped.
    pub fn cache_held(&self, held: usize) {
        self.0
            .cache_records
            .set(i64::try_from(held).unwrap_or(i64::MAX));
    }

    /// One request that joined a query in flight.
    pub fn coalesced(&self) {
        self.0.coalesced.inc();
    }

    /// One upstream attempt.
    pub fn upstream_attempt(&self, server: SocketAddr, elapsed: Duration, failed: bool) {
        let labels = ServerLabels {
            server: server.to_string(),
        };
        self.0
            .upstream_duration
            .get_or_create(&labels)
            .observe(elapsed.as_secs_f64());
        if failed {
            self.0.upstream_failures.get_or_create(&labels).inc();
        }
    }

    /// One request turned away by `--dns-forward-max`.
    pub fn forward_rejected(&self) {
        self.0.forward_rejected.inc();
    }

    /// One NOTIFY, and the cache entries it dropped.
    pub fn notify(&self, result: &'static str, invalidated: usize) {
        self.0.notify.get_or_create(&ResultLabels { result }).inc();
        self.0.notify_invalidated.inc_by(invalidated as u64);
    }

    /// One routing change applied.
    pub fn config_reload(&self) {
        self.0.config_reloads.inc();
    }

    /// Invalid config dir updates, as counted by the config watcher.
    pub fn set_config_errors(&self, total: u64) {
        let seen = self.0.config_errors.get();
        if total > seen {
            self.0.config_errors.inc_by(total - seen);
        }
    }

    /// One UDP request over `--rate-limit`: slipped (answered empty with TC) or dropped.
    pub fn rate_limited(&self, slipped: bool) {
        let action = if slipped { "slipped" } else { "dropped" };
        self.0
            .rate_limited
            .get_or_create(&ActionLabels { action })
            .inc();
    }

    /// Records stripped from an upstream answer for lying outside its bailiwick.
    pub fn out_of_bailiwick(&self, records: usize) {
        self.0.out_of_bailiwick.inc_by(records as u64);
    }

    /// `hits.bind`.
    pub fn hits(&self) -> u64 {
        self.0.hits.get()
    }

    /// `misses.bind`.
    pub fn misses(&self) -> u64 {
        self.0.misses.get()
    }

    /// `insertions.bind`.
    pub fn insertions(&self) -> u64 {
        self.0.insertions.get()
    }

    /// `evictions.bind`.
    pub fn evictions(&self) -> u64 {
        self.0.evictions.get()
    }
}

const QTYPE_LABELS: [&str; 13] = [
    "A", "AAAA", "CNAME", "SRV", "PTR", "TXT", "MX", "NS", "SOA", "ANY", "HTTPS", "SVCB", "other",
];

/// The index of `qtype`'s label in [`QTYPE_LABELS`].
fn qtype_index(qtype: RecordType) -> usize {
    match qtype {
        RecordType::A => 0,
        RecordType::AAAA => 1,
        RecordType::CNAME => 2,
        RecordType::SRV => 3,
        RecordType::PTR => 4,
        RecordType::TXT => 5,
        RecordType::MX => 6,
        RecordType::NS => 7,
        RecordType::SOA => 8,
        RecordType::ANY => 9,
        RecordType::HTTPS => 10,
        RecordType::SVCB => 11,
        _ => 12,
    }
}

const RCODE_LABELS: [&str; 7] = [
    "NOERROR", "FORMERR", "SERVFAIL", "NXDOMAIN", "NOTIMP", "REFUSED", "other",
];

/// The index of `rcode`'s label in [`RCODE_LABELS`].
fn rcode_index(rcode: ResponseCode) -> usize {
    match rcode {
        ResponseCode::NoError => 0,
        ResponseCode::FormErr => 1,
        ResponseCode::ServFail => 2,
        ResponseCode::NXDomain => 3,
        ResponseCode::NotImp => 4,
        ResponseCode::Refused => 5,
        _ => 6,
    }
}
