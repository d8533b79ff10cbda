//! `fake-apiserver`: a synthetic cluster ([`test_support::synthetic`]) served through
//! [`FakeApiServer`], for benchmarks and manual runs.
//!
//! The cluster is generated from a fixed seed, so the same flags always give the same Services,
//! EndpointSlices, addresses and query files.
//!
//! While serving, SIGUSR1 expires the watch history (as etcd compaction does): every open watch
//! gets `410 Gone` and its client relists; once Services and EndpointSlices are watched again
//! (the relist is done), `relisted` is printed.
//!
//! ```text
//! fake-apiserver --services 10000 --endpoints 100000           # serve; prints "listening on URL"
//! fake-apiserver --services 1000 --write-state state.json      # the cluster as a List, then exit
//! fake-apiserver --write-queries q.txt --query-kind srv        # a dnsperf query file, then exit
//! ```

use std::io::Write;
use std::path::{Path, PathBuf};

use clap::Parser;
use serde_json::json;
use test_support::FakeApiServer;
use test_support::synthetic::{self, QueryKind, Spec};
use tokio::signal::unix::{SignalKind, signal};

/// Serves a synthetic cluster through the fake Kubernetes API, or writes it (or DNS queries for
/// it) to a file.
#[derive(Debug, Parser)]
#[command(name = "fake-apiserver")]
struct Args {
    /// Services in the cluster.
    #[arg(long, default_value_t = 10_000)]
    services: usize,

    /// Endpoints, spread over the Services.
    #[arg(long, default_value_t = 100_000)]
    endpoints: usize,

    /// Namespaces the Services are spread over.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..))]
    namespaces: u32,

    /// Share of Services that are headless, in percent.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u8).range(0..=100))]
    headless_percent: u8,

    /// More headless Services (`wide-<i>`), with 100 ready endpoints each.
    #[arg(long, default_value_t = 0)]
    wide_headless: usize,

    /// Seed of the generator.
    #[arg(long, default_value_t = 1)]
    seed: u64,

    /// The cluster zone, for query files.
    #[arg(long, default_value = "cluster.local")]
    domain: String,

    /// Write the cluster as a JSON `List` (as `kubectl get svc,endpointslices -A -o json`) and exit.
    #[arg(long, value_name = "FILE")]
    write_state: Option<PathBuf>,

    /// Write a dnsperf query file (`name TYPE` per line) and exit.
    #[arg(long, value_name = "FILE")]
    write_queries: Option<PathBuf>,

    /// What the query file asks.
    #[arg(long, value_enum, default_value_t = QueryKind::ClusteripA)]
    query_kind: QueryKind,

    /// Ask only about Services with exactly this many endpoints.
    #[arg(long, value_name = "N")]
    query_endpoints: Option<usize>,

    /// Lines in the query file.
    #[arg(long, default_value_t = 100_000)]
    queries: usize,
}

fn fail(message: &str, code: i32) -> ! {
    eprintln!("fake-apiserver: {message}");
    std::process::exit(code);
}

fn write_file(path: &Path, contents: &[u8]) {
    if let Err(error) = std::fs::write(path, contents) {
        fail(&format!("cannot write {}: {error}", path.display()), 1);
    }
}

/// Waits until Services and EndpointSlices are watched again, which a client does after its
/// relist, and prints `relisted` (or `no relist` after a minute).
async fn relisted(server: &FakeApiServer) {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
    let line = loop {
        if server.open_watches("services") > 0 && server.open_watches("endpointslices") > 0 {
            break "relisted";
        }
        if tokio::time::Instant::now() > deadline {
            break "no relist";
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    };
    println!("{line}");
    let _ = std::io::stdout().flush();
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let spec = Spec {
        services: args.services,
        endpoints: args.endpoints,
        namespaces: args.namespaces,
        headless_percent: args.headless_percent,
        wide_headless: args.wide_headless,
        seed: args.seed,
    };
    if let Err(error) = spec.check() {
        fail(&error, 2);
    }
    let services = synthetic::generate(&spec);

    if args.write_state.is_some() || args.write_queries.is_some() {
        if let Some(path) = &args.write_state {
            let items = synthetic::objects(&services);
            let list = json!({ "apiVersion": "v1", "kind": "List", "items": items });
            let text = serde_json::to_vec(&list).expect("a JSON value always serializes");
            write_file(path, &text);
        }
        if let Some(path) = &args.write_queries {
            let text = synthetic::queries(
                &services,
                args.query_kind,
                args.queries,
                args.seed,
                &args.domain,
                args.query_endpoints,
            )
            .unwrap_or_else(|error| fail(&error, 2));
            write_file(path, text.as_bytes());
        }
        return;
    }

    let server = FakeApiServer::start().await;
    let objects = synthetic::objects(&services);
    let count = objects.len();
    for object in objects {
        server.apply(object);
    }
    drop(services);
    eprintln!(
        "fake-apiserver: {} Services, {} endpoints, {count} objects",
        args.services + args.wide_headless,
        args.endpoints + args.wide_headless * synthetic::WIDE_ENDPOINTS,
    );
    println!("listening on {}", server.url());
    // Whoever reads the line may be waiting for it before starting anything else.
    let _ = std::io::stdout().flush();

    let (Ok(mut term), Ok(mut usr1)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::user_defined1()),
    ) else {
        fail("cannot install signal handlers", 1);
    };
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            _ = term.recv() => break,
            _ = usr1.recv() => {
                server.expire_history();
                eprintln!("fake-apiserver: watch history expired; watchers get 410 Gone");
                relisted(&server).await;
            }
        }
    }
    // Freeing a large cluster object by object takes seconds; the OS does it at once.
    std::process::exit(0);
}
