//! `bench-churn`: measures DNS programming latency, the time from an API change to the new answer
//! at a DNS server, while the cluster changes at a steady rate.
//!
//! It serves a synthetic cluster ([`test_support::synthetic`]) through [`FakeApiServer`], prints
//! `listening on URL`, and then waits for one line on stdin: the `IP:PORT` of the DNS server to
//! probe (started meanwhile against that URL). Then, `--rate` times a second for `--duration`,
//! it changes one thing, alternately:
//!
//! - adds a ClusterIP Service (`churn-<n>.ns-0`) and waits for its A record;
//! - adds an endpoint to a headless Service and waits for its A answer to hold the new address.
//!
//! Before each change the name is asked once, so that a cache in front holds the old answer (a
//! negative one for a new Service) and must drop it, by NOTIFY or by TTL. After the change the
//! name is asked every millisecond until the answer is right or `--deadline` passes. Prints one
//! JSON object: counts, latency percentiles in milliseconds, and every latency per kind.
//!
//! ```text
//! bench-churn --services 10000 --rate 20 --duration 10
//! ```

use std::collections::BTreeMap;
use std::io::{BufRead, Write};
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use hickory_proto::op::Message;
use hickory_proto::rr::rdata::A;
use hickory_proto::rr::{RData, RecordType};
use kdns_net::{exchange_udp, query_message, with_edns};
use serde_json::json;
use test_support::FakeApiServer;
use test_support::fixtures::service;
use test_support::synthetic::{self, Endpoint, Spec, Svc};
use tokio::task::JoinSet;

/// Changes a synthetic cluster at a steady rate and times each change's way to a DNS answer.
#[derive(Debug, Parser)]
#[command(name = "bench-churn")]
struct Args {
    /// Services in the cluster.
    #[arg(long, default_value_t = 10_000)]
    services: usize,

    /// Endpoints per Service, on average.
    #[arg(long, default_value_t = 10)]
    endpoints_per_service: usize,

    /// More headless Services with 100 endpoints each, as `fake-apiserver --wide-headless`, so
    /// that both draw the same cluster.
    #[arg(long, default_value_t = 0)]
    wide_headless: usize,

    /// Changes per second.
    #[arg(long, default_value_t = 20.0)]
    rate: f64,

    /// Seconds of changes.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,

    /// Seconds a change may take to show before it counts as missed.
    #[arg(long, default_value_t = 5.0)]
    deadline: f64,

    /// The cluster zone.
    #[arg(long, default_value = "cluster.local")]
    domain: String,
}

/// What a probe waits for.
struct Change {
    kind: &'static str,
    name: String,
    /// The answer is right once its A records hold this address.
    expect: Ipv4Addr,
}

/// One exchange; `None` on timeout or error (the next probe asks again).
async fn ask(server: SocketAddr, name: &str) -> Option<Message> {
    let query = with_edns(query_message(name, RecordType::A).ok()?, 4096);
    exchange_udp(server, &query, Duration::from_millis(200))
        .await
        .ok()
}

fn holds(reply: &Message, expect: Ipv4Addr) -> bool {
    reply
        .answers
        .iter()
        .any(|record| matches!(&record.data, RData::A(A(ip)) if *ip == expect))
}

