//! Stripped-down copies of the Kubernetes objects DNS needs.
//!
//! The projections keep only what answers are built from (names, IPs, ports, readiness,
//! hostnames) and drop everything else, so that 100,000 endpoints fit in a few megabytes. A
//! malformed field (an IP that does not parse, a port out of range) skips that one item with a
//! [`Problem`] the caller logs and counts; it never rejects the whole object.

use std::borrow::Cow;
use std::collections::HashSet;
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::{Arc, LazyLock, Mutex, PoisonError};

use k8s_openapi::api::core::v1::{Endpoints, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;

/// The label the EndpointSlice controller puts on a slice to name its Service.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// A namespace and a name.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectKey {
    /// `metadata.namespace`, lowercase.
    pub namespace: Arc<str>,
    /// `metadata.name`, lowercase.
    pub name: Arc<str>,
}

impl ObjectKey {
    /// A key from namespace and name; DNS matching is case-insensitive, so both are lowercased.
    pub fn new(namespace: &str, name: &str) -> Self {
        Self {
            namespace: intern(namespace),
            name: lower(name),
        }
    }
}

/// Shared copies of values that many objects repeat.
///
/// Values no object uses any more are dropped whenever the pool has doubled since the last
/// clean-up, so values that come and go (namespaces, say) do not accumulate.
struct Pool<T: ?Sized> {
    values: HashSet<Arc<T>>,
    prune_at: usize,
}

impl<T: ?Sized> Default for Pool<T> {
    fn default() -> Self {
        Self {
            values: HashSet::new(),
            prune_at: 1024,
        }
    }
}

impl<T: ?Sized + Hash + Eq> Pool<T>
where
    for<'a> Arc<T>: From<&'a T>,
{
    /// The pool's copy of `value`, added if it has none.
    fn share(pool: &Mutex<Self>, value: &T) -> Arc<T> {
        let mut pool = pool.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(shared) = pool.values.get(value) {
            return shared.clone();
        }
        if pool.values.len() >= pool.prune_at {
            pool.values.retain(|v| Arc::strong_count(v) > 1);
            pool.prune_at = (pool.values.len() * 2).max(1024);
        }
        let shared = Arc::from(value);
        pool.values.insert(shared.clone());
        shared
    }
}

/// One shared copy of a lowercased string that many objects repeat (namespaces, port names,
/// protocols): with 10,000 Services, separate copies cost megabytes.
pub fn intern(text: &str) -> Arc<str> {
    static POOL: LazyLock<Mutex<Pool<str>>> = LazyLock::new(Mutex::default);
    Pool::share(&POOL, &text.to_ascii_lowercase())
}

/// One shared copy of a list of named ports: Services and slices mostly repeat a few lists
/// (`http` on 80, say), and a copy per object costs a megabyte at 10,000 Services.
fn intern_ports(ports: &[NamedPort]) -> Arc<[NamedPort]> {
    static POOL: LazyLock<Mutex<Pool<[NamedPort]>>> = LazyLock::new(Mutex::default);
    Pool::share(&POOL, ports)
}

impl std::fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// Something in an object that could not be used.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// The object it was found in.
    pub object: String,
    /// What was wrong, for the log.
    pub what: String,
}

/// What a Service resolves to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ServiceKind {
    /// A virtual IP per family (`spec.clusterIPs`): A/AAAA answer with them.
    ClusterIp(Vec<IpAddr>),
    /// No virtual IP: answers come from the ready endpoints.
    Headless,
    /// `spec.externalName` that is a name: a CNAME.
    ExternalName(Arc<str>),
    /// `spec.externalName` that is an IP address: answered as A/AAAA, as kube-dns did.
    ExternalIp(IpAddr),
}

/// A named port with its protocol, as SRV records need.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct NamedPort {
    /// The port name, lowercase (the `_<name>` label).
    pub name: Arc<str>,
    /// The protocol, lowercase (`tcp`, `udp`, `sctp`; the `_<proto>` label).
    pub protocol: Arc<str>,
    /// The port number.
    pub port: u16,
}

