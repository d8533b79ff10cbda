//! Synthetic clusters for benchmarks: Services with EndpointSlices, drawn from a fixed seed.
//!
//! The same [`Spec`] always gives the same Services, EndpointSlices, addresses and query files.
//! Most Services are ClusterIP with one or two named ports; `headless_percent` of them are
//! headless with StatefulSet-style hostnames. Endpoints are spread over the Services at random
//! (each Service gets at least one while there are enough) and cut into EndpointSlices of at most
//! 100, as the EndpointSlice controller does. `wide_headless` more headless Services
//! (`wide-<i>`) get [`WIDE_ENDPOINTS`] ready endpoints each, for answers of a known large size.

use std::fmt::Write as _;
use std::net::Ipv4Addr;

use clap::ValueEnum;
use rand::rngs::StdRng;
use rand::seq::{IndexedRandom, SliceRandom, index};
use rand::{Rng, SeedableRng};
use serde_json::Value;

use crate::fixtures::{endpoint_slice, service};

/// The EndpointSlice controller's default `--max-endpoints-per-slice`.
pub const MAX_ENDPOINTS_PER_SLICE: usize = 100;

/// How many ClusterIPs (from 10.96.0.16) and pod IPs (from 10.128.0.1) there are to draw from.
pub const CLUSTER_IP_RANGE: usize = (1 << 20) - 32;
pub const POD_IP_RANGE: usize = (1 << 22) - 2;

/// Ready endpoints of each `wide-<i>` Service.
pub const WIDE_ENDPOINTS: usize = 100;

/// Named ports a Service picks one or two of.
const PORTS: &[(&str, u16)] = &[
    ("http", 80),
    ("grpc", 9090),
    ("metrics", 9100),
    ("https", 443),
];

/// What to generate.
#[derive(Clone, Debug)]
pub struct Spec {
    /// Services, not counting the wide ones.
    pub services: usize,
    /// Endpoints spread over those Services.
    pub endpoints: usize,
    /// Namespaces `ns-0` .. the Services are spread over; at least 1.
    pub namespaces: u32,
    /// Share of Services that are headless, in percent.
    pub headless_percent: u8,
    /// Headless Services with [`WIDE_ENDPOINTS`] ready endpoints each, besides the others.
    pub wide_headless: usize,
    pub seed: u64,
}

impl Spec {
    /// `services` Services with `endpoints_per_service` endpoints each on average, 100
    /// namespaces, 10% headless, seed 1.
    pub fn new(services: usize, endpoints_per_service: usize) -> Spec {
        Spec {
            services,
            endpoints: services * endpoints_per_service,
            namespaces: 100,
            headless_percent: 10,
            wide_headless: 0,
            seed: 1,
        }
    }

    /// Why this spec cannot be generated, if it cannot.
    pub fn check(&self) -> Result<(), String> {
        let pod_ips = self
            .wide_headless
            .checked_mul(WIDE_ENDPOINTS)
            .and_then(|wide| wide.checked_add(self.endpoints));
        if self.services + self.wide_headless > CLUSTER_IP_RANGE
            || pod_ips.is_none_or(|ips| ips > POD_IP_RANGE)
        {
            return Err(format!(
                "at most {CLUSTER_IP_RANGE} Services and {POD_IP_RANGE} endpoints"
            ));
        }
        if self.services == 0 && self.endpoints > 0 {
            return Err("endpoints need at least one Service".to_owned());
        }
        if self.namespaces == 0 {
            return Err("at least one namespace is needed".to_owned());
        }
        if self.headless_percent > 100 {
            return Err("headless_percent is at most 100".to_owned());
        }
        Ok(())
    }
}

/// One endpoint of a [`Svc`].
#[derive(Clone, Debug)]
pub struct Endpoint {
    pub ip: Ipv4Addr,
    /// Set for the endpoints of headless Services.
    pub hostname: Option<String>,
    pub ready: bool,
}

/// One generated Service with its endpoints.
#[derive(Clone, Debug)]
pub struct Svc {
    pub namespace: String,
    pub name: String,
    /// `None` for a headless Service.
    pub cluster_ip: Option<Ipv4Addr>,
    pub ports: Vec<(&'static str, u16)>,
    pub endpoints: Vec<Endpoint>,
}

impl Svc {
    /// `<name>.<namespace>.svc.<zone>`, without the final dot.
    pub fn fqdn(&self, zone: &str) -> String {
        format!(
            "{}.{}.svc.{}",
            self.name,
            self.namespace,
            zone.trim_end_matches('.')
        )
    }

