//! Where a name's queries go: `--server=/domain/` routes and stub domains (longest match wins),
//! else the default servers.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hickory_proto::rr::Name;
use kdns_config::DnsConfig;
use kdns_net::{Exchanger, Upstream, UpstreamPool};

use crate::config::{ServerSpec, ServerTarget};

/// What a name's route says.
#[derive(Clone, Debug)]
pub enum Route {
    /// Ask these servers.
    Forward(Arc<UpstreamPool>),
    /// Answer locally only: hosts files, else NXDOMAIN (`--server=/domain/`).
    Local,
}

impl Route {
    /// The servers, for comparing routes across configuration changes; empty for local.
    pub fn addrs(&self) -> Vec<SocketAddr> {
        match self {
            Self::Forward(pool) => pool.servers().iter().map(|s| s.addr()).collect(),
            Self::Local => Vec::new(),
        }
    }
}

/// The routing table.
#[derive(Clone, Debug)]
pub struct Routes {
    /// Domains with their own route, longest (most labels) first.
    domains: Vec<(Name, Route)>,
    default: Route,
}

impl Routes {
    /// The longest domain with its own route that `qname` is in, if any.
    fn matching(&self, qname: &Name) -> Option<&(Name, Route)> {
        self.domains
            .iter()
            .find(|(domain, _)| domain.zone_of(qname))
    }

    /// The route for `qname`: the longest matching domain's, else the default.
    pub fn route(&self, qname: &Name) -> &Route {
        self.matching(qname)
            .map_or(&self.default, |(_, route)| route)
    }

    /// The domain whose route `qname` takes (the root for the default route): the bailiwick
    /// of the servers asked about it.
    pub fn domain_of(&self, qname: &Name) -> Name {
        self.matching(qname)
            .map_or_else(Name::root, |(domain, _)| domain.clone())
    }

    /// Every upstream, each once (for `servers.bind`): the domains' servers, most specific
    /// domain first, then the default servers.
    pub fn upstreams(&self) -> Vec<Arc<Upstream>> {
        let mut seen: Vec<Arc<Upstream>> = Vec::new();
        let routes = self
            .domains
            .iter()
            .map(|(_, r)| r)
            .chain(std::iter::once(&self.default));
        for route in routes {
            if let Route::Forward(pool) = route {
                for server in pool.servers() {
                    if !seen.iter().any(|s| s.addr() == server.addr()) {
                        seen.push(server.clone());
                    }
                }
            }
        }
        seen
    }

    /// A description that is equal for two tables exactly when they route every name alike.
    pub fn fingerprint(&self) -> Vec<(Option<Name>, Vec<SocketAddr>)> {
        self.domains
            .iter()
            .map(|(d, r)| (Some(d.clone()), r.addrs()))
            .chain(std::iter::once((None, self.default.addrs())))
            .collect()
    }

    /// The domains whose routing differs between `self` and `new`, for invalidating the cache;
    /// the root when the default servers changed. Names under a changed domain are affected;
    /// others are not.
    pub fn changed_domains(&self, new: &Routes) -> Vec<Name> {
        let mut candidates: Vec<Name> = self
            .domains
            .iter()
            .chain(&new.domains)
            .map(|(d, _)| d.clone())
            .collect();
        candidates.sort();
        candidates.dedup();
        let mut changed: Vec<Name> = candidates
            .into_iter()
            .filter(|d| {
                self.route(d).addrs() != new.route(d).addrs()
                    || !same_kind(self.route(d), new.route(d))
            })
            .collect();
        if self.default.addrs() != new.default.addrs() {
            changed.push(Name::root());
        }
        changed
    }
}

fn same_kind(a: &Route, b: &Route) -> bool {
    matches!(
        (a, b),
        (Route::Local, Route::Local) | (Route::Forward(_), Route::Forward(_))
    )
}

/// Stub-domain servers given by host name, resolved by the caller: `(name, port)` → addresses.
pub type ResolvedHosts = HashMap<(String, u16), Vec<SocketAddr>>;