/// The DNS-relevant part of a Service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceInfo {
    /// Namespace and name.
    pub key: ObjectKey,
    /// How it resolves.
    pub kind: ServiceKind,
    /// Its named ports (unnamed ports have no SRV records), shared with the objects that list
    /// the same ones.
    pub ports: Arc<[NamedPort]>,
    /// `spec.publishNotReadyAddresses`: not-ready endpoints are answered too.
    pub publish_not_ready: bool,
}

/// One endpoint address. Its hostname, which nearly no endpoint has, is held by its slice.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EndpointAddr {
    /// The address.
    pub ip: IpAddr,
    /// The FNV-1a hash kube-dns derived the endpoint's DNS label from (see [`hash_label`]).
    pub hash: u32,
    /// The `ready` condition (absent means ready, as the API documents).
    pub ready: bool,
}

// Every endpoint of the cluster is held: keep one at 24 bytes.
const _: () = assert!(std::mem::size_of::<EndpointAddr>() <= 24);

/// One EndpointSlice (or one core/v1 Endpoints object), stripped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SliceInfo {
    /// The slice's own namespace and name.
    pub key: ObjectKey,
    /// The Service it belongs to.
    pub service: ObjectKey,
    /// Its addresses.
    pub endpoints: Vec<EndpointAddr>,
    /// The hostnames, lowercase, of the addresses that have one, by position in `endpoints`,
    /// ascending. Held apart from the addresses because nearly none has one.
    pub hostnames: Vec<(u32, Arc<str>)>,
    /// Its named ports (the endpoint's, i.e. target ports), shared with the objects that list
    /// the same ones.
    pub ports: Arc<[NamedPort]>,
}

impl SliceInfo {
    /// The address at `index` in `endpoints`.
    pub fn endpoint(&self, index: usize) -> Option<SliceEndpoint<'_>> {
        let addr = self.endpoints.get(index)?;
        Some(SliceEndpoint {
            slice: self,
            addr,
            index,
        })
    }

    /// Every address, in order.
    pub fn iter_endpoints(&self) -> impl Iterator<Item = SliceEndpoint<'_>> {
        self.endpoints
            .iter()
            .enumerate()
            .map(|(index, addr)| SliceEndpoint {
                slice: self,
                addr,
                index,
            })
    }
}

/// An endpoint address with the slice that holds its hostname and ports.
#[derive(Clone, Copy, Debug)]
pub struct SliceEndpoint<'a> {
    /// The slice.
    pub slice: &'a SliceInfo,
    /// The address.
    pub addr: &'a EndpointAddr,
    /// Its position in the slice's `endpoints`.
    index: usize,
}

impl<'a> SliceEndpoint<'a> {
    /// `hostname`, lowercase, when the endpoint has one.
    pub fn hostname(&self) -> Option<&'a Arc<str>> {
        let index = u32::try_from(self.index).ok()?;
        let hostnames = &self.slice.hostnames;
        let at = hostnames.binary_search_by_key(&index, |(i, _)| *i).ok()?;
        Some(&hostnames[at].1)
    }

    /// The endpoint's label below its Service: the hostname, or kube-dns's hash label.
    pub fn label(&self) -> Cow<'a, str> {
        match self.hostname() {
            Some(h) => Cow::Borrowed(h),
            None => Cow::Owned(hash_label_text(self.addr.hash)),
        }
    }
}

/// A Pod's IPs, for verified pod records.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodInfo {
    /// Namespace and name.
    pub key: ObjectKey,
    /// `status.podIPs`.
    pub ips: Vec<IpAddr>,
}

/// kube-dns's label for an endpoint without a hostname, kept so that SRV targets do not change
/// when a cluster swaps images: the lowercase hex of the ASCII text of the unpadded lowercase hex
/// FNV-1a hash of `&{<IP> 0 10 10  false 30 0  }` (Go's `%v` of its record struct).
pub fn hash_label(ip_text: &str) -> String {
    hash_label_text(endpoint_hash(ip_text))
}

