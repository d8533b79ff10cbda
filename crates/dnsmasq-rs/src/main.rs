//! The dnsmasq-rs binary: parse flags (nanny form or dnsmasq form), set up logging, serve until
//! SIGTERM.

use anyhow::Context as _;

fn main() {
    let (args, legacy) = match dnsmasq_rs::parse_args(std::env::args()) {
        Ok(parsed) => parsed,
        Err(dnsmasq_rs::config::Error::Usage(e)) if !e.use_stderr() => {
            // --help and --version.
            let _ = e.print();
            std::process::exit(0);
        }
        Err(dnsmasq_rs::config::Error::Usage(e)) => {
            let _ = e.print();
            std::process::exit(kdns_daemon::EXIT_USAGE);
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::exit(kdns_daemon::EXIT_USAGE);
        }
    };
    kdns_daemon::init_tracing(args.log_format, args.verbosity);
    if !legacy.ignored.is_empty() {
        tracing::info!(flags = ?legacy.ignored, "ignoring legacy klog flags");
    }
    if !args.dnsmasq_exec.is_empty() {
        tracing::info!(dnsmasq_exec = %args.dnsmasq_exec, "-dnsmasqExec ignored: there is no separate dnsmasq process");
    }
    let config = match args.into_config() {
        Ok(config) => config,
        Err(e) => {
            tracing::error!(error = %e, "invalid configuration");
            std::process::exit(kdns_daemon::EXIT_USAGE);
        }
    };
    if let Err(e) = serve(config) {
        tracing::error!(error = format!("{e:#}"), "dnsmasq-rs failed");
        std::process::exit(1);
    }
    tracing::info!("stopped");
}

fn serve(config: dnsmasq_rs::Config) -> anyhow::Result<()> {
    // One runtime thread, as dnsmasq: cache hits are a few microseconds of work between a
    // receive and a send, and a multi-threaded runtime spent more on waking threads than it
    // gained (under dnsperf on 2 cores: 83k answers/s multi-threaded, 109k single-threaded).
    // UDP is received on a thread of its own (`kdns_net::ServerConfig::udp_thread`).
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the runtime")?;
    runtime.block_on(async {
        // SIGTERM - Kubernetes sends this to start a graceful shutdown.
        let shutdown = kdns_daemon::shutdown_signal();
        dnsmasq_rs::run(config, shutdown).await
    })
}
