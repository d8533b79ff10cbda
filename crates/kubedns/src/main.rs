//! The kubedns binary: parse flags, set up logging, run until SIGTERM.

use kubedns::Args;

fn main() {
    let (args, legacy) = kdns_daemon::parse_args_or_exit::<Args>(&[]);
    kdns_daemon::init_tracing(args.log_format, args.verbosity);
    if !legacy.ignored.is_empty() {
        tracing::info!(flags = ?legacy.ignored, "ignoring legacy klog flags");
    }
    // DNS is answered on threads of its own (`kdns_net::serve_on_thread`); this runtime runs
    // the API watches, the record writer and HTTP, which one thread keeps up with. Fewer
    // threads also means fewer malloc arenas holding on to the initial list's garbage.
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!(error = %e, "cannot start the runtime");
            std::process::exit(1);
        }
    };
    let result = runtime.block_on(async {
        let shutdown = kdns_daemon::shutdown_signal();
        kubedns::run(args, shutdown).await
    });
    if let Err(e) = result {
        tracing::error!(error = format!("{e:#}"), "kubedns failed");
        let code = if e.downcast_ref::<source::file::Error>().is_some() {
            kdns_daemon::EXIT_USAGE
        } else {
            1
        };
        std::process::exit(code);
    }
    tracing::info!("stopped");
}

use kubedns::source;
