//! `fake-upstream`: a tiny DNS server standing in for the resolvers outside the cluster, so that
//! `make run` can show an external name answered without leaving the machine.
//!
//! Names at or below `--zone` get A `192.0.2.x` and AAAA `2001:db8::x` (documentation addresses,
//! `x` derived from the name); every other name is NXDOMAIN. See [`FakeUpstream`].
//!
//! ```text
//! fake-upstream --listen 127.0.0.1:1054 --zone example.com.
//! dig @127.0.0.1 -p 1054 www.example.com
//! ```

use std::net::SocketAddr;

use clap::Parser;
use test_support::FakeUpstream;

/// Answers A and AAAA for every name in one zone with documentation addresses, NXDOMAIN for the
/// rest.
#[derive(Debug, Parser)]
#[command(name = "fake-upstream")]
struct Args {
    /// Address to serve DNS on, UDP and TCP; port 0 picks a free one.
    #[arg(long, default_value = "127.0.0.1:1054")]
    listen: SocketAddr,

    /// The zone answered.
    #[arg(long, default_value = "example.com.")]
    zone: String,

    /// TTL of the answers, in seconds.
    #[arg(long, default_value_t = 60)]
    ttl: u32,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::io::Result<()> {
    let args = Args::parse();
    let upstream = FakeUpstream::start(args.listen, &args.zone, args.ttl).await?;
    println!(
        "listening on {} (UDP and TCP), answering {}",
        upstream.addr(),
        upstream.zone()
    );
    wait_for_signal().await;
    drop(upstream);
    Ok(())
}

/// SIGINT (Ctrl-C) or SIGTERM (what `make run` sends when it stops).
async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(mut term) = signal(SignalKind::terminate()) else {
        let _ = tokio::signal::ctrl_c().await;
        return;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
