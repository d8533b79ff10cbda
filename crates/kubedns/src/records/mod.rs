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
use std::collections::hash_map::Entry;
use std::hash::Hash;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use hickory_proto::rr::rdata::{A, AAAA, CNAME, NS, PTR, SOA, SRV, TXT};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use smallvec::SmallVec;

use crate::model::{
    EndpointAddr, NamedPort, ObjectKey, ServiceInfo, ServiceKind, SliceEndpoint, SliceInfo,
    endpoint_hash, hash_label_text, parse_hash_label,
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

/// A Service as the tree holds it: the stripped Service and its slices.
///
/// Its name is not held: A and AAAA answers are owned by the query name, and the SRV and PTR
/// answers that point at the name build it from the key and the zone.
#[derive(Clone, Debug)]
pub struct ServiceEntry {
    /// The stripped Service.
    pub info: Arc<ServiceInfo>,
    /// Its EndpointSlices (or its one Endpoints object). Nearly always one, held inline: a
    /// `Vec` would cost an allocation per Service.
    pub slices: SmallVec<[Arc<SliceInfo>; 1]>,
}

impl ServiceEntry {
    /// Every endpoint, serving or not, in slice order.
    fn endpoints(&self) -> impl Iterator<Item = SliceEndpoint<'_>> {
        self.slices.iter().flat_map(|s| s.iter_endpoints())
    }

    /// True for an endpoint DNS answers with: a ready one, or any with
    /// `publishNotReadyAddresses`.
    fn serves(&self, endpoint: &EndpointAddr) -> bool {
        endpoint.ready || self.info.publish_not_ready
    }

    /// The endpoints DNS answers with (see [`ServiceEntry::serves`]).
    pub fn serving_endpoints(&self) -> impl Iterator<Item = SliceEndpoint<'_>> {
        self.endpoints().filter(|e| self.serves(e.addr))
    }

    /// The endpoint at `position` among all the endpoints of the slices, in slice order.
    pub fn endpoint(&self, position: u32) -> Option<SliceEndpoint<'_>> {
        let mut rest = usize::try_from(position).ok()?;
        for slice in &self.slices {
            match slice.endpoint(rest) {
                Some(endpoint) => return Some(endpoint),
                None => rest -= slice.endpoints.len(),
            }
        }
        None
    }

    /// The number of address, SRV and PTR records this Service contributes, for metrics.
    pub fn record_count(&self) -> usize {
        match &self.info.kind {
            ServiceKind::ClusterIp(ips) => ips.len() * (2 + self.info.ports.len()),
            ServiceKind::Headless => self
                .serving_endpoints()
                .map(|e| 2 + e.slice.ports.len())
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

/// Where a PTR record points: a Service's name, or the name of one of its endpoints.
///
/// 16 bytes: the name is derived from the Service entry when a PTR query asks, which is rare,
/// rather than held per address.
#[derive(Clone, Debug)]
pub struct PtrTarget {
    /// The Service claiming the address.
    pub service: Arc<ServiceEntry>,
    /// For an endpoint of a headless Service: its position as [`ServiceEntry::endpoint`] counts.
    pub endpoint: Option<u32>,
}

impl PtrTarget {
    /// The name the PTR record points at, in `zone`.
    pub fn name(&self, zone: &Name) -> Name {
        let service = service_fqdn(&self.service.info.key, zone);
        // The entry is immutable, so the position always names one of its endpoints.
        match self
            .endpoint
            .and_then(|position| self.service.endpoint(position))
        {
            None => service,
            Some(endpoint) => prepend(&service, &endpoint.label()),
        }
    }
}

/// The PTR targets of one address. Nearly always one Service claims an address, so that target
/// is held inline; the list for the rare shared address is boxed so that it does not widen the
/// common case beyond one target's 16 bytes.
#[derive(Clone, Debug)]
pub enum PtrTargets {
    /// The one Service claiming the address.
    One(PtrTarget),
    /// Several, in the order they claimed it.
    Many(Box<Vec<PtrTarget>>),
}

// One reverse-map entry per cluster address: keep the targets at one target's size.
const _: () = assert!(std::mem::size_of::<PtrTargets>() <= 16);

impl PtrTargets {
    /// The targets, in the order their Services claimed the address.
    pub fn as_slice(&self) -> &[PtrTarget] {
        match self {
            Self::One(target) => std::slice::from_ref(target),
            Self::Many(targets) => targets,
        }
    }

    fn push(&mut self, target: PtrTarget) {
        match self {
            Self::One(first) => *self = Self::Many(Box::new(vec![first.clone(), target])),
            Self::Many(targets) => targets.push(target),
        }
    }

    /// Drops the targets of `service`; `false` when none are left.
    fn remove_service(&mut self, service: &Arc<ServiceEntry>) -> bool {
        match self {
            Self::One(target) => !Arc::ptr_eq(&target.service, service),
            Self::Many(targets) => {
                targets.retain(|t| !Arc::ptr_eq(&t.service, service));
                match targets.len() {
                    0 => false,
                    1 => {
                        *self = Self::One(targets[0].clone());
                        true
                    }
                    _ => true,
                }
            }
        }
    }
}

/// Address → PTR targets, with one map per family: an IPv4 key takes 4 bytes, where an
/// `IpAddr` takes 17.
#[derive(Clone, Debug, Default)]
pub struct ReverseMap {
    v4: ShardedMap<Ipv4Addr, PtrTargets>,
    v6: ShardedMap<Ipv6Addr, PtrTargets>,
}

impl ReverseMap {
    /// The PTR targets of `ip`.
    pub fn get(&self, ip: IpAddr) -> Option<&PtrTargets> {
        match ip {
            IpAddr::V4(v4) => self.v4.get(&v4),
            IpAddr::V6(v6) => self.v6.get(&v6),
        }
    }

    /// Adds a target for `ip`, after those already there.
    pub fn insert(&mut self, ip: IpAddr, target: PtrTarget) {
        fn insert_in<K: Hash + Eq + Clone>(
            map: &mut ShardedMap<K, PtrTargets>,
            key: K,
            target: PtrTarget,
        ) {
            match map.shard_mut(&key).entry(key) {
                Entry::Occupied(mut targets) => targets.get_mut().push(target),
                Entry::Vacant(slot) => {
                    slot.insert(PtrTargets::One(target));
                }
            }
        }
        match ip {
            IpAddr::V4(v4) => insert_in(&mut self.v4, v4, target),
            IpAddr::V6(v6) => insert_in(&mut self.v6, v6, target),
        }
    }

    /// Removes the targets `service` has for `ip`.
    pub fn remove_service(&mut self, ip: IpAddr, service: &Arc<ServiceEntry>) {
        fn remove_in<K: Hash + Eq + Clone>(
            map: &mut ShardedMap<K, PtrTargets>,
            key: &K,
            service: &Arc<ServiceEntry>,
        ) {
            let shard = map.shard_mut(key);
            if let Some(targets) = shard.get_mut(key)
                && !targets.remove_service(service)
            {
                shard.remove(key);
            }
        }
        match ip {
            IpAddr::V4(v4) => remove_in(&mut self.v4, &v4, service),
            IpAddr::V6(v6) => remove_in(&mut self.v6, &v6, service),
        }
    }

    /// Every address with its targets, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (IpAddr, &PtrTargets)> {
        let v4 = self.v4.iter().map(|(ip, t)| (IpAddr::V4(*ip), t));
        let v6 = self.v6.iter().map(|(ip, t)| (IpAddr::V6(*ip), t));
        v4.chain(v6)
    }
}

/// `<svc>.<ns>.svc.<zone>.`
fn service_fqdn(key: &ObjectKey, zone: &Name) -> Name {
    let rel = Name::from_labels([key.name.as_bytes(), key.namespace.as_bytes(), b"svc"]);
    rel.and_then(|r| r.append_name(zone))
        .unwrap_or_else(|_| zone.clone())
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
    pub reverse: ReverseMap,
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
            reverse: ReverseMap::default(),
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
        service_fqdn(key, &self.zone)
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
                    let fqdn = self.service_fqdn(&info.key);
                    let targets = ips.iter().map(|ip| {
                        let label = hash_label_text(endpoint_hash(&ip.to_string()));
                        (prepend(&fqdn, &label), *ip)
                    });
                    self.srv_answer(qname, 0, targets.collect())
                } else {
                    self.addresses(qname, qtype, ips.iter().copied())
                }
            }
            (ServiceKind::Headless, []) => {
                let mut any = false;
                let ips = entry.serving_endpoints().map(|e| {
                    any = true;
                    e.addr.ip
                });
                let ips: Vec<IpAddr> = ips.collect();
                if !any {
                    return Lookup::NxDomain;
                }
                if qtype == RecordType::SRV {
                    let fqdn = self.service_fqdn(&info.key);
                    let targets = entry
                        .serving_endpoints()
                        .map(|e| (prepend(&fqdn, &e.label()), e.addr.ip))
                        .collect();
                    self.srv_answer(qname, 0, targets)
                } else {
                    self.addresses(qname, qtype, ips.into_iter())
                }
            }
            (ServiceKind::ClusterIp(_) | ServiceKind::Headless, [proto])
                if proto.starts_with('_') =>
            {
                if has_port_targets(entry, proto, None) {
                    Lookup::NoData
                } else {
                    Lookup::NxDomain
                }
            }
            (ServiceKind::ClusterIp(_) | ServiceKind::Headless, [proto, port])
                if proto.starts_with('_') && port.starts_with('_') =>
            {
                if qtype == RecordType::SRV || qtype == RecordType::ANY {
                    let targets = self.port_targets(entry, proto, port);
                    if targets.is_empty() {
                        Lookup::NxDomain
                    } else {
                        self.srv_records(qname, targets)
                    }
                } else if has_port_targets(entry, proto, Some(port)) {
                    Lookup::NoData
                } else {
                    Lookup::NxDomain
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
                    .filter(|e| match e.hostname() {
                        Some(h) => &**h == *label,
                        None => Some(e.addr.hash) == hash,
                    })
                    .map(|e| e.addr.ip)
                    .collect();
                if ips.is_empty() {
                    return Lookup::NxDomain;
                }
                self.addresses(qname, qtype, ips.into_iter())
            }
            _ => Lookup::NxDomain,
        }
    }

    /// SRV targets for `_<port>._<proto>`: (target name, port, target addresses).
    fn port_targets(
        &self,
        entry: &ServiceEntry,
        proto: &str,
        port: &str,
    ) -> Vec<(Name, u16, Vec<IpAddr>)> {
        let matches = port_matcher(proto, Some(port));
        let fqdn = self.service_fqdn(&entry.info.key);
        let mut out: Vec<(Name, u16, Vec<IpAddr>)> = Vec::new();
        match &entry.info.kind {
            ServiceKind::ClusterIp(ips) => {
                for p in entry.info.ports.iter().filter(|p| matches(p)) {
                    out.push((fqdn.clone(), p.port, ips.clone()));
                }
            }
            ServiceKind::Headless => {
                for ep in entry.serving_endpoints() {
                    let ip = ep.addr.ip;
                    for p in ep.slice.ports.iter().filter(|p| matches(p)) {
                        let target = prepend(&fqdn, &ep.label());
                        match out
                            .iter_mut()
                            .find(|(t, port, _)| *t == target && *port == p.port)
                        {
                            Some((_, _, ips)) if !ips.contains(&ip) => ips.push(ip),
                            Some(_) => {}
                            None => out.push((target, p.port, vec![ip])),
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
        let targets = self.reverse.get(net.addr())?;
        if !matches!(qtype, RecordType::PTR | RecordType::ANY) {
            return Some(Lookup::NoData);
        }
        let answers = targets
            .as_slice()
            .iter()
            .map(|t| self.record(qname, RData::PTR(PTR(t.name(&self.zone)))))
            .collect();
        Some(Lookup::Answer {
            answers,
            additionals: Vec::new(),
        })
    }
}

/// Matches the ports named by the labels `_<proto>` and `_<port>` (any port when `None`).
fn port_matcher<'a>(proto: &'a str, port: Option<&'a str>) -> impl Fn(&NamedPort) -> bool + 'a {
    let proto = &proto[1..];
    let port = port.map(|p| &p[1..]);
    move |p| &*p.protocol == proto && port.is_none_or(|name| &*p.name == name)
}

/// True when `_<port>._<proto>` (or `_<proto>` when `port` is `None`) has SRV targets: the
/// existence check of [`Records::port_targets`], without building names.
fn has_port_targets(entry: &ServiceEntry, proto: &str, port: Option<&str>) -> bool {
    let matches = port_matcher(proto, port);
    match &entry.info.kind {
        ServiceKind::ClusterIp(_) => entry.info.ports.iter().any(&matches),
        ServiceKind::Headless => entry
            .serving_endpoints()
            .any(|e| e.slice.ports.iter().any(&matches)),
        _ => false,
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

/// The PTR records a Service contributes: its ClusterIPs, or its serving endpoints.
pub fn ptr_targets(entry: &Arc<ServiceEntry>) -> Vec<(IpAddr, PtrTarget)> {
    let target = |endpoint| PtrTarget {
        service: entry.clone(),
        endpoint,
    };
    match &entry.info.kind {
        ServiceKind::ClusterIp(ips) => ips.iter().map(|ip| (*ip, target(None))).collect(),
        ServiceKind::Headless => {
            // One record per address and name: an endpoint listed in two slices, or twice with
            // the same hostname, points once.
            let mut seen: Vec<(IpAddr, Option<&Arc<str>>, u32)> = Vec::new();
            let mut out = Vec::new();
            for (position, e) in entry.endpoints().enumerate() {
                let Ok(position) = u32::try_from(position) else {
                    break;
                };
                let name = (e.addr.ip, e.hostname(), e.addr.hash);
                if entry.serves(e.addr) && !seen.contains(&name) {
                    seen.push(name);
                    out.push((e.addr.ip, target(Some(position))));
                }
            }
            out
        }
        _ => Vec::new(),
    }
}
