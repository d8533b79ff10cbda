//! Noticing when the mounted ConfigMap changes.
//!
//! The kubelet refreshes the mount some time after the ConfigMap changes, so polling every few
//! seconds is as prompt as anything else and needs nothing from the kernel or the API.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::config::DnsConfig;
use crate::dir::read_dir;
use crate::error::ConfigError;

/// Reads a ConfigMap directory on demand and keeps the last valid configuration.
///
/// The blocking, time-free core of [`watch_dir`]: each [`poll`](DirPoller::poll) reads the
/// directory once. Changes are detected by content version; an invalid version, or a read error,
/// is logged and counted once, not on every poll.
#[derive(Debug)]
pub struct DirPoller {
    dir: PathBuf,
    config: DnsConfig,
    /// The content version (or read error) last looked at, valid or not; `None` before the first
    /// read.
    seen: Option<String>,
    invalid_updates: Arc<AtomicU64>,
}

impl DirPoller {
    /// Reads `dir` once. A configuration that is invalid (or cannot be read) at start is logged
    /// at warn and counted, and the defaults are used.
    pub fn new(dir: PathBuf) -> DirPoller {
        let mut poller = DirPoller {
            dir,
            config: DnsConfig::default(),
            seen: None,
            invalid_updates: Arc::new(AtomicU64::new(0)),
        };
        poller.poll();
        poller
    }

    /// The configuration in force.
    pub fn config(&self) -> &DnsConfig {
        &self.config
    }

    /// How many invalid configurations (distinct versions, or read errors) have been seen,
    /// including one at start. Shared: it keeps counting after being handed out.
    pub fn invalid_updates(&self) -> Arc<AtomicU64> {
        Arc::clone(&self.invalid_updates)
    }

    /// Reads the directory again. Returns the new configuration when it is valid and differs
    /// from the one in force. A missing or empty directory is the default configuration (that is
    /// how a deleted ConfigMap looks); an invalid one leaves the configuration in force as it is.
    pub fn poll(&mut self) -> Option<&DnsConfig> {
        let starting = self.seen.is_none();
        let (seen, result) = match read_dir(&self.dir) {
            Ok(files) => {
                if self.seen.as_deref() == Some(files.version()) {
                    return None;
                }
                let result = DnsConfig::from_files(files.files());
                (files.version().to_owned(), result)
            }
            Err(err) => {
                // Keyed by message so that a lasting error is reported once.
                let seen = format!("error: {err}");
                if self.seen.as_deref() == Some(seen.as_str()) {
                    return None;
                }
                (seen, Err(err))
            }
        };
        self.seen = Some(seen);
        let dir = self.dir.display();
        match result {
            Ok(config) if starting => {
                info!(
                    dir = %dir,
                    version = self.seen.as_deref().unwrap_or_default(),
                    upstream_nameservers = ?config.upstream_nameservers,
                    stub_domains = %join(&config.stub_domains),
                    federations = ?config.federations,
                    "config loaded"
                );
                self.config = config;
                None
            }
            Ok(config) if config == self.config => {
                debug!(dir = %dir, "ConfigMap content changed, config did not");
                None
            }
            Ok(config) => {
                info!(
                    dir = %dir,
                    version = self.seen.as_deref().unwrap_or_default(),
                    upstream_nameservers = ?config.upstream_nameservers,
                    stub_domains = %join(&config.stub_domains),
                    federations = ?config.federations,
                    "config updated"
                );
                self.config = config;
                Some(&self.config)
            }
            Err(err) => {
                self.count_invalid(starting, &err);
                None
            }
        }
    }

    fn count_invalid(&self, starting: bool, err: &ConfigError) {
        self.invalid_updates.fetch_add(1, Ordering::Relaxed);
        let dir = self.dir.display();
        if starting {
            warn!(dir = %dir, error = %err, "invalid config, using defaults");
        } else {
            warn!(dir = %dir, error = %err, "invalid config update, keeping the previous config");
        }
    }
}

fn join<T: std::fmt::Display>(items: &[T]) -> String {
    items
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(" ")
}

/// A running [`watch_dir`].
#[derive(Debug)]
pub struct ConfigWatch {
    /// The configuration read at start (the defaults if it was invalid).
    pub initial: DnsConfig,
    /// The configuration in force; changes when a valid new one is read.
    pub updates: watch::Receiver<DnsConfig>,
    /// Invalid configurations seen so far, for a metric; see [`DirPoller::invalid_updates`].
    pub invalid_updates: Arc<AtomicU64>,
    /// The polling task; ends when `shutdown` is cancelled.
    pub task: JoinHandle<()>,
}

/// Reads the ConfigMap directory `dir` now, then again every `period` (zero means one second)
/// until `shutdown` is cancelled, publishing each valid change. See [`DirPoller`] for what
/// counts as a change and how invalid ones are handled.
///
/// Uses only `tokio::time`, so it runs under paused time. The reads are small, from a local
/// volume, and done on the runtime's thread.
///
/// # Panics
///
/// Outside a Tokio runtime.
pub fn watch_dir(dir: PathBuf, period: Duration, shutdown: CancellationToken) -> ConfigWatch {
    let period = if period.is_zero() {
        Duration::from_secs(1)
    } else {
        period
    };
    let mut poller = DirPoller::new(dir);
    let initial = poller.config().clone();
    let invalid_updates = poller.invalid_updates();
    let (tx, updates) = watch::channel(initial.clone());
    let task = tokio::spawn(async move {
        loop {
            tokio::select! {
                () = shutdown.cancelled() => break,
                () = tokio::time::sleep(period) => {}
            }
            if let Some(config) = poller.poll() {
                tx.send_replace(config.clone());
            }
        }
    });
    ConfigWatch {
        initial,
        updates,
        invalid_updates,
        task,
    }
}
