//! kubedns: the cluster's DNS records, served from memory, fed by the Kubernetes API.
//!
//! It owns the record tree ([`records`]), the sources that feed it ([`source`]), the writer that
//! publishes snapshots ([`store`]), the DNS handler ([`dns`]) and its HTTP endpoints ([`http`]).
//! Sockets, framing and hostile-packet handling live in `kdns-net`; the ConfigMap format in
//! `kdns-config`.

pub mod config;
pub mod dns;
pub mod forward;
pub mod http;
pub mod metrics;
pub mod model;
pub mod notify;
pub mod records;
pub mod source;
pub mod store;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::Context as _;
use hickory_proto::rr::Name;
use kdns_config::DnsConfig;
use kdns_daemon::{Latch, Readiness};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

pub use config::Args;
pub use dns::ClusterZone;
use forward::{Forwarder, Upstreams};
use metrics::Metrics;
use records::Records;
use store::{Resource, SourceEvent, Store, Writer};

/// A started kubedns: where it listens, and its records.
#[derive(Debug)]
pub struct Running {
    /// DNS (UDP and TCP on the same port).
    pub dns: SocketAddr,
    /// `/readiness` and `/cache`.
    pub healthz: SocketAddr,
    /// `/metrics`, unless turned off.
    pub metrics: Option<SocketAddr>,
    /// The records being served.
    pub store: Store,
    /// Ready after the first full sync.
    pub readiness: Readiness,
    /// The DNS handler the server runs. A process that embeds kubedns beside a cache can hand
    /// it queries directly (`kdns_net::HandlerExchanger`), with no socket between them.
    pub zone: Arc<ClusterZone>,
    /// Counters of the DNS server: what arrived over the sockets.
    pub dns_stats: Arc<kdns_net::ServerStats>,
    server: kdns_net::RunningServer,
}

impl Running {
    /// Waits until the DNS server has drained after shutdown.
    pub async fn wait(self) -> anyhow::Result<()> {
        self.server.wait().await.context("DNS server failed")
    }
}

/// Where DNS is answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DnsOn {
    /// A thread of its own, with its own runtime: what the binary does.
    OwnThread,
    /// A task of the caller's runtime: for tests that pause the runtime's clock.
    CurrentRuntime,
}

/// Binds, starts every task, and returns; everything stops when `shutdown` is cancelled. DNS is
/// answered on a thread of its own.
pub async fn start(args: Args, shutdown: CancellationToken) -> anyhow::Result<Running> {
    start_with(args, shutdown, DnsOn::OwnThread).await
}

