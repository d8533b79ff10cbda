//! The record tree: every answer kubedns gives, held in memory as one immutable snapshot.
//!
//! The tree follows SkyDNS's shape, keyed by reversed labels below the zone:
//! `svc` → namespace → service, and the reverse zones keyed by address. A Service node holds the
//! stripped Service and its EndpointSlices; the names below it (`<hostname>.<svc>`,
//! `_<port>._<proto>.<svc>`) and the SRV and address records are derived from that node when a
//! query asks, which keeps 100,000 endpoints in a few megabytes instead of a node per record.
//! Lookups return a typed [`Lookup`]; the DNS handler maps it to an rcode in one place.

mod sharded;

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use hickory_proto::rr::rdata::{A, AAAA, CNAME, NS, PTR, SOA, SRV, TXT};
use hickory_proto::rr::{Name, RData, Record, RecordType};

use crate::model::{
    EndpointAddr, ObjectKey, ServiceInfo, ServiceKind, SliceInfo, endpoint_hash, hash_label_text,
    parse_hash_label,
};
pub use sharded::ShardedMap;

/// The most labels below the zone that any record has (`_<port>._<proto>.<svc>.<ns>.svc`).
const MAX_DEPTH: usize = 5;

/// The schema version of the Kubernetes DNS specification this server implements (§2.2).
pub const SCHEMA_VERSION: &str = "1.1.0";

/// How `<ip>.<ns>.pod.<zone>` names are answered (`--pod-records`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum PodRecords {
    /// Answered from the name alone, as kube-dns did (CoreDNS `pods insecure`).
    #[default]
    Insecure,
    /// Only when a Pod in that namespace has that IP (needs a Pod watch).
    Verified,
    /// Never: NXDOMAIN.
    Disabled,
}

/// Where a query name belongs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ZoneOf {
    /// In the cluster zone: answered from the records.
    Cluster,
    /// Under `in-addr.arpa.` or `ip6.arpa.`: answered when the address is the cluster's,
    /// forwarded otherwise.
    Reverse,
    /// Anywhere else: forwarded.
    Outside,
}

/// The outcome of a lookup, mapped to an rcode by the handler.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Lookup {
    /// Records for the question, and records for the additional section.
    Answer {
        /// The answer section.
        answers: Vec<Record>,
        /// The additional section (addresses of SRV targets).
        additionals: Vec<Record>,
    },
    /// A CNAME chain that leaves the zone: the handler resolves `target` upstream and appends what
    /// it gets; the CNAME stays in the answer even when that fails.
    ExternalCname {
        /// The CNAME records so far.
        answers: Vec<Record>,
        /// The out-of-zone name to resolve.
        target: Name,
    },
    /// The name exists with no records of that type (NOERROR, empty answer).
    NoData,
    /// Nothing exists at or below the name.
    NxDomain,
}

/// The address family a query type asks for.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Family {
    V4,
    V6,
    Both,
}

fn family_of(qtype: RecordType) -> Option<Family> {
    match qtype {
        RecordType::A => Some(Family::V4),
        RecordType::AAAA => Some(Family::V6),
        RecordType::ANY => Some(Family::Both),
        _ => None,
    }
}

fn matches_family(ip: &IpAddr, family: Family) -> bool {
    matches!(
        (ip, family),
        (_, Family::Both) | (IpAddr::V4(_), Family::V4) | (IpAddr::V6(_), Family::V6)
    )
}

/// A Service as the tree holds it: the stripped Service, its slices and its name.
#[derive(Clone, Debug)]
pub struct ServiceEntry {
    /// The stripped Service.
    pub info: Arc<ServiceInfo>,
    /// Its EndpointSlices (or its one Endpoints object).
    pub slices: Vec<Arc<SliceInfo>>,
    /// `<svc>.<ns>.svc.<zone>.`
    pub fqdn: Arc<Name>,
}

impl ServiceEntry {
    /// The endpoints DNS answers with: ready ones, or all with `publishNotReadyAddresses`.
    pub fn serving_endpoints(&self) -> impl Iterator<Item = (&SliceInfo, &EndpointAddr)> {
        let all = self.info.publish_not_ready;
        self.slices.iter().flat_map(move |s| {
            s.endpoints
                .iter()
                .filter(move |e| all || e.ready)
                .map(move |e| (&**s, e))
        })
    }