/// The 32-bit FNV-1a hash behind [`hash_label`].
pub fn endpoint_hash(ip_text: &str) -> u32 {
    const OFFSET: u32 = 0x811c_9dc5;
    const PRIME: u32 = 0x0100_0193;
    let mut h = OFFSET;
    for part in ["&{", ip_text, " 0 10 10  false 30 0  }"] {
        for b in part.bytes() {
            h ^= u32::from(b);
            h = h.wrapping_mul(PRIME);
        }
    }
    h
}

/// Renders a hash as its label.
pub fn hash_label_text(hash: u32) -> String {
    use std::fmt::Write;
    let hex = format!("{hash:x}");
    let mut out = String::with_capacity(hex.len() * 2);
    for b in hex.bytes() {
        let _ = write!(out, "{b:02x}");
    }
    out
}

/// The hash a label names, if it is a hash label (the inverse of [`hash_label_text`]).
pub fn parse_hash_label(label: &str) -> Option<u32> {
    if !label.len().is_multiple_of(2) || label.len() > 16 || label.is_empty() {
        return None;
    }
    let mut text = String::with_capacity(label.len() / 2);
    for pair in label.as_bytes().chunks(2) {
        let s = std::str::from_utf8(pair).ok()?;
        let byte = u8::from_str_radix(s, 16).ok()?;
        text.push(char::from(byte));
    }
    let hash = u32::from_str_radix(&text, 16).ok()?;
    // Only the canonical spelling (no leading zeros, lowercase) names the hash.
    (hash_label_text(hash) == label).then_some(hash)
}

/// `items` without spare capacity: projections are held for the object's lifetime, and a
/// collected `Vec` starts at four entries (a megabyte per field at 10,000 objects).
fn shrunk<T>(mut items: Vec<T>) -> Vec<T> {
    items.shrink_to_fit();
    items
}

fn lower(s: &str) -> Arc<str> {
    s.to_ascii_lowercase().into()
}

fn port_u16(object: &str, port: Option<i32>, problems: &mut Vec<Problem>) -> Option<u16> {
    match port.map(u16::try_from) {
        Some(Ok(p)) if p != 0 => Some(p),
        other => {
            problems.push(Problem {
                object: object.to_owned(),
                what: format!("port {other:?} is not in 1..=65535"),
            });
            None
        }
    }
}

fn named_port(
    object: &str,
    name: Option<&str>,
    protocol: Option<&str>,
    port: Option<i32>,
    problems: &mut Vec<Problem>,
) -> Option<NamedPort> {
    let name = name.filter(|n| !n.is_empty())?;
    if !is_dns_label(name) {
        problems.push(Problem {
            object: object.to_owned(),
            what: format!("port name {name:?} is not a DNS label; no SRV record for it"),
        });
        return None;
    }
    let port = port_u16(object, port, problems)?;
    Some(NamedPort {
        name: intern(name),
        protocol: intern(protocol.unwrap_or("TCP")),
        port,
    })
}

/// True for a label that can stand in a DNS name (letters, digits, `-`, `_`; 1 to 63 bytes).
pub fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn parse_ip(object: &str, text: &str, problems: &mut Vec<Problem>) -> Option<IpAddr> {
    match text.trim().parse::<IpAddr>() {
        Ok(ip) => Some(ip),
        Err(_) => {
            problems.push(Problem {
                object: object.to_owned(),
                what: format!("{text:?} is not an IP address"),
            });
            None
        }
    }
}

