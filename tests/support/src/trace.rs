//! Test logging and hang protection.

use std::future::Future;
use std::panic::Location;
use std::sync::Once;
use std::time::Duration;

use tracing_subscriber::EnvFilter;

/// Installs a `tracing` subscriber for tests, once per process.
///
/// Output goes through the test harness's capture (shown only for failing tests).
/// The filter comes from `RUST_LOG`, defaulting to `info`.
pub fn subscribe() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
        // Another subscriber may already be installed by the test binary; keep it.
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_test_writer()
            .try_init();
    });
}

/// Awaits `future`, panicking with the caller's location if it takes longer than `limit`.
///
/// Use it around every await on a peer (a server, a watcher, a socket) so a bug
/// fails the test with a message instead of hanging it.
#[track_caller]
pub fn timeout_after<F: Future>(limit: Duration, future: F) -> impl Future<Output = F::Output> {
    // Captured here, outside the async block, where `#[track_caller]` applies.
    let caller = Location::caller();
    async move {
        match tokio::time::timeout(limit, future).await {
            Ok(output) => output,
            Err(_) => panic!(
                "timed out after {limit:?}: the awaited peer never answered (awaited at {caller})"
            ),
        }
    }
}
