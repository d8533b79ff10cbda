//! dnsmasq-rs: the caching DNS front end of the kube-dns pod, replacing dnsmasq and
//! dnsmasq-nanny in one process.
//!
//! It owns what happens to a query on port 53: hosts-file answers, CHAOS statistics, the
//! response cache ([`cache`]), routing by domain ([`route`]), coalescing of identical queries
//! and forwarding ([`forwarder`]), and the nanny's job of following the kube-dns ConfigMap
//! ([`reload`]), live and without flushing the cache. It also accepts NOTIFY from kubedns to drop
//! changed names from the cache at once.
//!
//! It does not own sockets, framing or hostile-packet handling (`kdns-net`, which also holds the
//! upstream pool with failover), the ConfigMap format (`kdns-config`), or process plumbing
//! (`kdns-daemon`).
//!
//! [`start_with`] takes servers answered in this process ([`InProcess`]: address → a
//! `kdns_net::Exchanger`), so that a binary running kubedns beside it asks kubedns's handler
//! directly instead of over loopback; [`start`] has none.

pub mod bailiwick;
pub mod cache;
pub mod chaos;
pub mod config;
pub mod forwarder;
pub mod hosts;
pub mod metrics;
pub mod reload;
pub mod route;
pub mod rrl;

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;

use anyhow::Context as _;
use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use kdns_config::DnsConfig;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use config::{Args, Config, parse_args};
pub use forwarder::{Forwarder, ForwarderSettings};
use hosts::Hosts;
pub use metrics::Metrics;
use reload::Reloader;
pub use route::InProcess;

/// A started dnsmasq-rs: where it listens and its handler.
#[derive(Debug)]
pub struct Running {
    /// DNS addresses (UDP and TCP on each), in `Config::listen` order.
    pub dns: Vec<SocketAddr>,
    /// `/metrics`, when served.
    pub metrics_addr: Option<SocketAddr>,
    /// The metrics registry (also readable without the HTTP server).
    pub metrics: Metrics,
    /// The handler, for inspecting the cache and routes in tests.
    pub forwarder: Forwarder,
    servers: Vec<JoinHandle<std::io::Result<()>>>,
}

impl Running {
    /// Waits until every DNS server has drained after shutdown.
    pub async fn wait(self) -> anyhow::Result<()> {
        for server in self.servers {
            server
                .await
                .context("DNS server task failed")?
                .context("DNS server failed")?;
        }
        Ok(())
    }
}

/// Reads the configuration sources, binds, starts every task and returns; everything stops
/// when `shutdown` is cancelled.
pub async fn start(config: Config, shutdown: CancellationToken) -> anyhow::Result<Running> {
    start_with(config, shutdown, InProcess::new()).await
}