    /// The number of address, SRV and PTR records this Service contributes, for metrics.
    pub fn record_count(&self) -> usize {
        match &self.info.kind {
            ServiceKind::ClusterIp(ips) => ips.len() * (2 + self.info.ports.len()),
            ServiceKind::Headless => self
                .serving_endpoints()
                .map(|(s, _)| 2 + s.ports.len())
                .sum(),
            ServiceKind::ExternalName(_) | ServiceKind::ExternalIp(_) => 1,
        }
    }
}

/// A hash map with a fast (foldhash) hasher: names are looked up on every query, and SipHash
/// was a visible share of a query's CPU.
pub type FastMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// The Services of one namespace.
#[derive(Clone, Debug, Default)]
pub struct Namespace {
    /// By lowercase name.
    pub services: FastMap<Arc<str>, Arc<ServiceEntry>>,
}

/// The PTR targets of one address: nearly always one, so held inline.
pub type PtrTargets = smallvec::SmallVec<[PtrTarget; 1]>;

/// Where a PTR record points.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct PtrTarget {
    /// The Service's name.
    pub service: Arc<Name>,
    /// For an endpoint of a headless Service: its hostname, or `None` for the hash label.
    pub endpoint: Option<(Option<Arc<str>>, u32)>,
}

impl PtrTarget {
    /// The name the PTR record points at.
    pub fn name(&self) -> Name {
        match &self.endpoint {
            None => (*self.service).clone(),
            Some((hostname, hash)) => {
                let label = match hostname {
                    Some(h) => h.to_string(),
                    None => hash_label_text(*hash),
                };
                prepend(&self.service, &label)
            }
        }
    }
}

fn prepend(name: &Name, label: &str) -> Name {
    name.prepend_label(label).unwrap_or_else(|_| name.clone())
}

/// One immutable snapshot of every record.
#[derive(Clone, Debug)]
pub struct Records {
    zone: Name,
    ttl: u32,
    pod_records: PodRecords,
    /// `svc.<zone>` children.
    pub namespaces: FastMap<Arc<str>, Arc<Namespace>>,
    /// Address → PTR targets (one per Service claiming it).
    pub reverse: ShardedMap<IpAddr, PtrTargets>,
    /// Pod address → namespaces with a Pod using it, and how many (for verified pod records).
    pub pods: ShardedMap<IpAddr, Vec<(Arc<str>, u32)>>,
    /// The SOA serial: when the records last changed, in seconds since the epoch.
    pub serial: u32,
}

impl Records {
    /// Empty records for `zone` (lowercased, made absolute).
    pub fn new(zone: &Name, ttl: u32, pod_records: PodRecords) -> Self {
        let mut zone = zone.to_lowercase();
        zone.set_fqdn(true);
        Self {
            zone,
            ttl,
            pod_records,
            namespaces: FastMap::default(),
            reverse: ShardedMap::default(),
            pods: ShardedMap::default(),
            serial: 0,
        }
    }

    /// The zone, lowercase and absolute.
    pub fn zone(&self) -> &Name {
        &self.zone
    }

    /// The TTL of every record.
    pub fn ttl(&self) -> u32 {
        self.ttl
    }

    /// `<svc>.<ns>.svc.<zone>.`
    pub fn service_fqdn(&self, key: &ObjectKey) -> Name {
        let rel = Name::from_labels([key.name.as_bytes(), key.namespace.as_bytes(), b"svc"]);
        rel.and_then(|r| r.append_name(&self.zone))
            .unwrap_or_else(|_| self.zone.clone())
    }

    /// The Service entry for a key.
    pub fn service(&self, key: &ObjectKey) -> Option<&Arc<ServiceEntry>> {
        self.namespaces.get(&key.namespace)?.services.get(&key.name)
    }

    /// Where `qname` belongs.
    pub fn zone_of(&self, qname: &Name) -> ZoneOf {
        if self.zone.zone_of(qname) {
            ZoneOf::Cluster
        } else if is_reverse(qname) {
            ZoneOf::Reverse
        } else {
            ZoneOf::Outside
        }
    }

