//! The kube-dns pod as a whole, for the workspace's end-to-end tests.
//!
//! This crate owns:
//! - [`manifest`]: the files in `manifests/` read into Kubernetes objects, with the placeholders
//!   substituted as an operator would;
//! - [`container`]: which binary a container runs, and its command line put through that
//!   binary's own argument parser;
//! - [`binaries`]: the built `kubedns`, `dnsmasq-rs` and `healthz` executables (built first when
//!   missing or older than their sources);
//! - [`pod`]: the three binaries started as processes on loopback ports, wired as a manifest
//!   wires them, and killed on drop;
//! - [`client`]: DNS and HTTP requests to them;
//! - [`procfs`]: their memory, threads and open files, read from `/proc`.
//!
//! It does not own the binaries' behaviour: each crate tests its own; these tests check that
//! they fit together, and fit the manifests.

pub mod binaries;
pub mod client;
pub mod container;
pub mod manifest;
pub mod pod;
pub mod procfs;

use std::path::PathBuf;
use std::time::Duration;

/// The repository root.
pub fn repo_root() -> PathBuf {
    let here = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    here.canonicalize().unwrap_or(here)
}

/// Bound on anything a test waits for. Reaching it means the test is stuck, not slow: every
/// wait polls for a state, and none of them decides pass or fail by how long it took.
pub const HANG_GUARD: Duration = Duration::from_secs(60);

/// Polls `check` every 20 ms until it returns `Some`, and returns that; panics naming `what`
/// after [`HANG_GUARD`].
pub async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + HANG_GUARD;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "gave up after {HANG_GUARD:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
