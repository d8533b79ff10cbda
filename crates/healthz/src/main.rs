//! The healthz binary: parse flags, set up logging, probe and serve until SIGTERM.

use anyhow::Context as _;
use healthz::{Args, Config};

fn main() {
    let (args, legacy) = kdns_daemon::parse_args_or_exit::<Args>(&[]);
    kdns_daemon::init_tracing(args.log_format, args.verbosity);
    // Validated before anything binds, so a bad manifest fails fast and says why.
    let config = match Config::from_args(args) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("healthz: {e}");
            std::process::exit(kdns_daemon::EXIT_USAGE);
        }
    };
    if !legacy.ignored.is_empty() {
        tracing::info!(flags = ?legacy.ignored, "ignoring legacy klog flags");
    }
    if let Err(e) = serve(config) {
        tracing::error!(error = format!("{e:#}"), "healthz failed");
        std::process::exit(1);
    }
    tracing::info!("stopped");
}

fn serve(config: Config) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the runtime")?;
    runtime.block_on(async {
        let shutdown = kdns_daemon::shutdown_signal();
        healthz::run(config, shutdown).await
    })?;
    Ok(())
}