/// [`start`], with servers answered in this process: a query that routing sends to an address
/// of `in_process` is handed to that address's exchanger instead of a socket. Everything else
/// is as for any server: the cache, coalescing, the counters and failover. This is how one
/// process runs kubedns and dnsmasq-rs together with no loopback hop.
pub async fn start_with(
    config: Config,
    shutdown: CancellationToken,
    in_process: InProcess,
) -> anyhow::Result<Running> {
    let metrics = Metrics::new();
    let (dns_config, updates, invalid) = match &config.config_dir {
        Some(dir) => {
            let watch = kdns_config::watch_dir(dir.clone(), config.sync_interval, shutdown.clone());
            (
                watch.initial,
                Some(watch.updates),
                Some(watch.invalid_updates),
            )
        }
        None => (DnsConfig::default(), None, None),
    };
    let mut reloader = Reloader::with_table(
        config.clone(),
        dns_config,
        route::UpstreamTable::with_in_process(in_process),
    );
    let routes = reloader.routes().await;
    let hosts = Hosts::read(&config.hosts_files);
    let forwarder = Forwarder::new(
        ForwarderSettings {
            cache: config.cache.clone(),
            notify: config.notify.clone(),
            edns_packet_max: config.edns_packet_max,
            forward_max: config.dns_forward_max,
            log_queries: config.log_queries,
        },
        routes,
        hosts,
        metrics.clone(),
    );
    tracing::info!(
        upstreams = ?forwarder.routes().upstreams().iter().map(|s| s.addr()).collect::<Vec<_>>(),
        cache_size = config.cache.capacity,
        negative_caching = config.cache.negative,
        notify = ?config.notify,
        "starting"
    );

    let mut listeners = Vec::new();
    for addr in &config.listen {
        let bound = match kdns_net::bind(*addr).await {
            Ok(bound) => bound,
            // The default "all addresses" is the IPv6 wildcard; without IPv6 use IPv4's.
            Err(error) if addr.ip().is_unspecified() && addr.is_ipv6() => {
                tracing::debug!(%error, "cannot bind the IPv6 wildcard; using IPv4's");
                let v4 = SocketAddr::new(Ipv4Addr::UNSPECIFIED.into(), addr.port());
                kdns_net::bind(v4)
                    .await
                    .with_context(|| format!("failed to bind DNS on {v4}"))?
            }
            Err(error) => {
                return Err(error).with_context(|| format!("failed to bind DNS on {addr}"));
            }
        };
        let local = bound.0.local_addr()?;
        tracing::info!(addr = %local, "listening for DNS over UDP and TCP");
        listeners.push((local, bound));
    }

    let metrics_addr = match config.metrics {
        Some(addr) => {
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("failed to bind the metrics address {addr}"))?;
            let local = listener.local_addr()?;
            tracing::info!(addr = %local, "serving /metrics");
            kdns_daemon::spawn_http(listener, metrics_router(metrics.clone()), shutdown.clone());
            Some(local)
        }
        None => None,
    };

    tokio::spawn(reload::run(
        reloader,
        forwarder.clone(),
        metrics.clone(),
        updates,
        invalid,
        shutdown.clone(),
    ));
    if !config.log_interval.is_zero() {
        tokio::spawn(log_stats(
            forwarder.clone(),
            config.log_interval,
            shutdown.clone(),
        ));
    }

    let server_config = kdns_net::ServerConfig {
        max_udp_payload: config.edns_packet_max,
        // Requests waiting on a coalesced fetch hold a slot too; never let this, rather than
        // --dns-forward-max, be the limit.
        max_in_flight: config.dns_forward_max.saturating_mul(4).max(10_000),
        // Port 53 faces every pod: idle or dribbling connections must not lock others out.
        tcp_reclaim_after: Some(std::time::Duration::from_secs(1)),
        response_limiter: config.rate_limit.map(|limit| {
            Arc::new(rrl::RateLimiter::new(limit, metrics.clone()))
                as Arc<dyn kdns_net::ResponseLimiter>
        }),
        ..kdns_net::ServerConfig::default()
    };
    let handler = Arc::new(forwarder.clone());
    let mut dns = Vec::new();
    let mut servers = Vec::new();
    for (local, (udp, tcp)) in listeners {
        dns.push(local);
        servers.push(tokio::spawn(kdns_net::serve(
            Some(udp),
            Some(tcp),
            handler.clone(),
            server_config.clone(),
            shutdown.clone(),
        )));
    }
    Ok(Running {
        dns,
        metrics_addr,
        metrics,
        forwarder,
        servers,
    })
}

/// Starts dnsmasq-rs and serves until `shutdown`.
pub async fn run(config: Config, shutdown: CancellationToken) -> anyhow::Result<()> {
    start(config, shutdown).await?.wait().await
}

/// `/metrics` in the Prometheus text format.
pub fn metrics_router(metrics: Metrics) -> Router {
    Router::new()
        .route("/metrics", get(render_metrics))
        .with_state(metrics)
}

async fn render_metrics(State(metrics): State<Metrics>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        metrics.encode(),
    )
}

/// `-logInterval`: the nanny made dnsmasq log its statistics (SIGUSR1); log them here.
async fn log_stats(forwarder: Forwarder, every: std::time::Duration, shutdown: CancellationToken) {
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(every) => {}
        }
        let stats = forwarder.stats();
        tracing::info!(
            cache_size = stats.cache_size,
            cached_records = forwarder.cache_records(),
            hits = stats.hits,
            misses = stats.misses,
            insertions = stats.insertions,
            evictions = stats.evictions,
            servers = ?stats.servers,
            "cache statistics"
        );
    }
}
