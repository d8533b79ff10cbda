//! `fake-apiserver`: a synthetic cluster served through [`FakeApiServer`], for benchmarks and
//! manual runs.
//!
//! The cluster is generated from a fixed seed, so the same flags always give the same Services,
//! EndpointSlices, addresses and query files. Most Services are ClusterIP with one or two named
//! ports; `--headless-percent` of them are headless with StatefulSet-style hostnames. Endpoints
//! are spread over the Services at random (each Service gets at least one while there are enough)
//! and cut into EndpointSlices of at most 100, as the EndpointSlice controller does.
//!
//! ```text
//! fake-apiserver --services 10000 --endpoints 100000           # serve; prints "listening on URL"
//! fake-apiserver --services 1000 --write-state state.json      # the cluster as a List, then exit
//! fake-apiserver --write-queries q.txt --query-kind srv        # a dnsperf query file, then exit
//! ```

use std::io::Write;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use clap::{Parser, ValueEnum};
use rand::rngs::StdRng;
use rand::seq::{IndexedRandom, SliceRandom, index};
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};
use test_support::FakeApiServer;
use test_support::fixtures::{endpoint_slice, service};

/// The EndpointSlice controller's default `--max-endpoints-per-slice`.
const MAX_ENDPOINTS_PER_SLICE: usize = 100;

/// How many ClusterIPs (from 10.96.0.16) and pod IPs (from 10.128.0.1) there are to draw from.
const CLUSTER_IP_RANGE: usize = (1 << 20) - 32;
const POD_IP_RANGE: usize = (1 << 22) - 2;

/// Named ports a Service picks one or two of.
const PORTS: &[(&str, u16)] = &[
    ("http", 80),
    ("grpc", 9090),
    ("metrics", 9100),
    ("https", 443),
];

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

    /// Lines in the query file.
    #[arg(long, default_value_t = 100_000)]
    queries: usize,
}

/// The questions a query file holds, each about a Service picked at random.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum QueryKind {
    /// `<svc>.<ns>.svc.<zone> A` of ClusterIP Services: one address.
    ClusteripA,
    /// `<svc>.<ns>.svc.<zone> A` of headless Services: every ready endpoint.
    HeadlessA,
    /// `_<port>._tcp.<svc>.<ns>.svc.<zone> SRV` of any Service.
    Srv,
    /// PTR of a ClusterIP, or of a ready endpoint of a headless Service.
    Ptr,
    /// A names in existing namespaces that match no Service.
    Nxdomain,
}

/// One endpoint of a [`Svc`].
#[derive(Debug)]
struct Endpoint {
    ip: Ipv4Addr,
    hostname: Option<String>,
    ready: bool,
}

