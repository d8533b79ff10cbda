//! A DNS server for tests: any `kdns_net::Handler` on an ephemeral port.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use kdns_net::Handler;
use tokio_util::sync::CancellationToken;

/// Serves `handler` over UDP and TCP on `listen` (port 0 picks one; UDP and TCP share it) in a
/// task of the current runtime, until the returned token is cancelled. In-flight requests are
/// not waited for at shutdown: test peers stop at once.
pub async fn serve_dns<H: Handler>(
    listen: SocketAddr,
    handler: Arc<H>,
) -> std::io::Result<(SocketAddr, CancellationToken)> {
    let (udp, tcp) = kdns_net::bind(listen).await?;
    let addr = udp.local_addr()?;
    let shutdown = CancellationToken::new();
    let config = kdns_net::ServerConfig {
        shutdown_grace: Duration::ZERO,
        ..kdns_net::ServerConfig::default()
    };
    kdns_net::serve_in_task(Some(udp), Some(tcp), handler, config, shutdown.clone());
    Ok((addr, shutdown))
}
