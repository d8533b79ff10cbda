//! `/metrics` scraped over HTTP: the sidecar's metric names, and dnsmasq counters that never go
//! down. A fake dnsmasq answers the CHAOS statistics; time is paused.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::{FakeDns, Kubedns, Stats, http_get};
use tokio_util::sync::CancellationToken;

const POLL: Duration = Duration::from_secs(5);

/// `# TYPE` lines: metric name → type.
fn families(page: &str) -> BTreeMap<String, String> {
    page.lines()
        .filter_map(|line| line.strip_prefix("# TYPE "))
        .filter_map(|rest| rest.split_once(' '))
        .map(|(name, kind)| (name.to_owned(), kind.to_owned()))
        .collect()
}

/// The value of an unlabelled sample.
fn value(page: &str, name: &str) -> Option<f64> {
    page.lines()
        .filter_map(|line| line.split_once(' '))
        .find(|(sample, _)| *sample == name)
        .and_then(|(_, v)| v.parse().ok())
}

#[tokio::test(start_paused = true)]
async fn metrics_carry_the_sidecar_names_and_dnsmasq_counters_never_go_down() {
    test_support::subscribe();
    let kubedns = Kubedns::start(0).await;
    let dnsmasq = FakeDns::start().await;
    dnsmasq.set_stats(Some(Stats {
        hits: 10,
        misses: 4,
        evictions: 0,
        insertions: 4,
        cache_size: 1000,
    }));
    let config = common::config(&[
        "--prometheus-addr=127.0.0.1",
        "--prometheus-port=0",
        &format!(
            "--probe=kubedns,{},kubernetes.default.svc.cluster.local,5,SRV",
            kubedns.dns
        ),
        &format!(
            "--probe=dnsmasq,{},kubernetes.default.svc.cluster.local,5,SRV",
            dnsmasq.addr
        ),
        "--dnsmasq-addr=127.0.0.1",
        &format!("--dnsmasq-port={}", dnsmasq.addr.port()),
        "--dnsmasq-poll-interval-ms=5000",
    ]);
    let shutdown = CancellationToken::new();
    let running = healthz::start(config, shutdown.clone())
        .await
        .expect("starts");
    // Polls run at 0, 5 s, 10 s...; scrapes fall half-way between, never on a poll.
    tokio::time::sleep(POLL + POLL / 2).await;

    let page = http_get(running.http, "/metrics").await.body;
    let want: BTreeMap<String, String> = [
        ("kubedns_dnsmasq_hits", "counter"),
        ("kubedns_dnsmasq_misses", "counter"),
        ("kubedns_dnsmasq_evictions", "counter"),
        ("kubedns_dnsmasq_insertions", "counter"),
        ("kubedns_dnsmasq_max_size", "counter"),
        ("kubedns_dnsmasq_errors", "counter"),
        ("kubedns_probe_kubedns_latency_ms", "histogram"),
        ("kubedns_probe_kubedns_errors", "counter"),
        ("kubedns_probe_dnsmasq_latency_ms", "histogram"),
        ("kubedns_probe_dnsmasq_errors", "counter"),
        ("healthz_probe_duration_seconds", "histogram"),
        ("healthz_probe_up", "gauge"),
    ]
    .into_iter()
    .map(|(n, t)| (n.to_owned(), t.to_owned()))
    .collect();
    assert_eq!(families(&page), want, "{page}");
    // The Go client wrote counters under their bare names, and dashboards query those.
    assert!(!page.contains("_total"), "{page}");
    let buckets: Vec<&str> = page
        .lines()
        .filter(|l| l.starts_with("kubedns_probe_kubedns_latency_ms_bucket"))
        .collect();
    assert_eq!(buckets.len(), 17, "16 buckets and +Inf: {buckets:?}");
    assert!(buckets[0].starts_with("kubedns_probe_kubedns_latency_ms_bucket{le=\"0.25\"}"));
    assert!(buckets[15].starts_with("kubedns_probe_kubedns_latency_ms_bucket{le=\"8192.0\"}"));
    assert!(value(&page, "kubedns_probe_kubedns_latency_ms_count").is_some_and(|n| n >= 1.0));
    assert_eq!(value(&page, "kubedns_probe_kubedns_errors"), Some(0.0));
    assert!(
        page.contains("healthz_probe_up{probe=\"kubedns\"} 1\n"),
        "{page}"
    );
    assert!(
        page.contains("healthz_probe_up{probe=\"dnsmasq\"} 1\n"),
        "{page}"
    );
    assert_eq!(value(&page, "kubedns_dnsmasq_hits"), Some(10.0));
    assert_eq!(value(&page, "kubedns_dnsmasq_max_size"), Some(1000.0));

    // More hits, then dnsmasq restarts and counts from zero: the counters only grow.
    let scrape_after_poll = |stats: Option<Stats>| {
        dnsmasq.set_stats(stats);
        let addr = running.http;
        async move {
            tokio::time::sleep(POLL).await;
            http_get(addr, "/metrics").await.body
        }
    };
    let page = scrape_after_poll(Some(Stats {
        hits: 25,
        misses: 5,
        insertions: 5,
        cache_size: 1000,
        evictions: 0,
    }))
    .await;
    assert_eq!(value(&page, "kubedns_dnsmasq_hits"), Some(25.0));
    let page = scrape_after_poll(Some(Stats {
        hits: 3,
        misses: 1,
        insertions: 1,
        cache_size: 1000,
        evictions: 0,
    }))
    .await;
    assert_eq!(value(&page, "kubedns_dnsmasq_hits"), Some(28.0));
    assert_eq!(value(&page, "kubedns_dnsmasq_misses"), Some(6.0));
    assert_eq!(value(&page, "kubedns_dnsmasq_max_size"), Some(1000.0));
    assert_eq!(value(&page, "kubedns_dnsmasq_errors"), Some(0.0));

    // A dnsmasq that cannot say: an error, and nothing else moves.
    let page = scrape_after_poll(None).await;
    assert_eq!(value(&page, "kubedns_dnsmasq_errors"), Some(1.0));
    assert_eq!(value(&page, "kubedns_dnsmasq_hits"), Some(28.0));

    shutdown.cancel();
    test_support::timeout_after(common::LIMIT, running.wait())
        .await
        .expect("clean stop");
    kubedns.stop().await;
}

#[tokio::test(start_paused = true)]
async fn the_namespace_flag_renames_the_sidecar_metrics_only() {
    let config = common::config(&[
        "--prometheus-addr=127.0.0.1",
        "--prometheus-port=0",
        "--prometheus-namespace=skydns",
        "--prometheus-path=/stats",
        "--dnsmasq-poll-interval-ms=0",
        "--probe=p,127.0.0.1:9,example.com,5,A",
    ]);
    let shutdown = CancellationToken::new();
    let running = healthz::start(config, shutdown.clone())
        .await
        .expect("starts");
    let page = http_get(running.http, "/stats").await.body;
    let names: Vec<String> = families(&page).into_keys().collect();
    assert!(
        names.contains(&"skydns_dnsmasq_hits".to_owned()),
        "{names:?}"
    );
    assert!(
        names.contains(&"skydns_probe_p_errors".to_owned()),
        "{names:?}"
    );
    assert!(names.contains(&"healthz_probe_up".to_owned()), "{names:?}");
    assert_eq!(http_get(running.http, "/metrics").await.status, 404);
    shutdown.cancel();
}