/// One generated Service with its endpoints.
#[derive(Debug)]
struct Svc {
    namespace: String,
    name: String,
    /// `None` for a headless Service.
    cluster_ip: Option<Ipv4Addr>,
    ports: Vec<(&'static str, u16)>,
    endpoints: Vec<Endpoint>,
}

/// The address `offset` places after `base`.
fn nth_ip(base: [u8; 4], offset: usize) -> Ipv4Addr {
    let offset = u32::try_from(offset).expect("offsets are below 2^22");
    Ipv4Addr::from(u32::from(Ipv4Addr::from(base)) + offset)
}

/// The whole cluster, deterministic for given flags.
fn generate(args: &Args) -> Vec<Svc> {
    let mut rng = StdRng::seed_from_u64(args.seed);
    let headless_count = args.services * usize::from(args.headless_percent) / 100;
    let mut headless: Vec<bool> = (0..args.services).map(|i| i < headless_count).collect();
    headless.shuffle(&mut rng);

    // Distinct addresses: ClusterIPs in 10.96.0.0/12 (from .0.16), pod IPs in 10.128.0.0/10.
    let mut cluster_ips = index::sample(&mut rng, CLUSTER_IP_RANGE, args.services).into_iter();
    let mut pod_ips = index::sample(&mut rng, POD_IP_RANGE, args.endpoints).into_iter();

    // Every Service gets one endpoint while they last, the rest go anywhere.
    let mut counts = vec![0usize; args.services];
    for endpoint in 0..args.endpoints {
        let at = if endpoint < args.services {
            endpoint
        } else {
            rng.random_range(0..args.services)
        };
        counts[at] += 1;
    }

    let mut services = Vec::with_capacity(args.services);
    for (i, (&is_headless, &count)) in headless.iter().zip(&counts).enumerate() {
        let namespace = format!("ns-{}", rng.random_range(0..args.namespaces));
        let name = format!("svc-{i}");
        let port_count = if rng.random_bool(0.4) { 2 } else { 1 };
        let ports = PORTS
            .choose_multiple(&mut rng, port_count)
            .copied()
            .collect();
        let endpoints = (0..count)
            .map(|k| Endpoint {
                ip: nth_ip(
                    [10, 128, 0, 1],
                    pod_ips.next().expect("one IP per endpoint"),
                ),
                hostname: is_headless.then(|| format!("{name}-{k}")),
                // A few pods are starting up; the first one of each Service is always ready.
                ready: k == 0 || !rng.random_bool(0.02),
            })
            .collect();
        let cluster_ip = (!is_headless).then(|| {
            nth_ip(
                [10, 96, 0, 16],
                cluster_ips.next().expect("one per Service"),
            )
        });
        services.push(Svc {
            namespace,
            name,
            cluster_ip,
            ports,
            endpoints,
        });
    }
    services
}

/// The Services and EndpointSlices, as `kubectl get -o json` prints them.
fn objects(services: &[Svc]) -> Vec<Value> {
    let mut out = Vec::new();
    for svc in services {
        let mut builder = service(&svc.namespace, &svc.name);
        builder = match svc.cluster_ip {
            Some(ip) => builder.cluster_ip(&ip.to_string()),
            None => builder.headless(),
        };
        for (name, port) in &svc.ports {
            builder = builder.port(name, *port, "TCP");
        }
        out.push(builder.build());

        for (n, chunk) in svc.endpoints.chunks(MAX_ENDPOINTS_PER_SLICE).enumerate() {
            let slice_name = format!("{}-{n:05x}", svc.name);
            let mut slice = endpoint_slice(&svc.namespace, &slice_name, &svc.name);
            for (name, port) in &svc.ports {
                slice = slice.port(name, *port, "TCP");
            }
            for endpoint in chunk {
                let ip = endpoint.ip.to_string();
                slice = match &endpoint.hostname {
                    Some(hostname) => slice.endpoint_with_hostname(&ip, hostname, endpoint.ready),
                    None => slice.endpoint(&ip, endpoint.ready),
                };
            }
            out.push(slice.build());
        }
    }
    out
}

/// `count` dnsperf lines of `kind`, about Services picked at random.
fn queries(services: &[Svc], args: &Args) -> String {
    // A stream of its own, so that query files do not depend on how the cluster was drawn.
    let mut rng = StdRng::seed_from_u64(args.seed ^ 0x9e37_79b9_7f4a_7c15);
    let zone = args.domain.trim_end_matches('.');
    let candidates: Vec<&Svc> = services
        .iter()
        .filter(|svc| match args.query_kind {
            QueryKind::ClusteripA => svc.cluster_ip.is_some(),
            QueryKind::HeadlessA => svc.cluster_ip.is_none() && !svc.endpoints.is_empty(),
            QueryKind::Ptr => svc.cluster_ip.is_some() || !svc.endpoints.is_empty(),
            QueryKind::Srv | QueryKind::Nxdomain => true,
        })
        .collect();
    assert!(
        !candidates.is_empty(),
        "no Service fits --query-kind {:?}",
        args.query_kind
    );
    let mut out = String::new();
    for n in 0..args.queries {
        let svc = candidates.choose(&mut rng).expect("not empty");
        let fqdn = format!("{}.{}.svc.{zone}", svc.name, svc.namespace);
        let line = match args.query_kind {
            QueryKind::ClusteripA | QueryKind::HeadlessA => format!("{fqdn} A"),
            QueryKind::Srv => {
                let (port, _) = svc
                    .ports
                    .choose(&mut rng)
                    .expect("every Service has a port");
                format!("_{port}._tcp.{fqdn} SRV")
            }
            QueryKind::Ptr => {
                let ip = svc.cluster_ip.unwrap_or_else(|| {
                    let ready: Vec<&Endpoint> = svc.endpoints.iter().filter(|e| e.ready).collect();
                    ready.choose(&mut rng).expect("the first is ready").ip
                });
                let [a, b, c, d] = ip.octets();
                format!("{d}.{c}.{b}.{a}.in-addr.arpa PTR")
            }
            QueryKind::Nxdomain => format!("nosuch-{n}.{}.svc.{zone} A", svc.namespace),
        };
        out.push_str(&line);
        out.push('\n');
    }
    out
}

fn write_file(path: &Path, contents: &[u8]) {
    if let Err(error) = std::fs::write(path, contents) {
        eprintln!("fake-apiserver: cannot write {}: {error}", path.display());
        std::process::exit(1);
    }
}

/// Returns on ctrl-c or SIGTERM.
async fn stopped() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("install a SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    if args.services > CLUSTER_IP_RANGE || args.endpoints > POD_IP_RANGE {
        eprintln!(
            "fake-apiserver: at most {CLUSTER_IP_RANGE} Services and {POD_IP_RANGE} endpoints"
        );
        std::process::exit(2);
    }
    if args.services == 0 && args.endpoints > 0 {
        eprintln!("fake-apiserver: endpoints need at least one Service");
        std::process::exit(2);
    }
    let services = generate(&args);

    if args.write_state.is_some() || args.write_queries.is_some() {
        if let Some(path) = &args.write_state {
            let list = json!({ "apiVersion": "v1", "kind": "List", "items": objects(&services) });
            let text = serde_json::to_vec(&list).expect("a JSON value always serializes");
            write_file(path, &text);
        }
        if let Some(path) = &args.write_queries {
            write_file(path, queries(&services, &args).as_bytes());
        }
        return;
    }

    let server = FakeApiServer::start().await;
    let objects = objects(&services);
    let count = objects.len();
    for object in objects {
        server.apply(object);
    }
    eprintln!(
        "fake-apiserver: {} Services, {} endpoints, {count} objects",
        args.services, args.endpoints
    );
    println!("listening on {}", server.url());
    // Whoever reads the line may be waiting for it before starting anything else.
    let _ = std::io::stdout().flush();
    stopped().await;
    // Freeing a large cluster object by object takes seconds; the OS does it at once.
    std::process::exit(0);
}