    /// The SOA record of the zone, with its TTL.
    pub fn soa(&self, ttl: u32) -> Record {
        let mname = prepend(&prepend(&self.zone, "dns"), "ns");
        let rname = prepend(&self.zone, "hostmaster");
        // Refresh, retry and expire as CoreDNS sets them; the minimum is the record TTL so that
        // a negative answer is never cached longer than a positive one.
        let soa = SOA::new(mname, rname, self.serial, 7200, 1800, 86400, self.ttl);
        Record::from_rdata(self.zone.clone(), ttl, RData::SOA(soa))
    }

    fn record(&self, owner: &Name, data: RData) -> Record {
        Record::from_rdata(owner.clone(), self.ttl, data)
    }

    fn addr(&self, owner: &Name, ip: IpAddr) -> Record {
        match ip {
            IpAddr::V4(v4) => self.record(owner, RData::A(A(v4))),
            IpAddr::V6(v6) => self.record(owner, RData::AAAA(AAAA(v6))),
        }
    }

    /// Answers a question for a name in the cluster zone.
    pub fn lookup(&self, qname: &Name, qtype: RecordType) -> Lookup {
        self.lookup_depth(qname, qtype, 0)
    }

    fn lookup_depth(&self, qname: &Name, qtype: RecordType, depth: u8) -> Lookup {
        if !self.zone.zone_of(qname) {
            return Lookup::NxDomain;
        }
        let rel = usize::from(qname.num_labels() - self.zone.num_labels());
        if rel > MAX_DEPTH {
            // Nothing in the zone is deeper than `_<port>._<proto>.<svc>.<ns>.svc`.
            return Lookup::NxDomain;
        }
        // The labels below the zone, lowercased into stack buffers and reversed, without
        // allocating: this runs for every query.
        let mut buffers = [[0u8; 63]; MAX_DEPTH];
        let mut lengths = [0usize; MAX_DEPTH];
        for (i, label) in qname.iter().take(rel).enumerate() {
            let slot = rel - 1 - i;
            let Some(buffer) = buffers[slot].get_mut(..label.len()) else {
                return Lookup::NxDomain;
            };
            buffer.copy_from_slice(label);
            buffer.make_ascii_lowercase();
            lengths[slot] = label.len();
        }
        let mut labels = [""; MAX_DEPTH];
        for slot in 0..rel {
            let Ok(label) = std::str::from_utf8(&buffers[slot][..lengths[slot]]) else {
                return Lookup::NxDomain;
            };
            labels[slot] = label;
        }
        let path = &labels[..rel];
        match path {
            [] => self.apex(qname, qtype),
            ["dns-version"] => match qtype {
                RecordType::TXT | RecordType::ANY => Lookup::Answer {
                    answers: vec![
                        self.record(qname, RData::TXT(TXT::new(vec![SCHEMA_VERSION.to_owned()]))),
                    ],
                    additionals: Vec::new(),
                },
                _ => Lookup::NoData,
            },
            ["dns"] | ["svc"] => Lookup::NoData,
            ["dns", "ns"] => self.nameserver_address(qname, qtype),
            ["svc", ns, rest @ ..] => {
                let Some(namespace) = self.namespaces.get(*ns) else {
                    return Lookup::NxDomain;
                };
                let [svc, below @ ..] = rest else {
                    return Lookup::NoData;
                };
                let Some(entry) = namespace.services.get(*svc) else {
                    return Lookup::NxDomain;
                };
                self.service_lookup(entry, below, qname, qtype, depth)
            }
            ["pod", rest @ ..] if self.pod_records != PodRecords::Disabled => match rest {
                [] | [_] => Lookup::NoData,
                [ns, ip] => self.pod_lookup(ns, ip, qname, qtype),
                _ => Lookup::NxDomain,
            },
            _ => Lookup::NxDomain,
        }
    }

    fn apex(&self, qname: &Name, qtype: RecordType) -> Lookup {
        let answers = match qtype {
            RecordType::SOA => vec![self.soa(self.ttl)],
            RecordType::NS => {
                let ns = prepend(&prepend(&self.zone, "dns"), "ns");
                vec![self.record(qname, RData::NS(NS(ns)))]
            }
            _ => return Lookup::NoData,
        };
        Lookup::Answer {
            answers,
            additionals: Vec::new(),
        }
    }