fn key_of(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> Option<ObjectKey> {
    Some(ObjectKey::new(
        meta.namespace.as_deref().unwrap_or("default"),
        meta.name.as_deref().filter(|n| !n.is_empty())?,
    ))
}

/// Projects a Service. `None` when it has no name (nothing can be built).
pub fn service_info(svc: &Service, problems: &mut Vec<Problem>) -> Option<ServiceInfo> {
    let key = key_of(&svc.metadata)?;
    let object = format!("service {key}");
    let spec = svc.spec.clone().unwrap_or_default();
    let kind = if spec.type_.as_deref() == Some("ExternalName") {
        let target = spec.external_name.as_deref().unwrap_or("").trim();
        let target = target.trim_end_matches('.');
        if let Ok(ip) = target.parse::<IpAddr>() {
            ServiceKind::ExternalIp(ip)
        } else if target.is_empty() || !target.split('.').all(is_dns_label) {
            problems.push(Problem {
                object,
                what: format!("externalName {target:?} is not a DNS name"),
            });
            return None;
        } else {
            ServiceKind::ExternalName(lower(target))
        }
    } else {
        let texts: Vec<String> = match (&spec.cluster_ips, &spec.cluster_ip) {
            (Some(ips), _) if !ips.is_empty() => ips.clone(),
            (_, Some(ip)) => vec![ip.clone()],
            _ => Vec::new(),
        };
        if texts.iter().all(|t| t.is_empty() || t == "None") {
            ServiceKind::Headless
        } else {
            let ips: Vec<IpAddr> = texts
                .iter()
                .filter(|t| !t.is_empty() && *t != "None")
                .filter_map(|t| parse_ip(&object, t, problems))
                .collect();
            if ips.is_empty() {
                return None;
            }
            ServiceKind::ClusterIp(shrunk(ips))
        }
    };
    let ports: Vec<NamedPort> = spec
        .ports
        .iter()
        .flatten()
        .filter_map(|p| {
            named_port(
                &object,
                p.name.as_deref(),
                p.protocol.as_deref(),
                Some(p.port),
                problems,
            )
        })
        .collect();
    Some(ServiceInfo {
        key,
        kind,
        ports: intern_ports(&ports),
        publish_not_ready: spec.publish_not_ready_addresses.unwrap_or(false),
    })
}

/// Projects an EndpointSlice. `None` when it names no Service (slices not managed for a
/// Service have no DNS meaning) or has no name.
pub fn slice_info(slice: &EndpointSlice, problems: &mut Vec<Problem>) -> Option<SliceInfo> {
    let key = key_of(&slice.metadata)?;
    let service_name = slice.metadata.labels.as_ref()?.get(SERVICE_NAME_LABEL)?;
    let service = ObjectKey {
        namespace: key.namespace.clone(),
        name: lower(service_name),
    };
    let object = format!("endpointslice {key}");
    if !matches!(slice.address_type.as_str(), "IPv4" | "IPv6") {
        // FQDN slices are deprecated and carry no addresses DNS can serve.
        return Some(SliceInfo {
            key,
            service,
            endpoints: Vec::new(),
            hostnames: Vec::new(),
            ports: intern_ports(&[]),
        });
    }
    let mut endpoints = Vec::new();
    let mut hostnames = Vec::new();
    for ep in &slice.endpoints {
        let ready = ep.conditions.as_ref().and_then(|c| c.ready).unwrap_or(true);
        let hostname = endpoint_hostname(&object, ep.hostname.as_deref(), problems);
        for text in &ep.addresses {
            if let Some(ip) = parse_ip(&object, text, problems) {
                push_endpoint(
                    &mut endpoints,
                    &mut hostnames,
                    EndpointAddr {
                        ip,
                        hash: endpoint_hash(text),
                        ready,
                    },
                    hostname.as_ref(),
                );
            }
        }
    }
    let ports: Vec<NamedPort> = slice
        .ports
        .iter()
        .flatten()
        .filter_map(|p| {
            named_port(
                &object,
                p.name.as_deref(),
                p.protocol.as_deref(),
                p.port,
                problems,
            )
        })
        .collect();
    Some(SliceInfo {
        key,
        service,
        endpoints: shrunk(endpoints),
        hostnames: shrunk(hostnames),
        ports: intern_ports(&ports),
    })
}

/// Appends an address to a slice's `endpoints`, and its hostname, if any, to `hostnames`.
fn push_endpoint(
    endpoints: &mut Vec<EndpointAddr>,
    hostnames: &mut Vec<(u32, Arc<str>)>,
    endpoint: EndpointAddr,
    hostname: Option<&Arc<str>>,
) {
    // Past 2^32 addresses in one object, the rest go by their hash labels.
    if let (Some(hostname), Ok(index)) = (hostname, u32::try_from(endpoints.len())) {
        hostnames.push((index, hostname.clone()));
    }
    endpoints.push(endpoint);
}

fn endpoint_hostname(
    object: &str,
    hostname: Option<&str>,
    problems: &mut Vec<Problem>,
) -> Option<Arc<str>> {
    let h = hostname.filter(|h| !h.is_empty())?;
    if is_dns_label(h) {
        Some(lower(h))
    } else {
        problems.push(Problem {
            object: object.to_owned(),
            what: format!("hostname {h:?} is not a DNS label; using the hash label"),
        });
        None
    }
}

/// Projects a core/v1 Endpoints object into one slice-shaped record per subset, for clusters
/// without EndpointSlices. Its Service has the same name as the object.
pub fn endpoints_info(eps: &Endpoints, problems: &mut Vec<Problem>) -> Option<SliceInfo> {
    let key = key_of(&eps.metadata)?;
    let object = format!("endpoints {key}");
    let mut endpoints = Vec::new();
    let mut hostnames = Vec::new();
    let mut ports: Vec<NamedPort> = Vec::new();
    for subset in eps.subsets.iter().flatten() {
        let ready = subset.addresses.iter().flatten().map(|a| (a, true));
        let not_ready = subset
            .not_ready_addresses
            .iter()
            .flatten()
            .map(|a| (a, false));
        for (addr, ready) in ready.chain(not_ready) {
            let hostname = endpoint_hostname(&object, addr.hostname.as_deref(), problems);
            if let Some(ip) = parse_ip(&object, &addr.ip, problems) {
                push_endpoint(
                    &mut endpoints,
                    &mut hostnames,
                    EndpointAddr {
                        ip,
                        hash: endpoint_hash(&addr.ip),
                        ready,
                    },
                    hostname.as_ref(),
                );
            }
        }
        // Subsets differ in ports only when endpoints differ in ports, which DNS cannot express
        // per endpoint anyway; the union is what kube-dns served.
        for p in subset.ports.iter().flatten() {
            if let Some(np) = named_port(
                &object,
                p.name.as_deref(),
                p.protocol.as_deref(),
                Some(p.port),
                problems,
            ) && !ports.contains(&np)
            {
                ports.push(np);
            }
        }
    }
    Some(SliceInfo {
        service: key.clone(),
        key,
        endpoints: shrunk(endpoints),
        hostnames: shrunk(hostnames),
        ports: intern_ports(&ports),
    })
}

/// Projects a Pod (its IPs), for `--pod-records=verified`.
pub fn pod_info(pod: &Pod, problems: &mut Vec<Problem>) -> Option<PodInfo> {
    let key = key_of(&pod.metadata)?;
    let object = format!("pod {key}");
    let status = pod.status.as_ref();
    let mut texts: Vec<&str> = status
        .and_then(|s| s.pod_ips.as_ref())
        .map(|ips| ips.iter().map(|p| p.ip.as_str()).collect())
        .unwrap_or_default();
    if texts.is_empty()
        && let Some(ip) = status.and_then(|s| s.pod_ip.as_deref())
    {
        texts.push(ip);
    }
    let ips = texts
        .into_iter()
        .filter(|t| !t.is_empty())
        .filter_map(|t| parse_ip(&object, t, problems))
        .collect();
    Some(PodInfo { key, ips })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_labels_match_kube_dns() {
        // Values produced by the original kube-dns code.
        assert_eq!(hash_label("10.244.2.12"), "6462323962636362");
        assert_eq!(hash_label("10.96.0.1"), "6266366134663036");
        assert_eq!(hash_label("10.96.1.20"), "34366536636432");
        assert_eq!(hash_label("fd00:10:244:2::b"), "3134316363393936");
    }

    #[test]
    fn hash_labels_parse_back_only_in_canonical_form() {
        for ip in ["10.244.2.12", "10.96.1.20", "fd00:10:244:2::b"] {
            let h = endpoint_hash(ip);
            assert_eq!(parse_hash_label(&hash_label(ip)), Some(h));
        }
        // invalid
        for label in ["", "web-0", "zz", "3034366536636432", "6462323962636362aa"] {
            assert_eq!(parse_hash_label(label), None, "{label}");
        }
    }
}
