//! Process plumbing shared by the pod's three binaries: logging set-up, the shutdown signal,
//! a readiness latch, and the legacy flag spellings that old kube-dns manifests still pass.
//!
//! It owns nothing about DNS or Kubernetes.

mod duration;
mod flags;
mod readiness;

use std::fmt;
use std::str::FromStr;

use tokio_util::sync::CancellationToken;
use tracing_subscriber::EnvFilter;

pub use duration::parse_duration;
pub use flags::{LegacyFlags, normalize_args};
pub use readiness::{Latch, Readiness};

/// Exit code for a usage or configuration error (BSD `EX_USAGE`), as linkerd and sysexits use.
pub const EXIT_USAGE: i32 = 64;

/// How log lines are written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line, for log pipelines.
    Json,
}

impl FromStr for LogFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "text" | "plain" => Ok(Self::Text),
            "json" => Ok(Self::Json),
            other => Err(format!(
                "unknown log format {other:?} (expected text or json)"
            )),
        }
    }
}

impl fmt::Display for LogFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Text => "text",
            Self::Json => "json",
        })
    }
}

/// Installs the global tracing subscriber, writing to stderr.
///
/// `RUST_LOG` wins when set; otherwise the klog verbosity (`-v`/`--v`) picks the level:
/// 0-1 info, 2-3 debug for this workspace's crates, 4 and above trace.
pub fn init_tracing(format: LogFormat, klog_verbosity: u8) {
    let default = match klog_verbosity {
        0..=2 => "info",
        3 => "info,kubedns=debug,dnsmasq_rs=debug,healthz=debug,kdns_net=debug",
        _ => "debug",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        // A closed stderr must not turn a log line into a panic (tracing-subscriber reports
        // write errors with `eprintln!`, which panics when stderr is gone).
        .log_internal_errors(false);
    // A second initialisation (tests, embedding) is harmless: keep the first subscriber.
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

/// Returns a token cancelled on SIGTERM or SIGINT.
///
/// SIGTERM is how Kubernetes starts a graceful shutdown; the binaries then stop accepting work,
/// finish what is in flight and exit. A second signal exits at once.
pub fn shutdown_signal() -> CancellationToken {
    let token = CancellationToken::new();
    let cancel = token.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        cancel.cancel();
        tracing::info!("shutdown signal received; draining");
        wait_for_signal().await;
        tracing::warn!("second shutdown signal; exiting now");
        std::process::exit(1);
    });
    token
}

#[cfg(unix)]
async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::warn!("cannot install signal handlers; only SIGKILL stops this process");
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}

#[cfg(not(unix))]
async fn wait_for_signal() {
    let _ = tokio::signal::ctrl_c().await;
}

/// Parses the command line into `P` after [`normalize_args`]: `--help` and `--version` print and
/// exit 0, a usage error prints clap's message (naming the flag) and exits [`EXIT_USAGE`].
pub fn parse_args_or_exit<P: clap::Parser>(short_flags: &[char]) -> (P, LegacyFlags) {
    let (argv, legacy) = normalize_args(std::env::args(), short_flags);
    match P::try_parse_from(argv) {
        Ok(args) => (args, legacy),
        Err(e) => {
            let _ = e.print();
            std::process::exit(if e.use_stderr() { EXIT_USAGE } else { 0 });
        }
    }
}

/// Serves `app` on `listener` in the background until `shutdown`, then lets open requests
/// finish. A failure is logged; HTTP is never worth ending the process for.
pub fn spawn_http(
    listener: tokio::net::TcpListener,
    app: axum::Router,
    shutdown: CancellationToken,
) {
    tokio::spawn(async move {
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(shutdown.cancelled_owned())
            .await;
        if let Err(e) = served {
            tracing::warn!(error = %e, "HTTP server failed");
        }
    });
}