    /// `ns.dns.<zone>`: the addresses of the `kube-system/kube-dns` Service, when known.
    fn nameserver_address(&self, qname: &Name, qtype: RecordType) -> Lookup {
        let key = ObjectKey::new("kube-system", "kube-dns");
        let ips = match self.service(&key).map(|e| &e.info.kind) {
            Some(ServiceKind::ClusterIp(ips)) => ips.as_slice(),
            _ => &[],
        };
        self.addresses(qname, qtype, ips.iter().copied())
    }

    fn addresses(
        &self,
        qname: &Name,
        qtype: RecordType,
        ips: impl Iterator<Item = IpAddr>,
    ) -> Lookup {
        let Some(family) = family_of(qtype) else {
            return Lookup::NoData;
        };
        // Sorted, so that duplicates (one address in two slices) go in O(n log n) and the
        // answer order is stable.
        let mut unique: Vec<IpAddr> = ips.filter(|ip| matches_family(ip, family)).collect();
        unique.sort_unstable();
        unique.dedup();
        let answers: Vec<Record> = unique.into_iter().map(|ip| self.addr(qname, ip)).collect();
        if answers.is_empty() {
            Lookup::NoData
        } else {
            Lookup::Answer {
                answers,
                additionals: Vec::new(),
            }
        }
    }

    fn service_lookup(
        &self,
        entry: &ServiceEntry,
        below: &[&str],
        qname: &Name,
        qtype: RecordType,
        depth: u8,
    ) -> Lookup {
        let info = &entry.info;
        match (&info.kind, below) {
            (ServiceKind::ExternalName(target), []) => {
                self.external_name(qname, qtype, target, depth)
            }
            (ServiceKind::ExternalIp(ip), []) => self.addresses(qname, qtype, std::iter::once(*ip)),
            (ServiceKind::ClusterIp(ips), []) => {
                if qtype == RecordType::SRV {
                    // kube-dns answered SRV on the bare name with port-0 records pointing at the
                    // per-IP names; the stock liveness probes depend on a non-empty answer.
                    let targets = ips.iter().map(|ip| {
                        let label = hash_label_text(endpoint_hash(&ip.to_string()));
                        (prepend(&entry.fqdn, &label), *ip)
                    });
                    self.srv_answer(qname, 0, targets.collect())
                } else {
                    self.addresses(qname, qtype, ips.iter().copied())
                }
            }
            (ServiceKind::Headless, []) => {
                let mut any = false;
                let ips = entry.serving_endpoints().map(|(_, e)| {
                    any = true;
                    e.ip
                });
                let ips: Vec<IpAddr> = ips.collect();
                if !any {
                    return Lookup::NxDomain;
                }
                if qtype == RecordType::SRV {
                    let targets = entry
                        .serving_endpoints()
                        .map(|(_, e)| (prepend(&entry.fqdn, &e.label()), e.ip))
                        .collect();
                    self.srv_answer(qname, 0, targets)
                } else {
                    self.addresses(qname, qtype, ips.into_iter())
                }
            }
            (ServiceKind::ClusterIp(_) | ServiceKind::Headless, [proto])
                if proto.starts_with('_') =>
            {
                if self.port_targets(entry, proto, None).is_empty() {
                    Lookup::NxDomain
                } else {
                    Lookup::NoData
                }
            }
            (ServiceKind::ClusterIp(_) | ServiceKind::Headless, [proto, port])
                if proto.starts_with('_') && port.starts_with('_') =>
            {
                let targets = self.port_targets(entry, proto, Some(port));
                if targets.is_empty() {
                    Lookup::NxDomain
                } else if qtype == RecordType::SRV || qtype == RecordType::ANY {
                    self.srv_records(qname, targets)
                } else {
                    Lookup::NoData
                }
            }
            (ServiceKind::ClusterIp(ips), [label]) => {
                let Some(hash) = parse_hash_label(label) else {
                    return Lookup::NxDomain;
                };
                let ips: Vec<IpAddr> = ips
                    .iter()
                    .copied()
                    .filter(|ip| endpoint_hash(&ip.to_string()) == hash)
                    .collect();
                if ips.is_empty() {
                    return Lookup::NxDomain;
                }
                self.addresses(qname, qtype, ips.into_iter())
            }
            (ServiceKind::Headless, [label]) => {
                let hash = parse_hash_label(label);
                let ips: Vec<IpAddr> = entry
                    .serving_endpoints()
                    .filter(|(_, e)| match &e.hostname {
                        Some(h) => &**h == *label,
                        None => Some(e.hash) == hash,
                    })
                    .map(|(_, e)| e.ip)
                    .collect();
                if ips.is_empty() {
                    return Lookup::NxDomain;
                }
                self.addresses(qname, qtype, ips.into_iter())
            }
            _ => Lookup::NxDomain,
        }
    }

