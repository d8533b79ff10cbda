//! The sidecar's dnsmasq statistics: CHAOS TXT queries for `hits.bind` and friends, exported as
//! counters that never go down.
//!
//! dnsmasq (and dnsmasq-rs) answer `<stat>.bind CH TXT` with one TXT record holding one decimal
//! string. A poll asks for the five statistics in the sidecar's order and stops at the first
//! bad reply; a failed poll counts one error and exports nothing, as the sidecar did.

use std::time::Duration;

use hickory_proto::op::Message;
use hickory_proto::rr::{DNSClass, RData, RecordType};
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::metrics::DnsmasqMetrics;
use crate::probe::ServerAddr;

/// The statistics, in the order the sidecar asked for them.
pub const STATISTICS: [&str; 5] = [
    "hits.bind.",
    "misses.bind.",
    "evictions.bind.",
    "insertions.bind.",
    "cachesize.bind.",
];

/// One poll's values.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Statistics {
    /// `hits.bind`
    pub hits: u64,
    /// `misses.bind`
    pub misses: u64,
    /// `evictions.bind`
    pub evictions: u64,
    /// `insertions.bind`
    pub insertions: u64,
    /// `cachesize.bind`
    pub cache_size: u64,
}

/// Why a poll failed.
#[derive(Debug, thiserror::Error)]
pub enum PollError {
    /// The server could not be resolved.
    #[error("{0}")]
    Resolve(String),
    /// No usable reply.
    #[error("querying {name}: {source}")]
    Exchange {
        /// The statistic asked for.
        name: &'static str,
        /// What went wrong.
        #[source]
        source: kdns_net::ClientError,
    },
    /// A reply that is not one TXT record with one number.
    #[error("bad reply for {name}: {reason}")]
    Reply {
        /// The statistic asked for.
        name: &'static str,
        /// What is wrong with it.
        reason: String,
    },
}

/// Where and how often to poll.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PollConfig {
    /// dnsmasq's DNS address.
    pub server: ServerAddr,
    /// Time between polls.
    pub interval: Duration,
    /// How long each query may take.
    pub timeout: Duration,
}

/// Asks for the five statistics once.
pub async fn poll(server: &ServerAddr, timeout: Duration) -> Result<Statistics, PollError> {
    let addr = server.resolve().await.map_err(PollError::Resolve)?;
    let mut values = [0u64; STATISTICS.len()];
    for (name, value) in STATISTICS.iter().zip(values.iter_mut()) {
        let query = chaos_query(name);
        let reply = kdns_net::exchange_udp(addr, &query, timeout)
            .await
            .map_err(|source| PollError::Exchange { name, source })?;
        *value = parse_reply(&reply).map_err(|reason| PollError::Reply { name, reason })?;
    }
    let [hits, misses, evictions, insertions, cache_size] = values;
    Ok(Statistics {
        hits,
        misses,
        evictions,
        insertions,
        cache_size,
    })
}

fn chaos_query(name: &str) -> Message {
    let mut query = kdns_net::query_message(name, RecordType::TXT)
        .expect("the statistic names are valid domain names");
    for q in &mut query.queries {
        q.set_query_class(DNSClass::CH);
    }
    query
}

/// The one number in a statistics reply: exactly one answer, a TXT record with exactly one
/// string holding a decimal integer. Negative values, which dnsmasq never sends, are refused.
fn parse_reply(reply: &Message) -> Result<u64, String> {
    let [answer] = reply.answers.as_slice() else {
        return Err(format!(
            "expected one answer record, got {} (rcode {})",
            reply.answers.len(),
            reply.metadata.response_code
        ));
    };
    let RData::TXT(txt) = &answer.data else {
        return Err(format!(
            "expected a TXT record, got {}",
            answer.record_type()
        ));
    };
    let [text] = &*txt.txt_data else {
        return Err(format!("expected one string, got {}", txt.txt_data.len()));
    };
    let text = String::from_utf8_lossy(text);
    text.trim()
        .parse::<u64>()
        .map_err(|_| format!("{text:?} is not a count"))
}

/// Polls until `shutdown`, exporting each successful poll.
pub async fn run(config: PollConfig, metrics: DnsmasqMetrics, shutdown: CancellationToken) {
    info!(server = %config.server, interval = ?config.interval, "polling dnsmasq statistics");
    let mut ticker = tokio::time::interval_at(Instant::now(), config.interval);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut previous: Option<Statistics> = None;
    let mut failing = false;
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = ticker.tick() => {}
        }
        let polled = tokio::select! {
            () = shutdown.cancelled() => return,
            polled = poll(&config.server, config.timeout) => polled,
        };
        match polled {
            Ok(stats) => {
                if failing {
                    info!(server = %config.server, "dnsmasq statistics are back");
                    failing = false;
                }
                debug!(?stats, "dnsmasq statistics");
                metrics.export(previous.as_ref(), &stats);
                previous = Some(stats);
            }
            Err(error) => {
                metrics.errors.inc();
                // One warning per outage; the errors counter tells how long it lasted.
                if failing {
                    debug!(%error, "cannot read dnsmasq statistics");
                } else {
                    warn!(%error, server = %config.server, "cannot read dnsmasq statistics");
                    failing = true;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use hickory_proto::rr::rdata::{A, TXT};
    use hickory_proto::rr::{Name, Record};

    use super::*;

    fn reply(answers: Vec<RData>) -> Message {
        let mut reply = chaos_query("hits.bind.").into_response();
        let name = Name::from_ascii("hits.bind.").expect("valid name");
        for data in answers {
            let mut record = Record::from_rdata(name.clone(), 0, data);
            record.dns_class = DNSClass::CH;
            reply.answers.push(record);
        }
        reply
    }

    fn txt(strings: &[&str]) -> RData {
        RData::TXT(TXT::new(strings.iter().map(|s| (*s).to_owned()).collect()))
    }

    #[test]
    fn a_statistic_is_one_txt_record_with_one_number() {
        assert_eq!(parse_reply(&reply(vec![txt(&["1234"])])), Ok(1234));
        assert_eq!(parse_reply(&reply(vec![txt(&["0"])])), Ok(0));

        // invalid
        let invalid = [
            reply(vec![]),
            reply(vec![txt(&["1"]), txt(&["2"])]),
            reply(vec![txt(&["1", "2"])]),
            reply(vec![txt(&[])]),
            reply(vec![txt(&["many"])]),
            reply(vec![txt(&["-1"])]),
            reply(vec![txt(&["1.5"])]),
            reply(vec![RData::A(A::new(127, 0, 0, 1))]),
        ];
        for message in invalid {
            assert!(parse_reply(&message).is_err(), "{:?}", message.answers);
        }
    }

    #[test]
    fn statistics_queries_are_chaos_txt() {
        let query = chaos_query("cachesize.bind.");
        assert_eq!(query.queries[0].query_class(), DNSClass::CH);
        assert_eq!(query.queries[0].query_type(), RecordType::TXT);
        assert!(query.metadata.recursion_desired);
    }
}