/// Asks every millisecond until the answer holds the change; the time since `applied`, or `None`
/// past the deadline.
async fn probe(
    server: SocketAddr,
    change: Arc<Change>,
    applied: Instant,
    deadline: Duration,
) -> Option<Duration> {
    loop {
        if let Some(reply) = ask(server, &change.name).await
            && holds(&reply, change.expect)
        {
            return Some(applied.elapsed());
        }
        if applied.elapsed() > deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// The value below which `share` (0..=1) of the sorted `values` fall (nearest rank).
fn percentile(sorted: &[f64], share: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    // Truncation is intended: a rank is a small positive whole number.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let rank = ((share * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    Some(sorted[rank - 1])
}

fn fail(message: &str) -> ! {
    eprintln!("bench-churn: {message}");
    std::process::exit(2);
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    if !(args.rate > 0.0 && args.duration > 0.0 && args.deadline > 0.0) {
        fail("--rate, --duration and --deadline must be above zero");
    }
    let mut spec = Spec::new(args.services, args.endpoints_per_service);
    spec.wide_headless = args.wide_headless;
    if let Err(error) = spec.check() {
        fail(&error);
    }
    let cluster = synthetic::generate(&spec);
    let server = FakeApiServer::start().await;
    for object in synthetic::objects(&cluster) {
        server.apply(object);
    }
    // Headless Services small enough that the grown answer still fits a UDP reply.
    let mut headless: Vec<Svc> = cluster
        .into_iter()
        .filter(|svc| svc.cluster_ip.is_none() && (1..=20).contains(&svc.endpoints.len()))
        .collect();
    if headless.is_empty() {
        fail("the cluster has no headless Service to change; use more --services");
    }
    println!("listening on {}", server.url());
    let _ = std::io::stdout().flush();

    let mut line = String::new();
    if std::io::stdin().lock().read_line(&mut line).unwrap_or(0) == 0 {
        fail("no DNS server address on stdin");
    }
    let dns: SocketAddr = line
        .trim()
        .parse()
        .unwrap_or_else(|_| fail(&format!("not an IP:PORT: {:?}", line.trim())));

    let zone = args.domain.trim_end_matches('.').to_owned();
    let deadline = Duration::from_secs_f64(args.deadline);
    // Truncation is intended: a count of changes.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let total = (args.rate * args.duration).round().max(1.0) as u32;
    let mut ticker = tokio::time::interval(Duration::from_secs_f64(1.0 / args.rate));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut probes = JoinSet::new();
    let started = Instant::now();
    for n in 0..total {
        ticker.tick().await;
        let change = if n % 2 == 0 {
            // 10.95.0.0/16 is outside the generated ClusterIP range.
            let ip = Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 95, 0, 0)) + n);
            let name = format!("churn-{n}");
            let change = Change {
                kind: "service added",
                name: format!("{name}.ns-0.svc.{zone}"),
                expect: ip,
            };
            ask(dns, &change.name).await;
            server.apply(
                service("ns-0", &name)
                    .cluster_ip(&ip.to_string())
                    .port("http", 80, "TCP")
                    .build(),
            );
            change
        } else {
            let at = usize::try_from(n / 2).unwrap_or(0) % headless.len();
            let svc = &mut headless[at];
            // 10.127.0.0/16 is outside the generated pod range.
            let ip = Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 127, 0, 0)) + n);
            let change = Change {
                kind: "endpoint added",
                name: svc.fqdn(&zone),
                expect: ip,
            };
            ask(dns, &change.name).await;
            svc.endpoints.push(Endpoint {
                ip,
                hostname: Some(format!("churn-{n}")),
                ready: true,
            });
            server.apply(svc.slice_object(0, &svc.endpoints));
            change
        };
        let applied = Instant::now();
        let change = Arc::new(change);
        let kind = change.kind;
        probes.spawn(async move { (kind, probe(dns, change, applied, deadline).await) });
    }
    let changing = started.elapsed();

    let mut latencies: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    let mut missed = 0u32;
    while let Some(result) = probes.join_next().await {
        match result {
            Ok((kind, Some(took))) => latencies
                .entry(kind)
                .or_default()
                .push(took.as_secs_f64() * 1000.0),
            Ok((_, None)) => missed += 1,
            Err(error) => fail(&format!("a probe failed: {error}")),
        }
    }
    let mut all: Vec<f64> = latencies.values().flatten().copied().collect();
    all.sort_by(f64::total_cmp);
    for values in latencies.values_mut() {
        values.sort_by(f64::total_cmp);
    }
    let report = json!({
        "changes": total,
        "answered": all.len(),
        "missed": missed,
        "deadline_ms": args.deadline * 1000.0,
        "rate_per_second": f64::from(total) / changing.as_secs_f64(),
        "p50_ms": percentile(&all, 0.50),
        "p90_ms": percentile(&all, 0.90),
        "p99_ms": percentile(&all, 0.99),
        "max_ms": all.last(),
        "latencies_ms": latencies,
    });
    println!("{report}");
    let _ = std::io::stdout().flush();
    // Freeing a large cluster object by object takes seconds; the OS does it at once.
    std::process::exit(0);
}

#[cfg(test)]
mod tests {
    use super::percentile;

    #[test]
    fn nearest_rank_percentiles() {
        let values: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&values, 0.5), Some(50.0));
        assert_eq!(percentile(&values, 0.99), Some(99.0));
        assert_eq!(percentile(&values, 1.0), Some(100.0));
        assert_eq!(percentile(&[7.0], 0.9), Some(7.0));
        assert_eq!(percentile(&[], 0.5), None);
    }
}