    /// SRV targets for `_<port>._<proto>` (or any port of `_<proto>` when `port` is `None`):
    /// (target name, port, target addresses).
    fn port_targets(
        &self,
        entry: &ServiceEntry,
        proto: &str,
        port: Option<&str>,
    ) -> Vec<(Name, u16, Vec<IpAddr>)> {
        let proto = &proto[1..];
        let port = port.map(|p| &p[1..]);
        let matches = |p: &crate::model::NamedPort| {
            &*p.protocol == proto && port.is_none_or(|name| &*p.name == name)
        };
        let mut out: Vec<(Name, u16, Vec<IpAddr>)> = Vec::new();
        match &entry.info.kind {
            ServiceKind::ClusterIp(ips) => {
                for p in entry.info.ports.iter().filter(|p| matches(p)) {
                    out.push(((*entry.fqdn).clone(), p.port, ips.clone()));
                }
            }
            ServiceKind::Headless => {
                for (slice, ep) in entry.serving_endpoints() {
                    for p in slice.ports.iter().filter(|p| matches(p)) {
                        let target = prepend(&entry.fqdn, &ep.label());
                        match out
                            .iter_mut()
                            .find(|(t, port, _)| *t == target && *port == p.port)
                        {
                            Some((_, _, ips)) if !ips.contains(&ep.ip) => ips.push(ep.ip),
                            Some(_) => {}
                            None => out.push((target, p.port, vec![ep.ip])),
                        }
                    }
                }
            }
            _ => {}
        }
        out
    }

    fn srv_records(&self, qname: &Name, targets: Vec<(Name, u16, Vec<IpAddr>)>) -> Lookup {
        let weight = srv_weight(targets.len());
        let mut answers = Vec::with_capacity(targets.len());
        let mut additionals = Vec::new();
        for (target, port, ips) in targets {
            for ip in ips {
                additionals.push(self.addr(&target, ip));
            }
            answers.push(self.record(qname, RData::SRV(SRV::new(10, weight, port, target))));
        }
        Lookup::Answer {
            answers,
            additionals,
        }
    }

    fn srv_answer(&self, qname: &Name, port: u16, targets: Vec<(Name, IpAddr)>) -> Lookup {
        let mut grouped: Vec<(Name, u16, Vec<IpAddr>)> = Vec::new();
        for (target, ip) in targets {
            match grouped.iter_mut().find(|(t, _, _)| *t == target) {
                Some((_, _, ips)) if !ips.contains(&ip) => ips.push(ip),
                Some(_) => {}
                None => grouped.push((target, port, vec![ip])),
            }
        }
        self.srv_records(qname, grouped)
    }

    fn external_name(&self, qname: &Name, qtype: RecordType, target: &str, depth: u8) -> Lookup {
        let Ok(mut target) = Name::from_ascii(target) else {
            return Lookup::NoData;
        };
        target.set_fqdn(true);
        let cname = self.record(qname, RData::CNAME(CNAME(target.clone())));
        if qtype == RecordType::CNAME {
            return Lookup::Answer {
                answers: vec![cname],
                additionals: Vec::new(),
            };
        }
        if !self.zone.zone_of(&target) {
            return Lookup::ExternalCname {
                answers: vec![cname],
                target,
            };
        }
        // A chain inside the zone is followed here, bounded against loops.
        let mut answers = vec![cname];
        let mut additionals = Vec::new();
        if depth < 8 {
            match self.lookup_depth(&target, qtype, depth + 1) {
                Lookup::Answer {
                    answers: more,
                    additionals: extra,
                } => {
                    answers.extend(more);
                    additionals.extend(extra);
                }
                Lookup::ExternalCname {
                    answers: more,
                    target,
                } => {
                    answers.extend(more);
                    return Lookup::ExternalCname { answers, target };
                }
                Lookup::NoData | Lookup::NxDomain => {}
            }
        }
        Lookup::Answer {
            answers,
            additionals,
        }
    }

