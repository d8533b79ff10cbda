//! healthz: the kube-dns pod's health checker, in place of both the k8s-dns-sidecar and the
//! older exechealthz.
//!
//! It owns:
//! - the checks: native DNS probes in the sidecar's `--probe` syntax ([`probe`]) and
//!   exechealthz's `--cmd`/`--url` shell commands ([`exec`]), each run on its own schedule by a
//!   [`prober::Prober`] and judged by [`check::Check`] (passing, failing, stale, waiting);
//! - the sidecar's dnsmasq statistics over CHAOS TXT ([`dnsmasq`]);
//! - the metrics, with the sidecar's exact names ([`metrics`]);
//! - one HTTP server with `/healthz`, the per-check paths of both predecessors, and `/metrics`
//!   ([`http`]).
//!
//! It does not own DNS on the wire (`kdns-net`), nor process plumbing such as logging, signals and
//! legacy flag spellings (`kdns-daemon`).

pub mod check;
pub mod config;
pub mod dnsmasq;
pub mod exec;
pub mod http;
pub mod metrics;
pub mod probe;
pub mod prober;

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use check::{Check, Checks, Target};
pub use config::{Args, Config, ConfigError};
pub use metrics::Metrics;
use prober::Prober;

/// How long a stopped server waits for open HTTP connections before dropping them, so that a
/// client that never finishes its request cannot hold up shutdown.
const HTTP_DRAIN: Duration = Duration::from_secs(5);

/// Why healthz could not start or stopped serving.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The HTTP port is taken or not allowed.
    #[error("failed to bind the HTTP server on {addr}")]
    BindHttp {
        /// The address asked for.
        addr: SocketAddr,
        /// Why it failed.
        #[source]
        source: io::Error,
    },
    /// The HTTP server failed.
    #[error("the HTTP server failed")]
    Serve(#[source] io::Error),
}

/// A started healthz.
#[derive(Debug)]
pub struct Running {
    /// Where the HTTP server listens.
    pub http: SocketAddr,
    /// The checks, to read their state.
    pub checks: Checks,
    /// The metrics.
    pub metrics: Metrics,
    tasks: TaskTracker,
    server: JoinHandle<io::Result<()>>,
}

impl Running {
    /// Waits until the HTTP server and every prober have stopped after shutdown.
    pub async fn wait(self) -> io::Result<()> {
        self.tasks.close();
        self.tasks.wait().await;
        match self.server.await {
            Ok(result) => result,
            Err(e) => Err(io::Error::other(e)),
        }
    }
}

/// The checks a config describes, in flag order: probes, then commands.
pub fn checks(config: &Config) -> Checks {
    let probes = config.probes.iter().map(|spec| {
        Check::new(
            spec.label.clone(),
            Target::Dns(spec.clone()),
            config.max_age(spec),
        )
    });
    let execs = config
        .execs
        .iter()
        .map(|spec| Check::new(spec.label(), Target::Exec(spec.clone()), config.latency));
    Checks::new(probes.chain(execs).collect())
}

/// Binds the HTTP server, starts every prober and the dnsmasq poller, and returns; all stop
/// when `shutdown` is cancelled.
pub async fn start(config: Config, shutdown: CancellationToken) -> Result<Running, Error> {
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|source| Error::BindHttp {
            addr: config.listen,
            source,
        })?;
    let http = listener.local_addr().map_err(|source| Error::BindHttp {
        addr: config.listen,
        source,
    })?;
    tracing::info!(addr = %http, "serving HTTP");

    let checks = checks(&config);
    let metrics = Metrics::new(&config.namespace, checks.iter().map(|c| c.label()));
    let tasks = TaskTracker::new();
    for check in checks.iter() {
        let (interval, timeout) = match check.target() {
            Target::Dns(spec) => {
                if spec.qtype == hickory_proto::rr::RecordType::ANY {
                    tracing::warn!(probe = %spec.label, "probe asks for ANY, which kube-dns refused and RFC 8482 servers answer minimally; name a type such as SRV");
                }
                (spec.interval, config.probe_timeout)
            }
            Target::Exec(_) => (config.exec_period, config.latency),
        };
        let mut prober = Prober::new(Arc::clone(check), interval, timeout).quiet(config.quiet);
        if let Some(m) = metrics.probe(check.label()) {
            prober = prober.metrics(m);
        }
        tracing::info!(probe = %check.label(), target = %check.target(), path = ?check.path(), "checking");
        tasks.spawn(prober.run(shutdown.clone()));
    }
    if let Some(poll) = config.dnsmasq.clone() {
        tasks.spawn(dnsmasq::run(poll, metrics.dnsmasq(), shutdown.clone()));
    }

    let app = http::router(http::AppState {
        checks: checks.clone(),
        metrics: metrics.clone(),
        metrics_path: config.metrics_path.as_str().into(),
        output: config.output,
    });
    let server = tokio::spawn(async move {
        let stopped = shutdown.clone();
        let serve = axum::serve(listener, app).with_graceful_shutdown(stopped.cancelled_owned());
        tokio::select! {
            served = serve => served,
            // Graceful shutdown waits for open connections; bound it.
            () = async { shutdown.cancelled().await; tokio::time::sleep(HTTP_DRAIN).await } => Ok(()),
        }
    });
    Ok(Running {
        http,
        checks,
        metrics,
        tasks,
        server,
    })
}

/// Starts healthz and serves until `shutdown`.
pub async fn run(config: Config, shutdown: CancellationToken) -> Result<(), Error> {
    start(config, shutdown)
        .await?
        .wait()
        .await
        .map_err(Error::Serve)
}