    /// The Service object, as `kubectl get -o json` prints it.
    pub fn service_object(&self) -> Value {
        let mut builder = service(&self.namespace, &self.name);
        builder = match self.cluster_ip {
            Some(ip) => builder.cluster_ip(&ip.to_string()),
            None => builder.headless(),
        };
        for (name, port) in &self.ports {
            builder = builder.port(name, *port, "TCP");
        }
        builder.build()
    }

    /// The name of EndpointSlice number `n` of this Service.
    pub fn slice_name(&self, n: usize) -> String {
        format!("{}-{n:05x}", self.name)
    }

    /// The EndpointSlices, at most [`MAX_ENDPOINTS_PER_SLICE`] endpoints each, in order.
    pub fn slice_objects(&self) -> Vec<Value> {
        self.endpoints
            .chunks(MAX_ENDPOINTS_PER_SLICE)
            .enumerate()
            .map(|(n, chunk)| self.slice_object(n, chunk))
            .collect()
    }

    /// EndpointSlice number `n` holding `endpoints`.
    pub fn slice_object(&self, n: usize, endpoints: &[Endpoint]) -> Value {
        let mut slice = endpoint_slice(&self.namespace, &self.slice_name(n), &self.name);
        for (name, port) in &self.ports {
            slice = slice.port(name, *port, "TCP");
        }
        for endpoint in endpoints {
            let ip = endpoint.ip.to_string();
            slice = match &endpoint.hostname {
                Some(hostname) => slice.endpoint_with_hostname(&ip, hostname, endpoint.ready),
                None => slice.endpoint(&ip, endpoint.ready),
            };
        }
        slice.build()
    }
}

/// The address `offset` places after `base`.
fn nth_ip(base: [u8; 4], offset: usize) -> Ipv4Addr {
    let offset = u32::try_from(offset).expect("offsets are below 2^22");
    Ipv4Addr::from(u32::from(Ipv4Addr::from(base)) + offset)
}

/// The whole cluster, deterministic for a given spec.
///
/// # Panics
/// If [`Spec::check`] fails.
pub fn generate(spec: &Spec) -> Vec<Svc> {
    if let Err(error) = spec.check() {
        panic!("synthetic cluster: {error}");
    }
    let mut rng = StdRng::seed_from_u64(spec.seed);
    let headless_count = spec.services * usize::from(spec.headless_percent) / 100;
    let mut headless: Vec<bool> = (0..spec.services).map(|i| i < headless_count).collect();
    headless.shuffle(&mut rng);

    // Distinct addresses: ClusterIPs in 10.96.0.0/12 (from .0.16), pod IPs in 10.128.0.0/10.
    let wide_endpoints = spec.wide_headless * WIDE_ENDPOINTS;
    let mut cluster_ips = index::sample(&mut rng, CLUSTER_IP_RANGE, spec.services).into_iter();
    let mut pod_ips =
        index::sample(&mut rng, POD_IP_RANGE, spec.endpoints + wide_endpoints).into_iter();

    // Every Service gets one endpoint while they last, the rest go anywhere.
    let mut counts = vec![0usize; spec.services];
    for endpoint in 0..spec.endpoints {
        let at = if endpoint < spec.services {
            endpoint
        } else {
            rng.random_range(0..spec.services)
        };
        counts[at] += 1;
    }

    let mut services = Vec::with_capacity(spec.services + spec.wide_headless);
    for (i, (&is_headless, &count)) in headless.iter().zip(&counts).enumerate() {
        let namespace = format!("ns-{}", rng.random_range(0..spec.namespaces));
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
    for i in 0..spec.wide_headless {
        let name = format!("wide-{i}");
        let endpoints = (0..WIDE_ENDPOINTS)
            .map(|k| Endpoint {
                ip: nth_ip(
                    [10, 128, 0, 1],
                    pod_ips.next().expect("one IP per endpoint"),
                ),
                hostname: Some(format!("{name}-{k}")),
                ready: true,
            })
            .collect();
        services.push(Svc {
            namespace: format!("ns-{}", u32::try_from(i).unwrap_or(0) % spec.namespaces),
            name,
            cluster_ip: None,
            ports: vec![PORTS[0]],
            endpoints,
        });
    }
    services
}

/// The Services and EndpointSlices, as `kubectl get -o json` prints them.
pub fn objects(services: &[Svc]) -> Vec<Value> {
    let mut out = Vec::new();
    for svc in services {
        out.push(svc.service_object());
        out.extend(svc.slice_objects());
    }
    out
}

/// The questions a query file holds, each about a Service picked at random.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum QueryKind {
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

/// `count` dnsperf lines (`name TYPE`) of `kind`, about Services picked at random; with
/// `endpoints`, only Services with exactly that many endpoints are picked. The draw depends on
/// `seed` only, not on how the cluster was drawn.
pub fn queries(
    services: &[Svc],
    kind: QueryKind,
    count: usize,
    seed: u64,
    zone: &str,
    endpoints: Option<usize>,
) -> Result<String, String> {
    let mut rng = StdRng::seed_from_u64(seed ^ 0x9e37_79b9_7f4a_7c15);
    let zone = zone.trim_end_matches('.');
    let candidates: Vec<&Svc> = services
        .iter()
        .filter(|svc| endpoints.is_none_or(|n| svc.endpoints.len() == n))
        .filter(|svc| match kind {
            QueryKind::ClusteripA => svc.cluster_ip.is_some(),
            QueryKind::HeadlessA => svc.cluster_ip.is_none() && !svc.endpoints.is_empty(),
            QueryKind::Ptr => svc.cluster_ip.is_some() || !svc.endpoints.is_empty(),
            QueryKind::Srv | QueryKind::Nxdomain => true,
        })
        .collect();
    if candidates.is_empty() {
        return Err(format!(
            "no Service fits {kind:?}{}",
            endpoints.map_or(String::new(), |n| format!(" with {n} endpoints"))
        ));
    }
    let mut out = String::new();
    for n in 0..count {
        let svc = candidates.choose(&mut rng).expect("not empty");
        let fqdn = svc.fqdn(zone);
        let _ = match kind {
            QueryKind::ClusteripA | QueryKind::HeadlessA => writeln!(out, "{fqdn} A"),
            QueryKind::Srv => {
                let (port, _) = svc
                    .ports
                    .choose(&mut rng)
                    .expect("every Service has a port");
                writeln!(out, "_{port}._tcp.{fqdn} SRV")
            }
            QueryKind::Ptr => {
                let ip = svc.cluster_ip.unwrap_or_else(|| {
                    let ready: Vec<&Endpoint> = svc.endpoints.iter().filter(|e| e.ready).collect();
                    ready.choose(&mut rng).expect("the first is ready").ip
                });
                let [a, b, c, d] = ip.octets();
                writeln!(out, "{d}.{c}.{b}.{a}.in-addr.arpa PTR")
            }
            QueryKind::Nxdomain => writeln!(out, "nosuch-{n}.{}.svc.{zone} A", svc.namespace),
        };
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_spec_same_cluster_and_counts_add_up() {
        let mut spec = Spec::new(200, 10);
        spec.wide_headless = 2;
        let a = generate(&spec);
        let b = generate(&spec);
        assert_eq!(a.len(), 202);
        let endpoints: usize = a.iter().map(|svc| svc.endpoints.len()).sum();
        assert_eq!(endpoints, 2000 + 2 * WIDE_ENDPOINTS);
        assert_eq!(
            a.iter()
                .map(|s| s.fqdn("cluster.local."))
                .collect::<Vec<_>>(),
            b.iter()
                .map(|s| s.fqdn("cluster.local."))
                .collect::<Vec<_>>()
        );
        let headless = a.iter().filter(|svc| svc.cluster_ip.is_none()).count();
        assert_eq!(headless, 20 + 2);
        // 100 endpoints fit one slice.
        let wide = &a[200];
        assert_eq!(wide.slice_objects().len(), 1);
        assert_eq!(wide.endpoints.iter().filter(|e| e.ready).count(), 100);
    }

    #[test]
    fn queries_pick_services_with_the_asked_endpoint_count() {
        let mut spec = Spec::new(100, 10);
        spec.wide_headless = 3;
        let services = generate(&spec);
        let text = queries(
            &services,
            QueryKind::HeadlessA,
            50,
            1,
            "cluster.local.",
            Some(100),
        )
        .expect("wide Services fit");
        assert_eq!(text.lines().count(), 50);
        assert!(
            text.lines()
                .all(|line| line.starts_with("wide-") && line.ends_with(".svc.cluster.local A")),
            "{text}"
        );
        let error = queries(
            &services,
            QueryKind::ClusteripA,
            5,
            1,
            "cluster.local",
            Some(100),
        )
        .expect_err("no ClusterIP Service has 100 endpoints");
        assert!(error.contains("100 endpoints"), "{error}");
    }

    #[test]
    fn bad_specs_are_refused() {
        let mut spec = Spec::new(0, 0);
        spec.endpoints = 5;
        assert!(spec.check().is_err());
        let mut spec = Spec::new(10, 1);
        spec.namespaces = 0;
        assert!(spec.check().is_err());
        assert!(Spec::new(10, 1).check().is_ok());
    }
}
