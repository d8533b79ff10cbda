//! What dnsmasq-nanny did, without its restarts: watch the ConfigMap directory (and the resolv
//! file, the hosts files, and the addresses of stub-domain servers given by name) and apply
//! changes to the running forwarder, keeping every cached answer the change does not touch.

use std::net::SocketAddr;
use std::time::Duration;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::{Name, RData, RecordType};
use kdns_config::{DnsConfig, Nameserver};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::config::Config;
use crate::forwarder::Forwarder;
use crate::hosts::Hosts;
use crate::metrics::Metrics;
use crate::route::{ResolvedHosts, RouteInputs, Routes, UpstreamTable};

/// The inputs routing is built from, read afresh on every sync.
#[derive(Debug)]
pub struct Reloader {
    config: Config,
    table: UpstreamTable,
    dns: DnsConfig,
    resolved: ResolvedHosts,
    resolv: Vec<SocketAddr>,
    looped: Vec<SocketAddr>,
}

impl Reloader {
    /// A reloader for `config`, starting from the ConfigMap `dns`.
    pub fn new(config: Config, dns: DnsConfig) -> Self {
        Self::with_table(config, dns, UpstreamTable::default())
    }

    /// [`Reloader::new`], building routes with `table` (which may hold in-process servers).
    pub fn with_table(config: Config, dns: DnsConfig, table: UpstreamTable) -> Self {
        Self {
            config,
            table,
            dns,
            resolved: ResolvedHosts::new(),
            resolv: Vec::new(),
            looped: Vec::new(),
        }
    }

    /// Re-reads the resolv file and resolves stub-domain server names, then builds the table.
    pub async fn routes(&mut self) -> Routes {
        self.resolv = match &self.config.resolv_file {
            Some(path) if self.dns.upstream_nameservers.is_empty() => {
                match kdns_config::read_resolv_conf(path) {
                    Ok(resolv) => resolv.nameservers,
                    Err(error) => {
                        debug!(path = %path.display(), %error, "cannot read the resolv file; no default servers from it");
                        Vec::new()
                    }
                }
            }
            _ => Vec::new(),
        };
        self.resolved = resolve_stub_hosts(&self.config, &self.dns).await;
        self.build()
    }

    fn build(&mut self) -> Routes {
        let resolv: Vec<SocketAddr> = self
            .resolv
            .iter()
            .filter(|a| !self.looped.contains(a))
            .copied()
            .collect();
        let mut servers = self.config.servers.clone();
        servers.retain(|spec| !matches!(spec.target, crate::config::ServerTarget::Addr(a) if spec.domains.is_empty() && self.looped.contains(&a)));
        let mut dns = self.dns.clone();
        dns.upstream_nameservers
            .retain(|a| !self.looped.contains(a));
        self.table.build(&RouteInputs {
            servers: &servers,
            dns: &dns,
            resolv: &resolv,
            resolved: &self.resolved,
            always_tcp: &self.config.always_tcp,
            timeout: self.config.upstream_timeout,
            parallel: self.config.all_servers,
        })
    }
}

/// Resolves the stub-domain servers given by host name, as dnsmasq-nanny did: names in a
/// cluster domain through kubedns, others through the system resolver. A name that does not
/// resolve is logged and left out.
pub async fn resolve_stub_hosts(config: &Config, dns: &DnsConfig) -> ResolvedHosts {
    let mut resolved = ResolvedHosts::new();
    for stub in &dns.stub_domains {
        for server in &stub.servers {
            let Nameserver::Host { name, port } = server else {
                continue;
            };
            if resolved.contains_key(&(name.clone(), *port)) {
                continue;
            }
            let addrs = match resolve_host(config, name, *port).await {
                Ok(addrs) if !addrs.is_empty() => addrs,
                Ok(_) => {
                    warn!(domain = %stub.domain, server = %name, "stub domain server name has no address; skipping it");
                    continue;
                }
                Err(error) => {
                    warn!(domain = %stub.domain, server = %name, %error, "cannot resolve stub domain server name; skipping it");
                    continue;
                }
            };
            // The nanny took the first address only.
            resolved.insert((name.clone(), *port), addrs.into_iter().take(1).collect());
        }
    }
    resolved
}