    fn pod_lookup(&self, ns: &str, ip_label: &str, qname: &Name, qtype: RecordType) -> Lookup {
        let Some(ip) = parse_pod_ip(ip_label) else {
            return Lookup::NxDomain;
        };
        if self.pod_records == PodRecords::Verified {
            let known = self
                .pods
                .get(&ip)
                .is_some_and(|namespaces| namespaces.iter().any(|(n, _)| &**n == ns));
            if !known {
                return Lookup::NxDomain;
            }
        }
        self.addresses(qname, qtype, std::iter::once(ip))
    }

    /// Answers a reverse query when the address is the cluster's; `None` means forward it.
    pub fn lookup_reverse(&self, qname: &Name, qtype: RecordType) -> Option<Lookup> {
        let net = qname.parse_arpa_name().ok()?;
        let full = match net.addr() {
            IpAddr::V4(_) => 32,
            IpAddr::V6(_) => 128,
        };
        if net.prefix_len() != full {
            return None;
        }
        let targets = self.reverse.get(&net.addr())?;
        if !matches!(qtype, RecordType::PTR | RecordType::ANY) {
            return Some(Lookup::NoData);
        }
        let answers = targets
            .iter()
            .map(|t| self.record(qname, RData::PTR(PTR(t.name()))))
            .collect();
        Some(Lookup::Answer {
            answers,
            additionals: Vec::new(),
        })
    }
}

/// SRV weight as kube-dns computed it: every target weighs 10, so each gets floor(100/N).
fn srv_weight(targets: usize) -> u16 {
    u16::try_from(100 / targets.max(1)).unwrap_or(0)
}

fn is_reverse(qname: &Name) -> bool {
    let n = qname.num_labels();
    if n < 2 {
        return false;
    }
    let mut labels = qname.iter().skip(usize::from(n - 2));
    let (Some(second), Some(last)) = (labels.next(), labels.next()) else {
        return false;
    };
    last.eq_ignore_ascii_case(b"arpa")
        && (second.eq_ignore_ascii_case(b"in-addr") || second.eq_ignore_ascii_case(b"ip6"))
}

/// `10-244-1-10` → 10.244.1.10; `fd00-10-244-1--21` → fd00:10:244:1::21.
pub fn parse_pod_ip(label: &str) -> Option<IpAddr> {
    let dotted = label.replace('-', ".");
    if let Ok(ip @ IpAddr::V4(_)) = dotted.parse::<IpAddr>() {
        return Some(ip);
    }
    let coloned = label.replace('-', ":");
    match coloned.parse::<IpAddr>() {
        Ok(ip @ IpAddr::V6(_)) => Some(ip),
        _ => None,
    }
}

/// Builds a Service's entry from the stripped Service and its slices.
pub fn service_entry(
    records: &Records,
    info: Arc<ServiceInfo>,
    slices: Vec<Arc<SliceInfo>>,
) -> ServiceEntry {
    let fqdn = Arc::new(records.service_fqdn(&info.key));
    ServiceEntry { info, slices, fqdn }
}

/// The PTR records a Service contributes: its ClusterIPs, or its serving endpoints.
pub fn ptr_targets(entry: &ServiceEntry) -> Vec<(IpAddr, PtrTarget)> {
    match &entry.info.kind {
        ServiceKind::ClusterIp(ips) => ips
            .iter()
            .map(|ip| {
                (
                    *ip,
                    PtrTarget {
                        service: entry.fqdn.clone(),
                        endpoint: None,
                    },
                )
            })
            .collect(),
        ServiceKind::Headless => {
            let mut out: Vec<(IpAddr, PtrTarget)> = Vec::new();
            for (_, e) in entry.serving_endpoints() {
                let target = PtrTarget {
                    service: entry.fqdn.clone(),
                    endpoint: Some((e.hostname.clone(), e.hash)),
                };
                if !out.iter().any(|(ip, t)| *ip == e.ip && *t == target) {
                    out.push((e.ip, target));
                }
            }
            out
        }
        _ => Vec::new(),
    }
}
