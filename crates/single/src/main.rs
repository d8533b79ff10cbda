//! The kube-dns-single binary: parse the three groups of flags, set up logging, run kubedns,
//! dnsmasq-rs and healthz until SIGTERM.

use anyhow::Context as _;
use kube_dns_single::{Command, Plan};

fn main() {
    let plan = match kube_dns_single::parse(std::env::args()) {
        Ok(Command::Run(plan)) => plan,
        Ok(Command::Print(text)) => {
            print!("{text}");
            std::process::exit(0);
        }
        Err(e) => {
            eprintln!("kube-dns-single: {e}");
            std::process::exit(kdns_daemon::EXIT_USAGE);
        }
    };
    kdns_daemon::init_tracing(plan.log_format, plan.verbosity);
    if !plan.ignored.is_empty() {
        tracing::info!(flags = ?plan.ignored, "ignoring legacy flags");
    }
    if let Err(e) = serve(*plan) {
        tracing::error!(error = format!("{e:#}"), "kube-dns-single failed");
        // A cluster-state file that cannot be read is a usage error, as for kubedns.
        let usage = e
            .chain()
            .any(|cause| cause.is::<kubedns::source::file::Error>());
        std::process::exit(if usage { kdns_daemon::EXIT_USAGE } else { 1 });
    }
    tracing::info!("stopped");
}

fn serve(plan: Plan) -> anyhow::Result<()> {
    // Two threads, one per core of a small node, split by what must be fast:
    // - this thread, a current-thread runtime, serves port 53: cache hits, and cache misses for
    //   cluster names, which dnsmasq-rs answers by calling kubedns's handler inline (a lock-free
    //   snapshot read) on the same thread. A hit or a record answer never crosses threads; a
    //   multi-threaded runtime spent more on waking threads than it gained (dnsmasq-rs under
    //   dnsperf on 2 cores: 83k answers/s multi-threaded, 109k single-threaded).
    // - the control runtime, one worker, runs what may take long: kubedns's API watches and
    //   record writer (decoding a full list, building a snapshot), its HTTP endpoints and its
    //   own DNS port (probes), and healthz. A relist then never stalls port 53.
    let control = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("control")
        .enable_all()
        .build()
        .context("cannot start the control runtime")?;
    let dns = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the DNS runtime")?;
    let result = dns.block_on(async {
        // SIGTERM - Kubernetes sends this to start a graceful shutdown.
        let shutdown = kdns_daemon::shutdown_signal();
        kube_dns_single::run(plan, shutdown, control.handle()).await
    });
    control.shutdown_timeout(std::time::Duration::from_secs(5));
    result
}