/// Everything a routing table is built from.
#[derive(Debug)]
pub struct RouteInputs<'a> {
    /// `--server` flags.
    pub servers: &'a [ServerSpec],
    /// The ConfigMap.
    pub dns: &'a DnsConfig,
    /// Default servers from the resolv file (used when the ConfigMap has no upstreams).
    pub resolv: &'a [SocketAddr],
    /// Stub-domain server names resolved to addresses.
    pub resolved: &'a ResolvedHosts,
    /// Servers always asked over TCP.
    pub always_tcp: &'a [SocketAddr],
    /// Per-server timeout.
    pub timeout: Duration,
    /// Ask all servers at once.
    pub parallel: bool,
}

/// Servers answered in this process, by the address routes name them with: a query routed to
/// one of these addresses is handed to its [`Exchanger`] instead of being sent over a socket.
pub type InProcess = HashMap<SocketAddr, Arc<dyn Exchanger>>;

/// Keeps one [`Upstream`] per address across rebuilds, so health and counters survive
/// configuration changes.
#[derive(Default)]
pub struct UpstreamTable {
    servers: HashMap<SocketAddr, Arc<Upstream>>,
    in_process: InProcess,
}

impl std::fmt::Debug for UpstreamTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamTable")
            .field("servers", &self.servers)
            .field("in_process", &self.in_process.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl UpstreamTable {
    /// A table whose servers at the addresses of `in_process` are answered in this process.
    pub fn with_in_process(in_process: InProcess) -> Self {
        Self {
            servers: HashMap::new(),
            in_process,
        }
    }

    fn get(&mut self, addr: SocketAddr, always_tcp: &[SocketAddr]) -> Arc<Upstream> {
        if let Some(exchanger) = self.in_process.get(&addr) {
            // No transport to choose: --always-tcp does not apply.
            return self
                .servers
                .entry(addr)
                .or_insert_with(|| Arc::new(Upstream::in_process(addr, Arc::clone(exchanger))))
                .clone();
        }
        let tcp = always_tcp.contains(&addr);
        let server = self
            .servers
            .entry(addr)
            .or_insert_with(|| Arc::new(Upstream::new(addr, tcp)));
        if server.always_tcp() != tcp {
            *server = Arc::new(Upstream::new(addr, tcp));
        }
        server.clone()
    }

    /// Builds the routing table, as dnsmasq-nanny's argument list would have configured
    /// dnsmasq: `--server` flags first, then each stub domain's servers, then the ConfigMap's
    /// upstream nameservers, which replace the resolv file's.
    pub fn build(&mut self, inputs: &RouteInputs<'_>) -> Routes {
        enum Plan {
            Servers(Vec<SocketAddr>),
            Local,
            Default,
        }
        let mut plans: Vec<(Name, Plan)> = Vec::new();
        let mut add = |domain: &Name, target: Option<SocketAddr>, local: bool, default: bool| {
            let plan = match plans.iter_mut().find(|(d, _)| d == domain) {
                Some((_, plan)) => plan,
                None => {
                    plans.push((domain.clone(), Plan::Servers(Vec::new())));
                    &mut plans.last_mut().expect("just pushed").1
                }
            };
            match (target, plan) {
                (Some(addr), Plan::Servers(addrs)) => {
                    if !addrs.contains(&addr) {
                        addrs.push(addr);
                    }
                }
                (Some(addr), plan) => *plan = Plan::Servers(vec![addr]),
                (None, plan) if local => *plan = Plan::Local,
                (None, plan) if default => *plan = Plan::Default,
                (None, _) => {}
            }
        };
        let mut defaults: Vec<SocketAddr> = Vec::new();
        for spec in inputs.servers {
            match spec.target {
                ServerTarget::Addr(addr) if spec.domains.is_empty() => {
                    if !defaults.contains(&addr) {
                        defaults.push(addr);
                    }
                }
                target => {
                    for domain in &spec.domains {
                        match target {
                            ServerTarget::Addr(addr) => add(domain, Some(addr), false, false),
                            ServerTarget::Local => add(domain, None, true, false),
                            ServerTarget::Default => add(domain, None, false, true),
                        }
                    }
                }
            }
        }
        for stub in &inputs.dns.stub_domains {
            let Ok(domain) = crate::config::parse_domain(&stub.domain) else {
                continue;
            };
            for server in &stub.servers {
                match server {
                    kdns_config::Nameserver::Addr(addr) => add(&domain, Some(*addr), false, false),
                    kdns_config::Nameserver::Host { name, port } => {
                        for addr in inputs
                            .resolved
                            .get(&(name.clone(), *port))
                            .into_iter()
                            .flatten()
                        {
                            add(&domain, Some(*addr), false, false);
                        }
                    }
                }
            }
        }
        let from_config = if inputs.dns.upstream_nameservers.is_empty() {
            inputs.resolv
        } else {
            &inputs.dns.upstream_nameservers
        };
        for addr in from_config {
            if !defaults.contains(addr) {
                defaults.push(*addr);
            }
        }

        let mut pool = |addrs: &[SocketAddr]| {
            let servers = addrs
                .iter()
                .map(|a| self.get(*a, inputs.always_tcp))
                .collect();
            Route::Forward(Arc::new(
                UpstreamPool::new(servers, inputs.timeout).parallel(inputs.parallel),
            ))
        };
        let default = pool(&defaults);
        let mut domains: Vec<(Name, Route)> = plans
            .into_iter()
            .map(|(domain, plan)| {
                let route = match plan {
                    Plan::Servers(addrs) => pool(&addrs),
                    Plan::Local => Route::Local,
                    Plan::Default => default.clone(),
                };
                (domain, route)
            })
            .collect();
        domains.sort_by_key(|(d, _)| std::cmp::Reverse(d.num_labels()));
        // Forget servers no longer used, so the table does not grow with every change.
        let used: Vec<SocketAddr> = domains
            .iter()
            .map(|(_, r)| r)
            .chain(std::iter::once(&default))
            .flat_map(Route::addrs)
            .collect();
        self.servers.retain(|addr, _| used.contains(addr));
        Routes { domains, default }
    }
}

#[cfg(test)]
mod tests {
    use kdns_config::{Nameserver, StubDomain};

    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().expect("socket address")
    }

    fn name(s: &str) -> Name {
        Name::from_ascii(s).expect("name")
    }

    fn specs(values: &[&str]) -> Vec<ServerSpec> {
        values
            .iter()
            .map(|v| v.parse().expect("valid --server"))
            .collect()
    }

    fn build(
        table: &mut UpstreamTable,
        servers: &[ServerSpec],
        dns: &DnsConfig,
        resolv: &[SocketAddr],
    ) -> Routes {
        table.build(&RouteInputs {
            servers,
            dns,
            resolv,
            resolved: &ResolvedHosts::new(),
            always_tcp: &[],
            timeout: Duration::from_secs(1),
            parallel: false,
        })
    }

    #[test]
    fn the_longest_matching_domain_wins_and_the_rest_goes_to_the_defaults() {
        let servers = specs(&[
            "/cluster.local/127.0.0.1#10053",
            "/in-addr.arpa/127.0.0.1#10053",
            "/corp.example/10.0.0.1",
            "/db.corp.example/10.0.0.2",
            "/internal.corp.example/#",
            "/lan/",
            "8.8.8.8",
        ]);
        let routes = build(
            &mut UpstreamTable::default(),
            &servers,
            &DnsConfig::default(),
            &[addr("1.1.1.1:53")],
        );
        let route = |n: &str| routes.route(&name(n)).addrs();
        assert_eq!(
            route("web.shop.svc.cluster.local."),
            [addr("127.0.0.1:10053")]
        );
        assert_eq!(
            route("WEB.Shop.svc.Cluster.Local."),
            [addr("127.0.0.1:10053")]
        );
        assert_eq!(route("10.0.96.10.in-addr.arpa."), [addr("127.0.0.1:10053")]);
        assert_eq!(route("x.corp.example."), [addr("10.0.0.1:53")]);
        assert_eq!(route("x.db.corp.example."), [addr("10.0.0.2:53")]);
        assert_eq!(
            route("x.internal.corp.example."),
            [addr("8.8.8.8:53"), addr("1.1.1.1:53")]
        );
        assert!(matches!(routes.route(&name("printer.lan.")), Route::Local));
        assert_eq!(
            route("www.example.com."),
            [addr("8.8.8.8:53"), addr("1.1.1.1:53")]
        );
        assert_eq!(
            route("notcluster.local."),
            [addr("8.8.8.8:53"), addr("1.1.1.1:53")]
        );
    }

    #[test]
    fn configmap_upstreams_replace_the_resolv_file_and_stubs_add_domains() {
        let dns = DnsConfig {
            upstream_nameservers: vec![addr("9.9.9.9:53")],
            stub_domains: vec![StubDomain {
                domain: "acme.local".into(),
                servers: vec![
                    Nameserver::Addr(addr("1.2.3.4:53")),
                    Nameserver::Host {
                        name: "ns.acme".into(),
                        port: 5353,
                    },
                ],
            }],
            federations: Vec::new(),
        };
        let mut resolved = ResolvedHosts::new();
        resolved.insert(("ns.acme".into(), 5353), vec![addr("5.6.7.8:5353")]);
        let routes = UpstreamTable::default().build(&RouteInputs {
            servers: &[],
            dns: &dns,
            resolv: &[addr("1.1.1.1:53")],
            resolved: &resolved,
            always_tcp: &[addr("5.6.7.8:5353")],
            timeout: Duration::from_secs(1),
            parallel: false,
        });
        assert_eq!(
            routes.route(&name("www.example.com.")).addrs(),
            [addr("9.9.9.9:53")]
        );
        let Route::Forward(pool) = routes.route(&name("x.acme.local.")) else {
            panic!("acme.local is forwarded");
        };
        let servers: Vec<_> = pool
            .servers()
            .iter()
            .map(|s| (s.addr(), s.always_tcp()))
            .collect();
        assert_eq!(
            servers,
            [(addr("1.2.3.4:53"), false), (addr("5.6.7.8:5353"), true)]
        );
    }

    #[test]
    fn changed_domains_name_exactly_what_a_config_change_reroutes() {
        let mut table = UpstreamTable::default();
        let base = specs(&["/cluster.local/127.0.0.1#10053", "8.8.8.8"]);
        let stub = |server: &str| DnsConfig {
            stub_domains: vec![StubDomain {
                domain: "acme.local".into(),
                servers: vec![Nameserver::Addr(addr(server))],
            }],
            ..DnsConfig::default()
        };
        let old = build(&mut table, &base, &stub("1.2.3.4:53"), &[]);
        let same = build(&mut table, &base, &stub("1.2.3.4:53"), &[]);
        assert!(old.changed_domains(&same).is_empty());
        assert_eq!(old.fingerprint(), same.fingerprint());
        let moved = build(&mut table, &base, &stub("5.6.7.8:53"), &[]);
        assert_eq!(old.changed_domains(&moved), [name("acme.local.")]);
        let new_default = build(
            &mut table,
            &base,
            &DnsConfig {
                upstream_nameservers: vec![addr("9.9.9.9:53")],
                ..stub("5.6.7.8:53")
            },
            &[],
        );
        assert_eq!(moved.changed_domains(&new_default), [Name::root()]);
    }

    #[test]
    fn a_server_with_an_in_process_exchanger_is_answered_in_process_and_others_are_not() {
        #[derive(Debug)]
        struct Unused;
        impl Exchanger for Unused {
            fn exchange(
                &self,
                query: hickory_proto::op::Message,
            ) -> futures::future::BoxFuture<'static, hickory_proto::op::Message> {
                Box::pin(std::future::ready(query))
            }
        }
        let kubedns = addr("127.0.0.1:10053");
        let mut table =
            UpstreamTable::with_in_process(InProcess::from([(kubedns, Arc::new(Unused) as _)]));
        let servers = specs(&["/cluster.local/127.0.0.1#10053", "8.8.8.8"]);
        let routes = table.build(&RouteInputs {
            servers: &servers,
            dns: &DnsConfig::default(),
            resolv: &[],
            resolved: &ResolvedHosts::new(),
            always_tcp: &[kubedns],
            timeout: Duration::from_secs(1),
            parallel: false,
        });
        let kinds: Vec<_> = routes
            .upstreams()
            .iter()
            .map(|s| (s.addr(), s.is_in_process(), s.always_tcp()))
            .collect();
        assert_eq!(
            kinds,
            [(kubedns, true, false), (addr("8.8.8.8:53"), false, false)]
        );
    }

    #[test]
    fn an_upstream_keeps_its_counters_across_rebuilds() {
        let mut table = UpstreamTable::default();
        let servers = specs(&["8.8.8.8"]);
        let one = build(&mut table, &servers, &DnsConfig::default(), &[]);
        let two = build(&mut table, &servers, &DnsConfig::default(), &[]);
        assert!(Arc::ptr_eq(&one.upstreams()[0], &two.upstreams()[0]));
    }
}