/// [`start`], choosing where DNS is answered.
pub async fn start_with(
    args: Args,
    shutdown: CancellationToken,
    dns_on: DnsOn,
) -> anyhow::Result<Running> {
    let metrics = Metrics::new();
    let readiness = Readiness::new();
    let latch = readiness.latch();

    if !args.federations.is_empty() {
        tracing::warn!(federations = %args.federations, "federations are not supported; ignoring --federations");
    }
    if args.profiling {
        tracing::warn!("--profiling is accepted but no profiling endpoints are served");
    }
    let forwarder = Forwarder::new(Upstreams::default(), args.upstream_timeout);
    start_config(&args, &forwarder, &metrics, &shutdown)?;

    let (udp, tcp) = kdns_net::bind(args.dns_addr())
        .await
        .with_context(|| format!("failed to bind DNS on {}", args.dns_addr()))?;
    let dns = udp.local_addr()?;
    tracing::info!(addr = %dns, "listening for DNS over UDP and TCP");
    let healthz_listener =
        tokio::net::TcpListener::bind(SocketAddr::new(args.http_bind_address, args.healthz_port))
            .await
            .with_context(|| format!("failed to bind the healthz port {}", args.healthz_port))?;
    let healthz = healthz_listener.local_addr()?;
    tracing::info!(addr = %healthz, "serving /readiness and /cache");
    let metrics_listener = if let Some(port) = args.metrics_port.0 {
        let listener = tokio::net::TcpListener::bind(SocketAddr::new(args.http_bind_address, port))
            .await
            .with_context(|| format!("failed to bind the metrics port {port}"))?;
        tracing::info!(addr = %listener.local_addr()?, "serving /metrics");
        Some(listener)
    } else {
        None
    };
    let metrics_addr = metrics_listener
        .as_ref()
        .map(|l| l.local_addr())
        .transpose()?;

    let writer = Writer::new(Records::new(&args.domain, args.ttl, args.pod_records));
    let store = writer.store();
    let zone = ClusterZone::new(store.clone(), forwarder, metrics.clone());
    let notifier = (!args.notify.is_empty())
        .then(|| notify::Notifier::start(args.notify.clone(), args.domain.to_lowercase()));

    // The state source: a file (read now, so that a broken file is a clear start-up error) or
    // the API.
    let (events_tx, events_rx) = mpsc::channel::<SourceEvent>(4096);
    if let Some(path) = &args.cluster_state {
        let state = source::file::read(path)?;
        tracing::info!(path = %path.display(), objects = state.objects.len(), "read cluster-state file");
        let required = vec![
            Resource::Services,
            Resource::EndpointSlices,
            Resource::Endpoints,
            Resource::Pods,
        ];
        tokio::spawn(run_writer(
            writer,
            events_rx,
            required,
            zone.clone(),
            latch,
            metrics.clone(),
            notifier,
        ));
        source::file::send_state(state, &events_tx, &metrics)
            .await
            .context("record writer stopped")?;
        tokio::spawn(source::file::run(
            path.clone(),
            args.cluster_state_period,
            events_tx,
            metrics.clone(),
            shutdown.clone(),
        ));
    } else {
        let access = source::kube::ApiAccess {
            master_url: args.kube_master_url.clone(),
            kubeconfig: args.kubecfg_file.clone(),
        };
        let client = source::kube::client(&access).await?;
        if !args.config_map.is_empty() {
            let forwarder = zone.forwarder().clone();
            let fallback = fallback_servers(&args)?;
            tokio::spawn(source::kube::watch_config_map(
                client.clone(),
                args.config_map_namespace.clone(),
                args.config_map.clone(),
                metrics.clone(),
                move |config| forwarder.set_upstreams(upstreams(&config, fallback())),
                shutdown.clone(),
            ));
        }
        let (wanted, pod_records) = (args.endpoints_source, args.pod_records);
        let (metrics, zone, shutdown) = (metrics.clone(), zone.clone(), shutdown.clone());
        tokio::spawn(async move {
            let Some(endpoints) =
                source::kube::endpoints_resource(&client, wanted, &metrics, &shutdown).await
            else {
                return;
            };
            let mut required = vec![Resource::Services, endpoints];
            if pod_records == records::PodRecords::Verified {
                required.push(Resource::Pods);
            }
            tracing::info!(resources = ?required.iter().map(|r| r.as_str()).collect::<Vec<_>>(), "watching");
            tokio::spawn(run_writer(
                writer,
                events_rx,
                required.clone(),
                zone,
                latch,
                metrics.clone(),
                notifier,
            ));
            source::kube::run(client, required, events_tx, metrics, shutdown).await;
        });
    }
    tokio::spawn(warn_if_not_synced(
        readiness.clone(),
        args.initial_sync_timeout,
        shutdown.clone(),
    ));

    let healthz_app = http::healthz_router(http::HealthzState {
        readiness: readiness.clone(),
        store: store.clone(),
    });
    kdns_daemon::spawn_http(healthz_listener, healthz_app, shutdown.clone());
    if let Some(listener) = metrics_listener {
        kdns_daemon::spawn_http(
            listener,
            http::metrics_router(metrics.clone()),
            shutdown.clone(),
        );
    }

    let config = kdns_net::ServerConfig {
        // Node-local caches hold TCP connections to it; idle or dribbling ones must not lock
        // the others out until they time out.
        tcp_reclaim_after: Some(Duration::from_secs(1)),
        ..kdns_net::ServerConfig::default()
    };
    let handler = Arc::new(zone);
    let (zone, dns_stats) = (handler.clone(), config.stats.clone());
    let server = match dns_on {
        DnsOn::OwnThread => {
            kdns_net::serve_on_thread("dns", Some(udp), Some(tcp), handler, config, shutdown)
                .context("cannot start the DNS server thread")?
        }
        DnsOn::CurrentRuntime => {
            kdns_net::serve_in_task(Some(udp), Some(tcp), handler, config, shutdown)
        }
    };
    Ok(Running {
        dns,
        healthz,
        metrics: metrics_addr,
        store,
        readiness,
        zone,
        dns_stats,
        server,
    })
}

/// Starts kubedns and serves until `shutdown`.
pub async fn run(args: Args, shutdown: CancellationToken) -> anyhow::Result<()> {
    start(args, shutdown).await?.wait().await
}

