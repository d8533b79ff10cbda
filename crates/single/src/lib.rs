//! kube-dns-single: the whole kube-dns pod in one process.
//!
//! It links the `kubedns`, `dnsmasq-rs` and `healthz` libraries and starts all three, each
//! configured by its own binary's parser ([`flags`]). It owns no DNS logic; what it adds is the
//! wiring between them:
//!
//! - **The in-process hop.** kubedns's [`Running`](kubedns::Running) hands out its DNS handler
//!   (`zone`). Wrapped in a [`kdns_net::HandlerExchanger`], it is given to dnsmasq-rs's
//!   [`start_with`](dnsmasq_rs::start_with) as the in-process server for every address that
//!   names kubedns ([`flags::kubedns_addresses`]: its bound address and, for a wildcard,
//!   loopback). dnsmasq-rs's routing builds an [`Upstream::in_process`](kdns_net::Upstream)
//!   for a `--server` at such an address, so a cluster name missing from the cache is answered by
//!   a function call on the message itself: no socket, no encoding. The pool still counts,
//!   times out, fails over and caches as for any server.
//! - **kubedns keeps its DNS port**, so the healthz kubedns probe and outside clients reach it as
//!   in the pod.
//! - **Absent groups** get the manifest's arguments, derived from kubedns's domain and the
//!   ports actually bound ([`flags::dnsmasq_defaults`], [`flags::healthz_defaults`]).
//!
//! [`start`] runs dnsmasq-rs on the caller's runtime and kubedns and healthz on `control`, a
//! runtime handle the caller chooses (the binary's choice, and why, is in `main.rs`).

pub mod flags;

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;

use anyhow::Context as _;
use kdns_net::{Exchanger, HandlerExchanger};
use tokio::runtime::Handle;
use tokio_util::sync::CancellationToken;

pub use flags::{Command, Plan, UsageError, parse};

/// The three servers, started.
#[derive(Debug)]
pub struct Running {
    /// kubedns: its DNS address, `/readiness`, `/metrics`, records and socket counters.
    pub kubedns: kubedns::Running,
    /// dnsmasq-rs: its DNS addresses, metrics and forwarder (whose upstreams include the
    /// in-process kubedns).
    pub dnsmasq: dnsmasq_rs::Running,
    /// healthz: its HTTP address and checks.
    pub healthz: healthz::Running,
}

impl Running {
    /// Waits until all three have drained after shutdown.
    pub async fn wait(self) -> anyhow::Result<()> {
        let (kubedns, dnsmasq, healthz) = tokio::join!(
            self.kubedns.wait(),
            self.dnsmasq.wait(),
            self.healthz.wait()
        );
        kubedns.context("kubedns")?;
        dnsmasq.context("dnsmasq-rs")?;
        healthz.context("healthz")?;
        Ok(())
    }
}

/// Starts kubedns and healthz on `control` and dnsmasq-rs on the current runtime, and returns
/// once all are bound; everything stops when `shutdown` is cancelled. When one fails to start,
/// `shutdown` is cancelled so that those already started stop too.
pub async fn start(
    plan: Plan,
    shutdown: CancellationToken,
    control: &Handle,
) -> anyhow::Result<Running> {
    let started = start_all(plan, shutdown.clone(), control).await;
    if started.is_err() {
        shutdown.cancel();
    }
    started
}

async fn start_all(
    plan: Plan,
    shutdown: CancellationToken,
    control: &Handle,
) -> anyhow::Result<Running> {
    let Plan {
        kubedns: kubedns_args,
        dnsmasq,
        healthz,
        ..
    } = plan;

    // kubedns's own DNS server runs on `control` too: it only sees probes and outside clients.
    let kubedns = control
        .spawn(kubedns::start_with(
            kubedns_args.clone(),
            shutdown.clone(),
            kubedns::DnsOn::CurrentRuntime,
        ))
        .await
        .context("kubedns's start-up task failed")??;

    let exchanger: Arc<dyn Exchanger> = Arc::new(HandlerExchanger::new(
        kubedns.zone.clone(),
        SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
    ));
    let in_process: dnsmasq_rs::InProcess = flags::kubedns_addresses(kubedns.dns)
        .into_iter()
        .map(|addr| (addr, exchanger.clone()))
        .collect();
    let dnsmasq_config = match dnsmasq {
        Some(config) => config,
        None => flags::dnsmasq_default_config(&kubedns_args, kubedns.dns)?,
    };
    let dnsmasq = dnsmasq_rs::start_with(dnsmasq_config, shutdown.clone(), in_process).await?;
    let upstreams = dnsmasq.forwarder.routes().upstreams();
    if upstreams.iter().any(|u| u.is_in_process()) {
        tracing::info!(kubedns = %kubedns.dns, "dnsmasq-rs asks kubedns in-process");
    } else {
        tracing::warn!(kubedns = %kubedns.dns, servers = ?upstreams.iter().map(|u| u.addr()).collect::<Vec<_>>(),
            "no --server of dnsmasq-rs names kubedns's DNS address; nothing is answered in-process");
    }

    let healthz_config = match healthz {
        Some(config) => config,
        None => {
            let dnsmasq_dns = dnsmasq.dns.first().copied().unwrap_or(kubedns.dns);
            flags::healthz_default_config(&kubedns_args.domain, kubedns.dns, dnsmasq_dns)?
        }
    };
    let healthz = control
        .spawn(healthz::start(healthz_config, shutdown))
        .await
        .context("healthz's start-up task failed")??;

    Ok(Running {
        kubedns,
        dnsmasq,
        healthz,
    })
}

/// Starts everything and serves until `shutdown`.
pub async fn run(plan: Plan, shutdown: CancellationToken, control: &Handle) -> anyhow::Result<()> {
    start(plan, shutdown, control).await?.wait().await
}
