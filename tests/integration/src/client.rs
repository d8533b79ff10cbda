//! DNS and HTTP requests to the pod's processes.

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::{RData, Record, RecordType};
use kdns_net::ClientError;

/// How long one DNS exchange may take; above dnsmasq-rs's 2 s upstream timeout, so that a dead
/// upstream shows as its SERVFAIL rather than as our timeout.
pub const DNS_TIMEOUT: Duration = Duration::from_secs(5);

/// Asks `server` one question over UDP (TCP when truncated), RD set.
///
/// # Errors
/// When no usable reply arrives within [`DNS_TIMEOUT`].
pub async fn ask(
    server: SocketAddr,
    name: &str,
    qtype: RecordType,
) -> Result<Message, ClientError> {
    let query = kdns_net::query_message(name, qtype)?;
    kdns_net::exchange(server, &query, DNS_TIMEOUT).await
}

/// Like [`ask`], but a failed exchange fails the test.
///
/// # Panics
/// When no usable reply arrives.
#[track_caller]
pub fn must_ask(
    server: SocketAddr,
    name: &str,
    qtype: RecordType,
) -> impl std::future::Future<Output = Message> + '_ {
    let caller = std::panic::Location::caller();
    async move {
        ask(server, name, qtype)
            .await
            .unwrap_or_else(|e| panic!("{name} {qtype} to {server}: {e} (asked at {caller})"))
    }
}

/// The answer section as `name type rdata` lines (TTLs left out: cached answers count down),
/// sorted.
pub fn answer_lines(reply: &Message) -> Vec<String> {
    lines(&reply.answers)
}

/// Records as sorted `name type rdata` lines.
pub fn lines(records: &[Record]) -> Vec<String> {
    let mut lines: Vec<String> = records
        .iter()
        .map(|r| format!("{} {} {}", r.name, r.record_type(), r.data))
        .collect();
    lines.sort();
    lines
}

/// The addresses in the answer section (A and AAAA).
pub fn addresses(reply: &Message) -> BTreeSet<IpAddr> {
    reply
        .answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(IpAddr::V4(a.0)),
            RData::AAAA(aaaa) => Some(IpAddr::V6(aaaa.0)),
            _ => None,
        })
        .collect()
}

/// `rcode` and answer lines, for messages.
pub fn describe(reply: &Message) -> String {
    format!("{} {:?}", reply.metadata.response_code, answer_lines(reply))
}

/// Whether `reply` is NXDOMAIN.
pub fn is_nxdomain(reply: &Message) -> bool {
    reply.metadata.response_code == ResponseCode::NXDomain
}

pub use test_support::http_get;

/// The value of the Prometheus sample `series` (name with labels, as written), if present.
pub fn sample(metrics: &str, series: &str) -> Option<f64> {
    metrics.lines().find_map(|line| {
        let rest = line.strip_prefix(series)?;
        rest.strip_prefix(' ')?
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    })
}