async fn resolve_host(config: &Config, host: &str, port: u16) -> Result<Vec<SocketAddr>, String> {
    let Ok(mut name) = Name::from_ascii(host) else {
        return Err("invalid name".into());
    };
    name.set_fqdn(true);
    if config.cluster_domains.iter().any(|d| d.zone_of(&name)) {
        for rtype in [RecordType::A, RecordType::AAAA] {
            let query = kdns_net::query_message(host, rtype).map_err(|e| e.to_string())?;
            let reply = kdns_net::exchange(config.kubedns_server, &query, config.upstream_timeout)
                .await
                .map_err(|e| e.to_string())?;
            if reply.metadata.response_code != ResponseCode::NoError {
                continue;
            }
            let addrs: Vec<SocketAddr> = reply
                .answers
                .iter()
                .filter_map(|r| match &r.data {
                    RData::A(a) => Some(SocketAddr::new(a.0.into(), port)),
                    RData::AAAA(a) => Some(SocketAddr::new(a.0.into(), port)),
                    _ => None,
                })
                .collect();
            if !addrs.is_empty() {
                return Ok(addrs);
            }
        }
        return Ok(Vec::new());
    }
    tokio::net::lookup_host((host, port))
        .await
        .map(Iterator::collect)
        .map_err(|e| e.to_string())
}

/// Runs until `shutdown`: applies ConfigMap changes as they come, and every `sync_interval`
/// re-reads the resolv and hosts files and re-resolves stub server names, applying what
/// changed. With `--dns-loop-detect`, probes the default servers after each change.
pub async fn run(
    mut reloader: Reloader,
    forwarder: Forwarder,
    metrics: Metrics,
    mut updates: Option<watch::Receiver<DnsConfig>>,
    invalid_updates: Option<std::sync::Arc<std::sync::atomic::AtomicU64>>,
    shutdown: CancellationToken,
) {
    let period = if reloader.config.sync_interval.is_zero() {
        Duration::from_secs(1)
    } else {
        reloader.config.sync_interval
    };
    let mut hosts = Hosts::read(&reloader.config.hosts_files);
    let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    if reloader.config.dns_loop_detect {
        send_loop_probes(&forwarder, &reloader.config).await;
    }
    loop {
        let config_changed = tokio::select! {
            () = shutdown.cancelled() => return,
            _ = ticker.tick() => false,
            changed = async {
                match updates.as_mut() {
                    Some(rx) => rx.changed().await.is_ok(),
                    None => std::future::pending().await,
                }
            } => {
                if !changed {
                    // The watcher stopped (shutdown); keep the configuration in force.
                    updates = None;
                    continue;
                }
                true
            }
            () = forwarder.loop_detected() => {
                reloader.looped = forwarder.looped_servers();
                false
            }
        };
        if let Some(rx) = &mut updates
            && config_changed
        {
            reloader.dns = rx.borrow_and_update().clone();
        }
        if let Some(invalid) = &invalid_updates {
            metrics.set_config_errors(invalid.load(std::sync::atomic::Ordering::Relaxed));
        }
        let new_hosts = Hosts::read(&reloader.config.hosts_files);
        if new_hosts != hosts {
            info!("hosts files changed; answering from the new ones");
            hosts = new_hosts.clone();
            forwarder.set_hosts(new_hosts);
        }
        let routes = reloader.routes().await;
        if routes.fingerprint() == forwarder.routes().fingerprint() {
            continue;
        }
        let dropped = forwarder.set_routes(routes);
        metrics.config_reload();
        info!(
            routes = ?forwarder.routes().fingerprint().iter().map(|(d, s)| format!("{}={:?}", d.as_ref().map_or_else(|| "default".to_owned(), ToString::to_string), s)).collect::<Vec<_>>(),
            dropped_cached_answers = dropped,
            "routing changed; applied without a restart"
        );
        if reloader.config.dns_loop_detect {
            send_loop_probes(&forwarder, &reloader.config).await;
        }
    }
}

/// Sends one probe to each default server, in the background.
async fn send_loop_probes(forwarder: &Forwarder, config: &Config) {
    let servers: Vec<SocketAddr> = match forwarder.routes().route(&Name::root()) {
        crate::route::Route::Forward(pool) => pool.servers().iter().map(|s| s.addr()).collect(),
        crate::route::Route::Local => Vec::new(),
    };
    let timeout = config.upstream_timeout;
    for (name, server) in forwarder.loop_probes(&servers) {
        let Ok(query) = kdns_net::query_message(&name.to_ascii(), RecordType::TXT) else {
            continue;
        };
        tokio::spawn(async move {
            let _ = kdns_net::exchange_udp(server, &query, timeout).await;
        });
    }
}
