//! The kubedns binary: parse flags, set up logging, run until SIGTERM.

use clap::Parser;
use kubedns::Args;

fn main() {
    let (argv, legacy) = kdns_daemon::normalize_args(std::env::args(), &[]);
    let args = match Args::try_parse_from(argv) {
        Ok(args) => args,
        Err(e) if e.use_stderr() => {
            let _ = e.print();
            std::process::exit(kdns_daemon::EXIT_USAGE);
        }
        Err(e) => {
            // --help and --version.
            let _ = e.print();
            std::process::exit(0);
        }
    };
    kdns_daemon::init_tracing(args.log_format, args.verbosity);
    if !legacy.ignored.is_empty() {
        tracing::info!(flags = ?legacy.ignored, "ignoring legacy klog flags");
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
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