/// Applies events in batches and publishes after each batch; releases readiness once every
/// required resource has been listed.
async fn run_writer(
    mut writer: Writer,
    mut events: mpsc::Receiver<SourceEvent>,
    required: Vec<Resource>,
    zone: ClusterZone,
    mut latch: Latch,
    metrics: Metrics,
    notifier: Option<notify::Notifier>,
) {
    let mut ready = false;
    while let Some(event) = events.recv().await {
        writer.apply(event);
        // Drain what is already queued so that a relist or a burst becomes one publish.
        for _ in 0..8192 {
            match events.try_recv() {
                Ok(event) => writer.apply(event),
                Err(_) => break,
            }
        }
        let mut published = writer.publish();
        if let Some(notifier) = &notifier {
            if published.names_overflow {
                published.names = vec![writer.store().load().zone().clone()];
            }
            notifier.notify(std::mem::take(&mut published.names));
        }
        let now = SystemTime::now();
        for at in published.changed_at {
            metrics.programmed(now.duration_since(at).unwrap_or_default());
        }
        if !ready && required.iter().all(|r| writer.synced().contains(r)) {
            ready = true;
            zone.set_ready();
            latch.release();
            metrics.set_ready();
            tracing::info!(records = writer.record_count(), "initial sync done; ready");
        }
        metrics.set_records(writer.record_count());
        for (resource, count) in writer.object_counts() {
            metrics.set_objects(resource, count);
        }
    }
}

async fn warn_if_not_synced(readiness: Readiness, after: Duration, shutdown: CancellationToken) {
    let mut waited = Duration::ZERO;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(after) => {}
        }
        if readiness.is_ready() {
            return;
        }
        waited += after;
        // kube-dns exited here; staying up unready lets the pod recover without a restart.
        tracing::warn!(waited = ?waited, "still waiting for the first full sync; not ready");
    }
}

/// The upstreams used when the configuration names none: `--nameservers`, else resolv.conf
/// (read each time, so that a configuration change also picks up a changed resolv.conf, as
/// kube-dns did).
fn fallback_servers(
    args: &Args,
) -> anyhow::Result<impl Fn() -> Vec<SocketAddr> + Send + Sync + 'static> {
    let flag_servers = if args.nameservers.is_empty() {
        Vec::new()
    } else {
        kdns_config::parse_nameserver_list(&args.nameservers)
            .with_context(|| format!("invalid --nameservers {:?}", args.nameservers))?
    };
    let resolv_conf = args.resolv_conf.clone();
    Ok(move || -> Vec<SocketAddr> {
        if !flag_servers.is_empty() {
            return flag_servers.clone();
        }
        match kdns_config::read_resolv_conf(&resolv_conf) {
            Ok(r) => r.nameservers,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read resolv.conf; no upstream nameservers");
                Vec::new()
            }
        }
    })
}

fn start_config(
    args: &Args,
    forwarder: &Forwarder,
    metrics: &Metrics,
    shutdown: &CancellationToken,
) -> anyhow::Result<()> {
    let fallback = fallback_servers(args)?;
    let Some(dir) = args.config_dir.clone() else {
        forwarder.set_upstreams(upstreams(&DnsConfig::default(), fallback()));
        return Ok(());
    };
    let mut watch = kdns_config::watch_dir(dir, args.config_period, shutdown.clone());
    forwarder.set_upstreams(upstreams(&watch.initial, fallback()));
    let (forwarder, metrics) = (forwarder.clone(), metrics.clone());
    tokio::spawn(async move {
        let mut invalid_seen = 0;
        while watch.updates.changed().await.is_ok() {
            let config = watch.updates.borrow_and_update().clone();
            forwarder.set_upstreams(upstreams(&config, fallback()));
            let invalid = watch
                .invalid_updates
                .load(std::sync::atomic::Ordering::Relaxed);
            for _ in invalid_seen..invalid {
                metrics.config_error();
            }
            invalid_seen = invalid;
        }
    });
    Ok(())
}

/// The forwarding targets a configuration names; the `fallback` servers when it names none.
fn upstreams(config: &DnsConfig, fallback: Vec<SocketAddr>) -> Upstreams {
    if !config.federations.is_empty() {
        tracing::warn!("the federations key is not supported; ignoring it");
    }
    let servers = if config.upstream_nameservers.is_empty() {
        fallback
    } else {
        config.upstream_nameservers.clone()
    };
    let mut stubs = Vec::new();
    for stub in &config.stub_domains {
        let Ok(mut domain) = Name::from_ascii(&stub.domain) else {
            continue;
        };
        domain.set_fqdn(true);
        let addrs = stub
            .servers
            .iter()
            .filter_map(|s| match s {
                kdns_config::Nameserver::Addr(addr) => Some(*addr),
                kdns_config::Nameserver::Host { name, .. } => {
                    tracing::warn!(domain = %stub.domain, server = %name, "stub domain servers given by name are resolved by dnsmasq-rs, not kubedns; skipping");
                    None
                }
            })
            .collect();
        stubs.push((domain, addrs));
    }
    Upstreams { servers, stubs }
}
