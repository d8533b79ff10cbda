//! The pod under churn for a bounded time: `make soak` (10 minutes, release build) and
//! `make soak-smoke` (1 minute, whatever profile is built). Ignored by a plain `cargo test`; run it
//! with `SOAK_SECONDS=60 cargo test -p integration-tests --test soak -- --ignored --nocapture`.
//!
//! The three real binaries run as processes on loopback, wired as
//! `manifests/kube-dns-recommended.yaml` wires them (kubedns NOTIFYs dnsmasq-rs; dnsmasq-rs caches
//! answers and denials), kubedns fed by the API stand-in. Meanwhile:
//! - Services (ClusterIP and headless) and their EndpointSlices are created, changed and deleted
//!   continuously; every change is recorded with the instants just before it was applied and just
//!   after, so the API state at any instant is known to within that window. The API's watches are
//!   also ended every 20 s, and its history expired once (a relist), as a real API server does;
//! - a mix of questions goes to dnsmasq-rs (the pod's port 53) at a steady fraction of the
//!   capacity measured at the start: Service addresses (ClusterIP, headless, and Services that
//!   exist throughout), SRV, PTR of Service and endpoint addresses, search-path misses
//!   (`<name>.<ns>.svc.cluster.local` that never exist), external names answered by a fake
//!   upstream, and large headless answers (about a hundred addresses) over TCP;
//! - each process's resident memory, threads and open descriptors are sampled every second.
//!
//! Afterwards it asserts, and prints and writes to `target/soak/report.{md,json}`:
//! - every answer is right for some API state in effect within `[sent - BOUND, received]`, where
//!   [`BOUND`] is the programming-latency bound: a change must reach answers through the cache
//!   within 5 s. Cached answers live [`TTL`] (10 s) and denials as long, so a cache that missed a
//!   NOTIFY serves a stale answer for up to 10 s and is caught; the bound is generous next to the
//!   measured lag (printed: the largest `sent - end of the state an answer matched`) because the
//!   2 cores are shared with other work. Record TTLs must not exceed what kubedns and the upstream
//!   gave. Wrong answers must be 0; each is printed with the states it was checked against;
//! - no SERVFAIL or other error rcodes (nothing injected reaches DNS: the API faults are
//!   absorbed by kubedns's last good records); no TCP timeouts; UDP timeouts at most 1 in 10,000
//!   queries plus the datagrams the kernel reports dropped (`/proc/net/udp`) at dnsmasq-rs's port
//!   and the generator's sockets. On loopback a datagram is only lost when a receive buffer is
//!   full, which a scheduling stall of a few milliseconds on a shared machine causes at these
//!   rates; such a loss is never seen by the binaries, and the report counts it apart. NOTIFY
//!   arrives on the same port, so an overloaded dnsmasq-rs loses those too and then serves stale
//!   answers until their TTL: one reason the load stays well below capacity;
//! - resident memory flat after warm-up: the median of the last quarter of samples at most 10%
//!   plus 2 MiB above the median of the second quarter; threads and descriptors likewise (median
//!   of the last quarter at most 2 threads, or 10% plus 8 descriptors, above the second
//!   quarter's).
//!
//! The large headless Services change about a hundred endpoints at once, more names than kubedns
//! NOTIFYs one by one: their PTR questions check that the NOTIFY standing for "everything" also
//! reaches the reverse zones.
//!
//! Settings (environment): `SOAK_SECONDS` (600), `SOAK_LOAD` (fraction of the measured capacity,
//! 0.3), `SOAK_MAX_QPS` (20000), `SOAK_CHURN` (API changes per second, 5), `SOAK_SEED` (random;
//! printed, and given again it repeats the same changes and questions, though not their timing).
//!
//! A test rather than a binary: it reuses the pod launcher and query helpers as the other
//! end-to-end tests do, in whichever profile cargo builds (so the smoke run uses the dev binaries
//! `cargo test` already built), and `#[ignore]` keeps it out of `cargo test`.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::{Name, RecordType};
use integration_tests::binaries::target_dir;
use integration_tests::client::{DNS_TIMEOUT, answer_lines, describe};
use integration_tests::pod::{Pod, Wiring};
use integration_tests::procfs::{Usage, udp_drops, usage};
use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};
use test_support::fixtures::{endpoint_slice, service};
use test_support::{FakeApiServer, FakeUpstream};
use tokio::net::UdpSocket;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// kubedns's record TTL (and SOA minimum, so the negative-cache time too).
const TTL: u32 = 10;
/// The upstream's TTL for external names.
const EXTERNAL_TTL: u32 = 5;
/// How long after a change an answer may still reflect the state before it.
const BOUND: Duration = Duration::from_secs(5);
const DOMAIN: &str = "cluster.local";
const NAMESPACES: [&str; 4] = ["soak-a", "soak-b", "soak-c", "soak-d"];
const SRV_PORT_NAME: &str = "http";
/// UDP sockets the open-loop generator sends from (IDs are per socket).
const UDP_SOCKETS: usize = 8;
/// Closed-loop askers while measuring capacity.
const CAPACITY_ASKERS: usize = 32;
const CAPACITY_TIME: Duration = Duration::from_secs(3);
/// Wrong answers printed in full.
const WRONG_SHOWN: usize = 50;

struct Settings {
    duration: Duration,
    load: f64,
    max_qps: f64,
    churn: f64,
    seed: u64,
}

impl Settings {
    fn from_env() -> Self {
        fn var<T: std::str::FromStr>(name: &str, default: T) -> T {
            match std::env::var(name) {
                Ok(text) => text
                    .parse()
                    .unwrap_or_else(|_| panic!("{name}={text} does not parse")),
                Err(_) => default,
            }
        }
        Self {
            duration: Duration::from_secs(var("SOAK_SECONDS", 600)),
            load: var("SOAK_LOAD", 0.3),
            max_qps: var("SOAK_MAX_QPS", 20_000.0),
            churn: var("SOAK_CHURN", 5.0),
            seed: var("SOAK_SEED", rand::random()),
        }
    }
}

// ---- The API state over time ----

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum SlotKind {
    /// A ClusterIP Service, created, re-addressed, re-ported and deleted.
    ClusterIp,
    /// A headless Service with a few hostnamed endpoints, all of it churned.
    Headless,
    /// A headless Service with about a hundred endpoints, asked over TCP.
    Large,
    /// A ClusterIP Service that exists throughout.
    Stable,
}

#[derive(Clone, Debug, PartialEq)]
struct Endpoint {
    ip: Ipv4Addr,
    hostname: String,
    ready: bool,
}

/// What the API holds for one Service name: the Service and its one EndpointSlice.
#[derive(Clone, Debug, Default, PartialEq)]
struct SlotState {
    /// `Some(None)` is headless.
    service: Option<Option<Ipv4Addr>>,
    port: u16,
    slice: Option<Vec<Endpoint>>,
}

#[derive(Debug)]
struct Version {
    /// Just before the change was applied.
    from: Instant,
    /// Just after the next change was applied; `None` while this is the latest.
    until: Option<Instant>,
    state: SlotState,
    what: &'static str,
}

#[derive(Debug)]
struct Slot {
    kind: SlotKind,
    namespace: &'static str,
    name: String,
    index: u8,
    history: Vec<Version>,
}

impl Slot {
    fn fqdn(&self) -> String {
        format!("{}.{}.svc.{DOMAIN}.", self.name, self.namespace)
    }

    fn current(&self) -> &SlotState {
        &self.history.last().expect("a slot has a history").state
    }

    /// Addresses this slot's Service may have.
    fn cluster_ip_pool(&self) -> Vec<Ipv4Addr> {
        (1..=4)
            .map(|h| Ipv4Addr::new(10, 100, self.index, h))
            .collect()
    }

    /// Addresses its endpoints may have.
    fn endpoint_pool(&self) -> Vec<Ipv4Addr> {
        match self.kind {
            SlotKind::Large => (1..=200)
                .map(|h| Ipv4Addr::new(10, 102, self.index, h))
                .collect(),
            _ => (1..=8)
                .map(|h| Ipv4Addr::new(10, 101, self.index, h))
                .collect(),
        }
    }
}

/// Every slot's history, shared by the changer (writes) and the checkers (read).
struct World {
    slots: RwLock<Vec<Slot>>,
}

impl World {
    fn read(&self) -> std::sync::RwLockReadGuard<'_, Vec<Slot>> {
        self.slots.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Vec<Slot>> {
        self.slots.write().unwrap_or_else(PoisonError::into_inner)
    }

    /// Records `state` as the next version of `slot`, runs `apply` (the API call), then closes
    /// the previous version.
    fn change(&self, slot: usize, state: SlotState, what: &'static str, apply: impl FnOnce()) {
        self.write()[slot].history.push(Version {
            from: Instant::now(),
            until: None,
            state,
            what,
        });
        apply();
        let now = Instant::now();
        let mut slots = self.write();
        let history = &mut slots[slot].history;
        let previous = history.len() - 2;
        history[previous].until = Some(now);
    }
}

// ---- Questions and what makes an answer right ----

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Kind {
    ClusterIpA,
    StableA,
    ClusterIpSrv,
    HeadlessA,
    Ptr,
    SearchMiss,
    External,
    LargeTcp,
}

impl Kind {
    const ALL: [Kind; 8] = [
        Kind::ClusterIpA,
        Kind::StableA,
        Kind::ClusterIpSrv,
        Kind::HeadlessA,
        Kind::Ptr,
        Kind::SearchMiss,
        Kind::External,
        Kind::LargeTcp,
    ];

    fn label(self) -> &'static str {
        match self {
            Kind::ClusterIpA => "A, churned ClusterIP",
            Kind::StableA => "A, ClusterIP existing throughout",
            Kind::ClusterIpSrv => "SRV, churned ClusterIP",
            Kind::HeadlessA => "A, churned headless",
            Kind::Ptr => "PTR, Service and endpoint addresses",
            Kind::SearchMiss => "search-path miss (NXDOMAIN)",
            Kind::External => "external name (upstream)",
            Kind::LargeTcp => "A, large headless over TCP",
        }
    }

    /// Share of the UDP load (TCP is paced apart).
    fn weight(self) -> u32 {
        match self {
            Kind::ClusterIpA => 20,
            Kind::StableA => 10,
            Kind::ClusterIpSrv => 10,
            Kind::HeadlessA => 15,
            Kind::Ptr => 15,
            Kind::SearchMiss => 15,
            Kind::External => 15,
            Kind::LargeTcp => 0,
        }
    }
}

#[derive(Clone, Debug)]
enum Check {
    Address(usize),
    Srv(usize),
    Ptr(usize, Ipv4Addr),
    Miss,
    External(IpAddr),
}

struct Target {
    kind: Kind,
    name: String,
    qtype: RecordType,
    check: Check,
    /// The query on the wire; its first two bytes (the ID) are overwritten per send.
    wire: Vec<u8>,
}

/// The answer the API state calls for: rcode and sorted answer lines.
fn expected(check: &Check, slot: &Slot, state: &SlotState) -> (ResponseCode, Vec<String>) {
    let nx = (ResponseCode::NXDomain, Vec::new());
    let fqdn = slot.fqdn();
    let ready = |ip: Option<Ipv4Addr>| -> Vec<&Endpoint> {
        state
            .slice
            .iter()
            .flatten()
            .filter(|e| e.ready && ip.is_none_or(|ip| e.ip == ip))
            .collect()
    };
    let lines = |mut lines: Vec<String>| {
        lines.sort();
        (ResponseCode::NoError, lines)
    };
    match (check, state.service) {
        (_, None) => nx,
        (Check::Address(_), Some(Some(ip))) => lines(vec![format!("{fqdn} A {ip}")]),
        (Check::Address(_), Some(None)) => {
            let ready = ready(None);
            if ready.is_empty() {
                nx
            } else {
                lines(ready.iter().map(|e| format!("{fqdn} A {}", e.ip)).collect())
            }
        }
        (Check::Srv(_), Some(Some(_))) => lines(vec![format!(
            "_{SRV_PORT_NAME}._tcp.{fqdn} SRV 10 100 {} {fqdn}",
            state.port
        )]),
        (Check::Ptr(_, ip), Some(Some(cluster_ip))) if *ip == cluster_ip => {
            lines(vec![format!("{} PTR {fqdn}", reverse(*ip))])
        }
        (Check::Ptr(_, ip), Some(None)) => match ready(Some(*ip)).first() {
            Some(e) => lines(vec![format!("{} PTR {}.{fqdn}", reverse(*ip), e.hostname)]),
            None => nx,
        },
        _ => nx,
    }
}

fn reverse(ip: Ipv4Addr) -> String {
    Name::from(IpAddr::V4(ip)).to_ascii()
}

enum Verdict {
    /// Right; `lag` is how long before `sent` the matching state ended (zero if current).
    Right {
        lag: Duration,
    },
    Wrong(String),
    ServFail,
    OtherError(String),
}

/// Judges `reply` to `target`, sent and received at the given instants.
fn judge(
    world: &World,
    t0: Instant,
    target: &Target,
    reply: &Message,
    sent: Instant,
    received: Instant,
) -> Verdict {
    let rcode = reply.metadata.response_code;
    if rcode == ResponseCode::ServFail {
        return Verdict::ServFail;
    }
    if rcode != ResponseCode::NoError && rcode != ResponseCode::NXDomain {
        return Verdict::OtherError(format!(
            "{} {}: {}",
            target.name,
            target.qtype,
            describe(reply)
        ));
    }
    let at = |i: Instant| i.saturating_duration_since(t0).as_secs_f64();
    let header = || {
        format!(
            "{} {} sent at {:.3}s, received at {:.3}s: {}{}",
            target.name,
            target.qtype,
            at(sent),
            at(received),
            describe(reply),
            if reply.metadata.truncation {
                " (TC)"
            } else {
                ""
            }
        )
    };
    let question_ok = reply.queries.first().is_some_and(|q| {
        q.query_type() == target.qtype && q.name().to_ascii().eq_ignore_ascii_case(&target.name)
    });
    if !question_ok || reply.metadata.truncation {
        return Verdict::Wrong(format!("{}: not an answer to the question", header()));
    }
    let ttl_cap = if matches!(target.check, Check::External(_)) {
        EXTERNAL_TTL
    } else {
        TTL
    };
    if let Some(record) = reply.answers.iter().find(|r| r.ttl > ttl_cap) {
        return Verdict::Wrong(format!(
            "{}: TTL {} above the {ttl_cap} s given",
            header(),
            record.ttl
        ));
    }
    let got = (rcode, answer_lines(reply));
    let slot_index = match &target.check {
        Check::Miss => {
            return if got == (ResponseCode::NXDomain, Vec::new()) {
                Verdict::Right {
                    lag: Duration::ZERO,
                }
            } else {
                Verdict::Wrong(format!("{}: expected NXDOMAIN", header()))
            };
        }
        Check::External(ip) => {
            let kind = if ip.is_ipv4() { "A" } else { "AAAA" };
            let want = vec![format!("{} {kind} {ip}", target.name)];
            return if got == (ResponseCode::NoError, want.clone()) {
                Verdict::Right {
                    lag: Duration::ZERO,
                }
            } else {
                Verdict::Wrong(format!("{}: expected {want:?}", header()))
            };
        }
        Check::Address(slot) | Check::Srv(slot) | Check::Ptr(slot, _) => *slot,
    };
    let slots = world.read();
    let slot = &slots[slot_index];
    let window_start = sent.checked_sub(BOUND).unwrap_or(t0);
    let mut lag: Option<Duration> = None;
    // Newest first; stop at the first version that ended before the window.
    for version in slot.history.iter().rev() {
        if version.until.is_some_and(|until| until < window_start) {
            break;
        }
        if version.from > received {
            continue;
        }
        if expected(&target.check, slot, &version.state) == got {
            let this = version.until.map_or(Duration::ZERO, |until| {
                sent.saturating_duration_since(until)
            });
            lag = Some(lag.map_or(this, |l| l.min(this)));
        }
    }
    match lag {
        Some(lag) => Verdict::Right { lag },
        None => {
            let mut detail = format!(
                "{}\n    not right for any API state within [sent - {BOUND:?}, received]; {} {}:",
                header(),
                slot.namespace,
                slot.name
            );
            for version in slot.history.iter().rev().take(8) {
                let _ = write!(
                    detail,
                    "\n    from {:.3}s until {}: {} -> {:?}",
                    at(version.from),
                    version
                        .until
                        .map_or("now".to_owned(), |u| format!("{:.3}s", at(u))),
                    version.what,
                    expected(&target.check, slot, &version.state)
                );
            }
            Verdict::Wrong(detail)
        }
    }
}

// ---- Tallies ----

#[derive(Clone, Debug, Default)]
struct KindStats {
    sent: u64,
    answered: u64,
    right: u64,
    wrong: u64,
    servfail: u64,
    other_errors: u64,
    timeouts: u64,
    nxdomain: u64,
    /// Right only for a state that had ended before the question was sent.
    behind: u64,
    max_lag: Duration,
    latency_sum: Duration,
}

#[derive(Default)]
struct Tally {
    kinds: HashMap<Kind, KindStats>,
    wrong: Vec<String>,
    errors: Vec<String>,
    /// The answer furthest behind the API: lag and description.
    slowest: Option<(Duration, String)>,
}

struct Shared {
    world: World,
    targets: Vec<Target>,
    tally: Mutex<Tally>,
    t0: Instant,
}

impl Shared {
    fn tally(&self) -> std::sync::MutexGuard<'_, Tally> {
        self.tally.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn sent(&self, kind: Kind) {
        self.tally().kinds.entry(kind).or_default().sent += 1;
    }

    fn timed_out(&self, kind: Kind) {
        self.tally().kinds.entry(kind).or_default().timeouts += 1;
    }

    /// Judges and counts one reply.
    fn answered(&self, target: &Target, reply: &Message, sent: Instant, received: Instant) {
        let verdict = judge(&self.world, self.t0, target, reply, sent, received);
        let mut tally = self.tally();
        let stats = tally.kinds.entry(target.kind).or_default();
        stats.answered += 1;
        stats.latency_sum += received - sent;
        if reply.metadata.response_code == ResponseCode::NXDomain {
            stats.nxdomain += 1;
        }
        match verdict {
            Verdict::Right { lag } => {
                stats.right += 1;
                if lag > Duration::ZERO {
                    stats.behind += 1;
                }
                stats.max_lag = stats.max_lag.max(lag);
                if tally.slowest.as_ref().is_none_or(|(max, _)| lag > *max) {
                    tally.slowest = Some((
                        lag,
                        format!(
                            "{} {} sent at {:.3}s: {} (the state it matched ended {} ms before)",
                            target.name,
                            target.qtype,
                            sent.saturating_duration_since(self.t0).as_secs_f64(),
                            describe(reply),
                            lag.as_millis()
                        ),
                    ));
                }
            }
            Verdict::Wrong(detail) => {
                stats.wrong += 1;
                if tally.wrong.len() < WRONG_SHOWN {
                    tally.wrong.push(detail);
                }
            }
            Verdict::ServFail => {
                stats.servfail += 1;
                if tally.errors.len() < WRONG_SHOWN {
                    tally
                        .errors
                        .push(format!("{} {}: SERVFAIL", target.name, target.qtype));
                }
            }
            Verdict::OtherError(detail) => {
                stats.other_errors += 1;
                if tally.errors.len() < WRONG_SHOWN {
                    tally.errors.push(detail);
                }
            }
        }
    }
}

// ---- Setting up ----

fn build_slots() -> Vec<Slot> {
    let mut slots = Vec::new();
    let mut add = |kind: SlotKind, count: usize, prefix: &str| {
        for i in 0..count {
            let index = u8::try_from(slots.len() + 1).expect("fewer than 255 slots");
            slots.push(Slot {
                kind,
                namespace: NAMESPACES[i % NAMESPACES.len()],
                name: format!("{prefix}-{i}"),
                index,
                history: Vec::new(),
            });
        }
    };
    add(SlotKind::ClusterIp, 40, "svc");
    add(SlotKind::Headless, 24, "hl");
    add(SlotKind::Large, 3, "big");
    add(SlotKind::Stable, 8, "stable");
    slots
}

fn service_object(slot: &Slot, state: &SlotState) -> Value {
    let builder = service(slot.namespace, &slot.name).port(SRV_PORT_NAME, state.port, "TCP");
    match state.service {
        Some(Some(ip)) => builder.cluster_ip(&ip.to_string()),
        _ => builder.headless(),
    }
    .build()
}

fn slice_name(slot: &Slot) -> String {
    format!("{}-soak", slot.name)
}

fn slice_object(slot: &Slot, endpoints: &[Endpoint], port: u16) -> Value {
    endpoints
        .iter()
        .fold(
            endpoint_slice(slot.namespace, &slice_name(slot), &slot.name)
                .address_type("IPv4")
                .port(SRV_PORT_NAME, port, "TCP"),
            |b, e| b.endpoint_with_hostname(&e.ip.to_string(), &e.hostname, e.ready),
        )
        .build()
}

fn random_endpoints(slot: &Slot, rng: &mut StdRng) -> Vec<Endpoint> {
    let pool = slot.endpoint_pool();
    let (count, not_ready) = match slot.kind {
        SlotKind::Large => (rng.random_range(90..=140), 0.05),
        _ => (rng.random_range(1..=6), 0.15),
    };
    let mut ips: Vec<Ipv4Addr> = pool.choose_multiple(rng, count).copied().collect();
    ips.sort();
    ips.into_iter()
        .map(|ip| Endpoint {
            ip,
            hostname: format!("ep-{}", ip.octets()[3]),
            ready: !rng.random_bool(not_ready),
        })
        .collect()
}

fn random_cluster_ip(slot: &Slot, rng: &mut StdRng) -> Ipv4Addr {
    *slot.cluster_ip_pool().choose(rng).expect("a pool")
}

/// The starting state: every Stable and Large slot and about half of the others exist.
fn initial_state(slot: &Slot, rng: &mut StdRng) -> SlotState {
    let port = rng.random_range(1000..9000);
    let exists = matches!(slot.kind, SlotKind::Stable | SlotKind::Large) || rng.random_bool(0.5);
    match (exists, slot.kind) {
        (false, _) => SlotState::default(),
        (true, SlotKind::ClusterIp | SlotKind::Stable) => SlotState {
            service: Some(Some(random_cluster_ip(slot, rng))),
            port,
            slice: None,
        },
        (true, SlotKind::Headless | SlotKind::Large) => SlotState {
            service: Some(None),
            port,
            slice: Some(random_endpoints(slot, rng)),
        },
    }
}

fn apply_state(api: &FakeApiServer, slot: &Slot, state: &SlotState) {
    if state.service.is_some() {
        api.apply(service_object(slot, state));
    }
    if let Some(endpoints) = &state.slice {
        api.apply(slice_object(slot, endpoints, state.port));
    }
}

fn encode(name: &str, qtype: RecordType) -> Vec<u8> {
    kdns_net::query_message(name, qtype)
        .and_then(|m| m.to_vec().map_err(kdns_net::ClientError::Encode))
        .unwrap_or_else(|e| panic!("encode {name} {qtype}: {e}"))
}

fn build_targets(slots: &[Slot]) -> Vec<Target> {
    let mut targets = Vec::new();
    let mut add = |kind: Kind, name: String, qtype: RecordType, check: Check| {
        let wire = encode(&name, qtype);
        targets.push(Target {
            kind,
            name,
            qtype,
            check,
            wire,
        });
    };
    for (i, slot) in slots.iter().enumerate() {
        let fqdn = slot.fqdn();
        match slot.kind {
            SlotKind::ClusterIp | SlotKind::Stable => {
                let kind = if slot.kind == SlotKind::Stable {
                    Kind::StableA
                } else {
                    Kind::ClusterIpA
                };
                add(kind, fqdn.clone(), RecordType::A, Check::Address(i));
                if slot.kind == SlotKind::ClusterIp {
                    add(
                        Kind::ClusterIpSrv,
                        format!("_{SRV_PORT_NAME}._tcp.{fqdn}"),
                        RecordType::SRV,
                        Check::Srv(i),
                    );
                }
                for ip in slot.cluster_ip_pool() {
                    add(Kind::Ptr, reverse(ip), RecordType::PTR, Check::Ptr(i, ip));
                }
            }
            SlotKind::Headless => {
                add(Kind::HeadlessA, fqdn, RecordType::A, Check::Address(i));
                for ip in slot.endpoint_pool() {
                    add(Kind::Ptr, reverse(ip), RecordType::PTR, Check::Ptr(i, ip));
                }
            }
            SlotKind::Large => {
                add(Kind::LargeTcp, fqdn, RecordType::A, Check::Address(i));
                for ip in slot.endpoint_pool().into_iter().step_by(10) {
                    add(Kind::Ptr, reverse(ip), RecordType::PTR, Check::Ptr(i, ip));
                }
            }
        }
    }
    // Search-path misses, as a pod's resolver walks `<ns>.svc`, `svc` and the cluster domain:
    // names never created, and external names with a namespace's search suffix.
    for ns in NAMESPACES {
        for i in 0..150 {
            add(
                Kind::SearchMiss,
                format!("nx-{i}.{ns}.svc.{DOMAIN}."),
                RecordType::A,
                Check::Miss,
            );
        }
        for i in 0..50 {
            add(
                Kind::SearchMiss,
                format!("host-{i}.example.com.{ns}.svc.{DOMAIN}."),
                RecordType::A,
                Check::Miss,
            );
        }
    }
    for i in 0..200 {
        let name = format!("host-{i}.example.com.");
        let (v4, v6) = FakeUpstream::addresses_of(&name);
        if i % 4 == 0 {
            add(
                Kind::External,
                name,
                RecordType::AAAA,
                Check::External(v6.into()),
            );
        } else {
            add(
                Kind::External,
                name,
                RecordType::A,
                Check::External(v4.into()),
            );
        }
    }
    targets
}

/// Picks UDP targets by [`Kind::weight`].
struct Picker {
    by_kind: Vec<(u32, Vec<usize>)>,
    total: u32,
}

impl Picker {
    fn new(targets: &[Target]) -> Self {
        let by_kind: Vec<(u32, Vec<usize>)> = Kind::ALL
            .iter()
            .filter(|k| k.weight() > 0)
            .map(|k| {
                let indices: Vec<usize> = (0..targets.len())
                    .filter(|i| targets[*i].kind == *k)
                    .collect();
                assert!(!indices.is_empty(), "no targets of kind {k:?}");
                (k.weight(), indices)
            })
            .collect();
        let total = by_kind.iter().map(|(w, _)| w).sum();
        Self { by_kind, total }
    }

    fn pick(&self, rng: &mut StdRng) -> usize {
        let mut roll = rng.random_range(0..self.total);
        for (weight, indices) in &self.by_kind {
            if roll < *weight {
                return *indices.choose(rng).expect("non-empty");
            }
            roll -= weight;
        }
        unreachable!("the roll is below the total")
    }
}

// ---- Load ----

/// Closed-loop askers for [`CAPACITY_TIME`]: answers per second, each judged as under load
/// (the generator shares the machine with the pod).
async fn measure_capacity(server: SocketAddr, shared: &Arc<Shared>, seed: u64) -> f64 {
    let picker = Arc::new(Picker::new(&shared.targets));
    let started = Instant::now();
    let deadline = started + CAPACITY_TIME;
    let mut askers = Vec::new();
    for asker in 0..CAPACITY_ASKERS {
        let shared = Arc::clone(shared);
        let picker = Arc::clone(&picker);
        askers.push(tokio::spawn(async move {
            let mut rng = StdRng::seed_from_u64(seed ^ (asker as u64 + 1));
            let socket = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))
                .await
                .expect("bind");
            socket.connect(server).await.expect("connect");
            let mut buf = vec![0u8; 4096];
            let mut answers = 0u64;
            let mut id = 0u16;
            while Instant::now() < deadline {
                let target = &shared.targets[picker.pick(&mut rng)];
                id = id.wrapping_add(1);
                let mut wire = target.wire.clone();
                wire[..2].copy_from_slice(&id.to_be_bytes());
                let sent = Instant::now();
                if socket.send(&wire).await.is_err() {
                    continue;
                }
                let until = sent + Duration::from_secs(1);
                while let Ok(Ok(len)) = tokio::time::timeout_at(until, socket.recv(&mut buf)).await
                {
                    if len >= 2 && buf[..2] == id.to_be_bytes() {
                        // Judged as under load, so that the capacity includes that work.
                        if let Ok(reply) = Message::from_vec(&buf[..len]) {
                            shared.answered(target, &reply, sent, Instant::now());
                        }
                        answers += 1;
                        break;
                    }
                }
            }
            answers
        }));
    }
    let mut answers = 0;
    for asker in askers {
        answers += asker.await.expect("capacity asker");
    }
    answers as f64 / started.elapsed().as_secs_f64()
}

struct Pending {
    target: usize,
    sent: Instant,
}

type PendingMap = Mutex<HashMap<u16, Pending>>;

/// Sends UDP questions at `qps` until `stop`, from [`UDP_SOCKETS`] sockets; each socket's
/// receiver judges its replies. Returns the replies the kernel dropped on those sockets.
async fn udp_load(
    server: SocketAddr,
    shared: Arc<Shared>,
    qps: f64,
    seed: u64,
    stop: CancellationToken,
) -> u64 {
    let mut sockets = Vec::new();
    let mut receivers = Vec::new();
    let receiving = CancellationToken::new();
    for _ in 0..UDP_SOCKETS {
        let socket = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .expect("bind");
        socket.connect(server).await.expect("connect");
        let socket = Arc::new(socket);
        let pending: Arc<PendingMap> = Arc::default();
        receivers.push(tokio::spawn(receive(
            Arc::clone(&socket),
            Arc::clone(&pending),
            Arc::clone(&shared),
            receiving.clone(),
        )));
        sockets.push((socket, pending, 0u16));
    }
    let picker = Picker::new(&shared.targets);
    let mut rng = StdRng::seed_from_u64(seed);
    let started = Instant::now();
    let mut sent_total = 0u64;
    let mut next_socket = 0;
    let mut tick = tokio::time::interval(Duration::from_millis(5));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut last_reap = Instant::now();
    while !stop.is_cancelled() {
        tick.tick().await;
        let due = (started.elapsed().as_secs_f64() * qps) as u64;
        while sent_total < due {
            sent_total += 1;
            let index = picker.pick(&mut rng);
            let (socket, pending, next_id) = &mut sockets[next_socket];
            next_socket = (next_socket + 1) % UDP_SOCKETS;
            let mut wire = shared.targets[index].wire.clone();
            let id = {
                let mut pending = pending.lock().unwrap_or_else(PoisonError::into_inner);
                // IDs still awaiting a reply are skipped; 65536 per socket is far above what
                // is in flight.
                while pending.contains_key(next_id) {
                    *next_id = next_id.wrapping_add(1);
                }
                let id = *next_id;
                *next_id = next_id.wrapping_add(1);
                pending.insert(
                    id,
                    Pending {
                        target: index,
                        sent: Instant::now(),
                    },
                );
                id
            };
            wire[..2].copy_from_slice(&id.to_be_bytes());
            shared.sent(shared.targets[index].kind);
            if let Err(e) = socket.send(&wire).await {
                panic!("send to dnsmasq-rs: {e}");
            }
        }
        if last_reap.elapsed() >= Duration::from_millis(500) {
            last_reap = Instant::now();
            reap(&sockets, &shared, DNS_TIMEOUT);
        }
    }
    // Let replies in flight arrive, then count what is left as timed out.
    let drain_until = Instant::now() + DNS_TIMEOUT;
    while Instant::now() < drain_until
        && sockets
            .iter()
            .any(|(_, p, _)| !p.lock().unwrap_or_else(PoisonError::into_inner).is_empty())
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    receiving.cancel();
    for receiver in receivers {
        receiver.await.expect("receiver");
    }
    reap(&sockets, &shared, Duration::ZERO);
    sockets
        .iter()
        .filter_map(|(socket, _, _)| socket.local_addr().ok())
        .map(|addr| udp_drops(addr.port()).unwrap_or(0))
        .sum()
}

/// Counts questions waiting longer than `older_than` as timed out.
fn reap(sockets: &[(Arc<UdpSocket>, Arc<PendingMap>, u16)], shared: &Shared, older_than: Duration) {
    let now = Instant::now();
    for (_, pending, _) in sockets {
        let mut pending = pending.lock().unwrap_or_else(PoisonError::into_inner);
        pending.retain(|_, p| {
            let expired = now.saturating_duration_since(p.sent) >= older_than;
            if expired {
                shared.timed_out(shared.targets[p.target].kind);
            }
            !expired
        });
    }
}

async fn receive(
    socket: Arc<UdpSocket>,
    pending: Arc<PendingMap>,
    shared: Arc<Shared>,
    stop: CancellationToken,
) {
    let mut buf = vec![0u8; 65535];
    loop {
        let len = tokio::select! {
            () = stop.cancelled() => return,
            received = socket.recv(&mut buf) => match received {
                Ok(len) => len,
                // ICMP errors surface on connected sockets; the question then times out.
                Err(_) => continue,
            },
        };
        let received = Instant::now();
        let Some(id) = buf.get(..2).map(|b| u16::from_be_bytes([b[0], b[1]])) else {
            continue;
        };
        let Some(asked) = pending
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&id)
        else {
            // Already counted as timed out.
            continue;
        };
        let target = &shared.targets[asked.target];
        match Message::from_vec(&buf[..len]) {
            Ok(reply) => shared.answered(target, &reply, asked.sent, received),
            Err(e) => {
                let mut tally = shared.tally();
                tally.kinds.entry(target.kind).or_default().other_errors += 1;
                tally.errors.push(format!(
                    "{} {}: undecodable reply: {e}",
                    target.name, target.qtype
                ));
            }
        }
    }
}

/// Asks the large headless names over TCP, a new connection per question, at `qps`.
async fn tcp_load(server: SocketAddr, shared: Arc<Shared>, qps: f64, stop: CancellationToken) {
    let large: Vec<usize> = (0..shared.targets.len())
        .filter(|i| shared.targets[*i].kind == Kind::LargeTcp)
        .collect();
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / qps));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut n = 0usize;
    while !stop.is_cancelled() {
        tick.tick().await;
        let target = &shared.targets[large[n % large.len()]];
        n += 1;
        let query = match Message::from_vec(&target.wire) {
            Ok(query) => query,
            Err(e) => panic!("decode our own query: {e}"),
        };
        shared.sent(target.kind);
        let sent = Instant::now();
        match kdns_net::exchange_tcp(server, &query, DNS_TIMEOUT).await {
            Ok(reply) => shared.answered(target, &reply, sent, Instant::now()),
            Err(kdns_net::ClientError::Timeout { .. }) => shared.timed_out(target.kind),
            Err(e) => {
                let mut tally = shared.tally();
                tally.kinds.entry(target.kind).or_default().other_errors += 1;
                tally.errors.push(format!("{} over TCP: {e}", target.name));
            }
        }
    }
}

// ---- Churn ----

#[derive(Debug, Default)]
struct ChurnCounts {
    changes: u64,
    watch_closes: u64,
    history_expiries: u64,
}

/// One random change to one random churned slot.
fn churn_once(api: &FakeApiServer, world: &World, rng: &mut StdRng) {
    let (index, slot, current) = {
        let slots = world.read();
        let candidates: Vec<usize> = (0..slots.len())
            .filter(|i| slots[*i].kind != SlotKind::Stable)
            .collect();
        let index = *candidates.choose(rng).expect("churned slots");
        let slot = &slots[index];
        // A copy without the history: the lock is not held while the API changes.
        (
            index,
            Slot {
                kind: slot.kind,
                namespace: slot.namespace,
                name: slot.name.clone(),
                index: slot.index,
                history: Vec::new(),
            },
            slot.current().clone(),
        )
    };
    let delete_service = |what| {
        world.change(
            index,
            SlotState {
                service: None,
                ..current.clone()
            },
            what,
            || {
                api.delete("v1", "Service", slot.namespace, &slot.name);
            },
        );
    };
    let delete_slice = |state: SlotState, what| {
        world.change(
            index,
            SlotState {
                slice: None,
                ..state
            },
            what,
            || {
                api.delete(
                    "discovery.k8s.io/v1",
                    "EndpointSlice",
                    slot.namespace,
                    &slice_name(&slot),
                );
            },
        );
    };
    let put_service = |state: SlotState, what| {
        let object = service_object(&slot, &state);
        world.change(index, state, what, || {
            api.apply(object);
        });
    };
    let put_slice = |state: SlotState, what| {
        let object = slice_object(
            &slot,
            state.slice.as_deref().unwrap_or_default(),
            state.port,
        );
        world.change(index, state, what, || {
            api.apply(object);
        });
    };
    match (slot.kind, current.service) {
        (SlotKind::ClusterIp, None) => put_service(
            SlotState {
                service: Some(Some(random_cluster_ip(&slot, rng))),
                port: rng.random_range(1000..9000),
                slice: None,
            },
            "Service created",
        ),
        (SlotKind::ClusterIp, Some(_)) => match rng.random_range(0..4) {
            0 => put_service(
                SlotState {
                    service: Some(Some(random_cluster_ip(&slot, rng))),
                    ..current.clone()
                },
                "clusterIP changed",
            ),
            1 => put_service(
                SlotState {
                    port: rng.random_range(1000..9000),
                    ..current.clone()
                },
                "port changed",
            ),
            _ => delete_service("Service deleted"),
        },
        (SlotKind::Headless | SlotKind::Large, None) => {
            let state = SlotState {
                service: Some(None),
                port: rng.random_range(1000..9000),
                slice: current.slice.clone(),
            };
            put_service(state.clone(), "headless Service created");
            if state.slice.is_none() {
                put_slice(
                    SlotState {
                        slice: Some(random_endpoints(&slot, rng)),
                        ..state
                    },
                    "EndpointSlice created",
                );
            }
        }
        (SlotKind::Headless | SlotKind::Large, Some(_)) => {
            let roll = rng.random_range(0..20);
            if current.slice.is_none() {
                put_slice(
                    SlotState {
                        slice: Some(random_endpoints(&slot, rng)),
                        ..current.clone()
                    },
                    "EndpointSlice created",
                );
            } else if roll < 13 || (slot.kind == SlotKind::Large && roll < 17) {
                put_slice(
                    SlotState {
                        slice: Some(random_endpoints(&slot, rng)),
                        ..current.clone()
                    },
                    "endpoints changed",
                );
            } else if roll < 16 {
                delete_slice(current.clone(), "EndpointSlice deleted");
            } else {
                delete_service("headless Service deleted");
                delete_slice(
                    SlotState {
                        service: None,
                        ..current.clone()
                    },
                    "EndpointSlice deleted",
                );
            }
        }
        (SlotKind::Stable, _) => unreachable!("stable slots are not churned"),
    }
}

async fn churn(
    api: Arc<FakeApiServer>,
    shared: Arc<Shared>,
    per_second: f64,
    duration: Duration,
    seed: u64,
    stop: CancellationToken,
) -> ChurnCounts {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut counts = ChurnCounts::default();
    let started = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / per_second));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_close = Instant::now();
    let mut expired = false;
    while !stop.is_cancelled() {
        tick.tick().await;
        churn_once(&api, &shared.world, &mut rng);
        counts.changes += 1;
        if last_close.elapsed() >= Duration::from_secs(20) {
            last_close = Instant::now();
            api.close_watches();
            counts.watch_closes += 1;
        }
        if !expired && started.elapsed() >= duration / 2 {
            expired = true;
            api.expire_history();
            counts.history_expiries += 1;
        }
    }
    counts
}

// ---- Resources ----

/// Seconds since the load started, and the reading then.
type Readings = Vec<(f64, Usage)>;

/// A measure's name, its samples, and the highest last-quarter median allowed for a given
/// second-quarter median.
type Series = (&'static str, Vec<u64>, fn(u64) -> u64);

#[derive(Debug, Default)]
struct Samples {
    /// Per process: name, pid, readings.
    by_process: Vec<(&'static str, u32, Readings)>,
    failures: Vec<String>,
}

async fn sample_resources(
    pids: Vec<(&'static str, u32)>,
    t0: Instant,
    stop: CancellationToken,
) -> Samples {
    let mut samples = Samples {
        by_process: pids.iter().map(|(n, p)| (*n, *p, Vec::new())).collect(),
        failures: Vec::new(),
    };
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    while !stop.is_cancelled() {
        tick.tick().await;
        let at = t0.elapsed().as_secs_f64();
        for (name, pid, readings) in &mut samples.by_process {
            match usage(*pid) {
                Ok(reading) => readings.push((at, reading)),
                Err(e) => {
                    if samples.failures.len() < 10 {
                        samples
                            .failures
                            .push(format!("{name} (pid {pid}) at {at:.0}s: {e}"));
                    }
                }
            }
        }
    }
    samples
}

fn median(mut values: Vec<u64>) -> u64 {
    values.sort_unstable();
    values.get(values.len() / 2).copied().unwrap_or(0)
}

/// Median of the second and of the last quarter of `values`.
fn quarters(values: &[u64]) -> (u64, u64) {
    let n = values.len();
    let second = values[n / 4..n / 2].to_vec();
    let last = values[n * 3 / 4..].to_vec();
    (median(second), median(last))
}

struct Flatness {
    process: &'static str,
    what: &'static str,
    first: u64,
    second_quarter: u64,
    last_quarter: u64,
    end: u64,
    allowed: u64,
}

impl Flatness {
    fn flat(&self) -> bool {
        self.last_quarter <= self.allowed
    }
}

fn flatness(samples: &Samples) -> Vec<Flatness> {
    let mut out = Vec::new();
    for (process, _, readings) in &samples.by_process {
        if readings.len() < 8 {
            continue;
        }
        let series: [Series; 3] = [
            (
                "RSS KiB",
                readings.iter().map(|(_, u)| u.rss_kib).collect(),
                |q2| q2 + q2 / 10 + 2048,
            ),
            (
                "threads",
                readings.iter().map(|(_, u)| u.threads).collect(),
                |q2| q2 + 2,
            ),
            ("fds", readings.iter().map(|(_, u)| u.fds).collect(), |q2| {
                q2 + q2 / 10 + 8
            }),
        ];
        for (what, values, allow) in series {
            let (second_quarter, last_quarter) = quarters(&values);
            out.push(Flatness {
                process,
                what,
                first: values[0],
                second_quarter,
                last_quarter,
                end: values[values.len() - 1],
                allowed: allow(second_quarter),
            });
        }
    }
    out
}

// ---- Report ----

struct Run {
    settings: Settings,
    capacity: f64,
    qps: f64,
    tcp_qps: f64,
    elapsed: Duration,
    churn: ChurnCounts,
    tally: Tally,
    flat: Vec<Flatness>,
    sample_failures: Vec<String>,
    /// Every reading, per process, for the JSON report.
    readings: Vec<(&'static str, Readings)>,
    udp_timeout_allowance: u64,
    /// Answers judged while measuring capacity, and how many were wrong.
    capacity_answers: u64,
    capacity_wrong_count: u64,
    capacity_wrong: Vec<String>,
    /// Datagrams the kernel dropped for full receive buffers during the load: questions at
    /// dnsmasq-rs's port, replies at the generator's sockets, forwarded questions at kubedns's.
    drops_dnsmasq: u64,
    drops_generator: u64,
    drops_kubedns: u64,
}

fn totals(tally: &Tally) -> KindStats {
    let mut all = KindStats::default();
    for s in tally.kinds.values() {
        all.sent += s.sent;
        all.answered += s.answered;
        all.right += s.right;
        all.wrong += s.wrong;
        all.servfail += s.servfail;
        all.other_errors += s.other_errors;
        all.timeouts += s.timeouts;
        all.nxdomain += s.nxdomain;
        all.behind += s.behind;
        all.max_lag = all.max_lag.max(s.max_lag);
        all.latency_sum += s.latency_sum;
    }
    all
}

fn report_markdown(run: &Run) -> String {
    let mut md = String::new();
    let all = totals(&run.tally);
    let _ = writeln!(md, "# Soak report\n");
    let _ = writeln!(
        md,
        "- duration: {:.0} s of load (asked for {} s); seed {}",
        run.elapsed.as_secs_f64(),
        run.settings.duration.as_secs(),
        run.settings.seed
    );
    let _ = writeln!(
        md,
        "- capacity measured at the start: {:.0} answers/s (UDP, {CAPACITY_ASKERS} closed-loop askers, every answer judged: {} answers, {} wrong); load: {:.0} q/s UDP ({:.0}%) + {:.0} q/s TCP",
        run.capacity,
        run.capacity_answers,
        run.capacity_wrong_count,
        run.qps,
        run.settings.load * 100.0,
        run.tcp_qps
    );
    let _ = writeln!(
        md,
        "- API churn: {} changes ({:.1}/s), watches ended {} times, history expired {} time(s)",
        run.churn.changes, run.settings.churn, run.churn.watch_closes, run.churn.history_expiries
    );
    let _ = writeln!(
        md,
        "- settings: kubedns --ttl={TTL}, --notify (recommended manifest), dnsmasq-rs cache 10000, neg-ttl 60; upstream TTL {EXTERNAL_TTL} s; programming-latency bound {} s",
        BOUND.as_secs()
    );
    let _ = writeln!(
        md,
        "- answers: {} sent, {} answered, {} wrong, {} SERVFAIL, {} other errors, {} timeouts (allowed {} + datagrams the kernel dropped); largest lag behind the API {} ms ({} answers right only for a state that had just ended)",
        all.sent,
        all.answered,
        all.wrong,
        all.servfail,
        all.other_errors,
        all.timeouts,
        run.udp_timeout_allowance,
        all.max_lag.as_millis(),
        all.behind
    );
    if let Some((_, slowest)) = &run.tally.slowest {
        let _ = writeln!(md, "- furthest behind: {slowest}");
    }
    let _ = writeln!(
        md,
        "- UDP datagrams dropped by the kernel for a full receive buffer: {} at dnsmasq-rs's port, {} at the generator's sockets, {} at kubedns's port\n",
        run.drops_dnsmasq, run.drops_generator, run.drops_kubedns
    );
    let _ = writeln!(
        md,
        "| questions | sent | answered | NXDOMAIN | wrong | SERVFAIL | other errors | timeouts | mean latency ms | max lag ms |"
    );
    let _ = writeln!(md, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for kind in Kind::ALL {
        let s = run.tally.kinds.get(&kind).cloned().unwrap_or_default();
        let mean = if s.answered == 0 {
            0.0
        } else {
            s.latency_sum.as_secs_f64() * 1000.0 / s.answered as f64
        };
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {mean:.2} | {} |",
            kind.label(),
            s.sent,
            s.answered,
            s.nxdomain,
            s.wrong,
            s.servfail,
            s.other_errors,
            s.timeouts,
            s.max_lag.as_millis()
        );
    }
    let _ = writeln!(
        md,
        "\n| process | measure | first | median 2nd quarter | median last quarter | end | allowed | flat |"
    );
    let _ = writeln!(md, "|---|---|---:|---:|---:|---:|---:|---|");
    for f in &run.flat {
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} | {} | {} | {} |",
            f.process,
            f.what,
            f.first,
            f.second_quarter,
            f.last_quarter,
            f.end,
            f.allowed,
            if f.flat() { "yes" } else { "NO" }
        );
    }
    if !run.tally.wrong.is_empty() {
        let _ = writeln!(md, "\n## Wrong answers (first {WRONG_SHOWN})\n\n```");
        for w in &run.tally.wrong {
            let _ = writeln!(md, "{w}");
        }
        let _ = writeln!(md, "```");
    }
    if !run.tally.errors.is_empty() {
        let _ = writeln!(md, "\n## Errors (first {WRONG_SHOWN})\n\n```");
        for e in &run.tally.errors {
            let _ = writeln!(md, "{e}");
        }
        let _ = writeln!(md, "```");
    }
    md
}

fn report_json(run: &Run) -> Value {
    let kinds: serde_json::Map<String, Value> = Kind::ALL
        .iter()
        .map(|kind| {
            let s = run.tally.kinds.get(kind).cloned().unwrap_or_default();
            (
                format!("{kind:?}"),
                json!({
                    "label": kind.label(),
                    "sent": s.sent,
                    "answered": s.answered,
                    "nxdomain": s.nxdomain,
                    "wrong": s.wrong,
                    "servfail": s.servfail,
                    "other_errors": s.other_errors,
                    "timeouts": s.timeouts,
                    "behind": s.behind,
                    "max_lag_ms": s.max_lag.as_millis(),
                    "latency_sum_ms": s.latency_sum.as_millis(),
                }),
            )
        })
        .collect();
    let all = totals(&run.tally);
    json!({
        "duration_seconds": run.elapsed.as_secs_f64(),
        "seed": run.settings.seed,
        "capacity_qps": run.capacity,
        "capacity_answers_judged": run.capacity_answers,
        "capacity_wrong": run.capacity_wrong,
        "udp_qps": run.qps,
        "tcp_qps": run.tcp_qps,
        "load_fraction": run.settings.load,
        "kubedns_ttl": TTL,
        "bound_seconds": BOUND.as_secs(),
        "churn": {
            "changes": run.churn.changes,
            "per_second": run.settings.churn,
            "watch_closes": run.churn.watch_closes,
            "history_expiries": run.churn.history_expiries,
        },
        "totals": {
            "sent": all.sent,
            "answered": all.answered,
            "wrong": all.wrong,
            "servfail": all.servfail,
            "other_errors": all.other_errors,
            "timeouts": all.timeouts,
            "timeouts_allowed": run.udp_timeout_allowance,
            "udp_drops": {
                "dnsmasq": run.drops_dnsmasq,
                "generator": run.drops_generator,
                "kubedns": run.drops_kubedns,
            },
            "max_lag_ms": all.max_lag.as_millis(),
        },
        "kinds": kinds,
        "resources": run.flat.iter().map(|f| json!({
            "process": f.process,
            "measure": f.what,
            "first": f.first,
            "median_second_quarter": f.second_quarter,
            "median_last_quarter": f.last_quarter,
            "end": f.end,
            "allowed": f.allowed,
            "flat": f.flat(),
        })).collect::<Vec<_>>(),
        "furthest_behind": run.tally.slowest.as_ref().map(|(_, s)| s),
        "wrong_answers": run.tally.wrong,
        "errors": run.tally.errors,
        "sample_failures": run.sample_failures,
        // Per process: [seconds, RSS KiB, threads, fds] every second, to plot.
        "samples": run.readings.iter().map(|(name, readings)| (
            (*name).to_owned(),
            readings
                .iter()
                .map(|(at, u)| json!([(at * 10.0).round() / 10.0, u.rss_kib, u.threads, u.fds]))
                .collect::<Value>(),
        )).collect::<serde_json::Map<String, Value>>(),
    })
}

// ---- The test ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a soak of minutes: make soak, make soak-smoke"]
async fn the_pod_stays_right_and_flat_under_api_churn_and_steady_load() {
    let settings = Settings::from_env();
    println!(
        "soak: {} s, load {:.0}% of capacity (at most {} q/s), {} API changes/s, seed {}",
        settings.duration.as_secs(),
        settings.load * 100.0,
        settings.max_qps,
        settings.churn,
        settings.seed
    );
    let mut rng = StdRng::seed_from_u64(settings.seed);
    let api = Arc::new(FakeApiServer::start().await);
    let upstream = FakeUpstream::start(
        "127.0.0.1:0".parse().expect("address"),
        "example.com.",
        EXTERNAL_TTL,
    )
    .await
    .expect("start the fake upstream");

    // The starting state, there before kubedns's first list; the pod's probes ask for the
    // `kubernetes` Service.
    api.apply(
        service("default", "kubernetes")
            .cluster_ip("10.96.0.1")
            .port("https", 443, "TCP")
            .build(),
    );
    let t0 = Instant::now();
    let mut slots = build_slots();
    for slot in &mut slots {
        let state = initial_state(slot, &mut rng);
        apply_state(&api, slot, &state);
        slot.history.push(Version {
            from: t0,
            until: None,
            state,
            what: "initial",
        });
    }
    let targets = build_targets(&slots);
    let shared = Arc::new(Shared {
        world: World {
            slots: RwLock::new(slots),
        },
        targets,
        tally: Mutex::default(),
        t0,
    });

    let wiring = Wiring::new(
        "manifests/kube-dns-recommended.yaml",
        api.url(),
        upstream.addr(),
    )
    .kubedns(&format!("--ttl={TTL}"));
    let started = Instant::now();
    let pod = Pod::start(&wiring).await;
    println!("pod up after {:?}", started.elapsed());
    let dns = pod.dns();

    let capacity = measure_capacity(dns, &shared, settings.seed).await;
    // The capacity run, before any churn, is kept apart from the load's tally.
    let capacity_tally = std::mem::take(&mut *shared.tally());
    let capacity_totals = totals(&capacity_tally);
    let qps = (capacity * settings.load).clamp(50.0, settings.max_qps);
    let tcp_qps = (qps / 100.0).clamp(2.0, 50.0);
    println!(
        "capacity {capacity:.0} answers/s; asking {qps:.0} q/s over UDP, {tcp_qps:.0} q/s over TCP"
    );

    let pids: Vec<(&'static str, u32)> = pod
        .pids()
        .iter()
        .map(|(name, pid)| {
            (
                *name,
                pid.unwrap_or_else(|| panic!("{name} is not running")),
            )
        })
        .collect();
    let drops = || {
        (
            udp_drops(dns.port()).unwrap_or(0),
            udp_drops(pod.kubedns_dns().port()).unwrap_or(0),
        )
    };
    let drops_before = drops();
    let stop = CancellationToken::new();
    let load_started = Instant::now();
    let sampler = tokio::spawn(sample_resources(pids, load_started, stop.clone()));
    let churner = tokio::spawn(churn(
        Arc::clone(&api),
        Arc::clone(&shared),
        settings.churn,
        settings.duration,
        settings.seed.wrapping_add(1),
        stop.clone(),
    ));
    let udp = tokio::spawn(udp_load(
        dns,
        Arc::clone(&shared),
        qps,
        settings.seed.wrapping_add(2),
        stop.clone(),
    ));
    let tcp = tokio::spawn(tcp_load(dns, Arc::clone(&shared), tcp_qps, stop.clone()));

    let finished = Arc::new(AtomicBool::new(false));
    let progress = {
        let shared = Arc::clone(&shared);
        let finished = Arc::clone(&finished);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(15));
            tick.tick().await;
            while !finished.load(Ordering::SeqCst) {
                tick.tick().await;
                let all = totals(&shared.tally());
                println!(
                    "  {:>4.0}s: {} sent, {} answered, {} wrong, {} SERVFAIL, {} timeouts",
                    load_started.elapsed().as_secs_f64(),
                    all.sent,
                    all.answered,
                    all.wrong,
                    all.servfail,
                    all.timeouts
                );
            }
        })
    };
    tokio::time::sleep(settings.duration).await;
    let elapsed = load_started.elapsed();
    stop.cancel();
    finished.store(true, Ordering::SeqCst);
    let churn_counts = churner.await.expect("the churn task");
    let drops_generator = udp.await.expect("the UDP load");
    let drops_after = drops();
    tcp.await.expect("the TCP load");
    let samples = sampler.await.expect("the sampler");
    progress.abort();
    let alive = pod.pids().iter().all(|(_, pid)| pid.is_some());

    let tally = std::mem::take(&mut *shared.tally());
    let all = totals(&tally);
    let udp_sent: u64 = tally
        .kinds
        .iter()
        .filter(|(k, _)| **k != Kind::LargeTcp)
        .map(|(_, s)| s.sent)
        .sum();
    let run = Run {
        udp_timeout_allowance: udp_sent / 10_000,
        capacity_answers: capacity_totals.answered,
        capacity_wrong_count: capacity_totals.wrong,
        capacity_wrong: capacity_tally.wrong,
        drops_dnsmasq: drops_after.0 - drops_before.0,
        drops_generator,
        drops_kubedns: drops_after.1 - drops_before.1,
        settings,
        capacity,
        qps,
        tcp_qps,
        elapsed,
        churn: churn_counts,
        flat: flatness(&samples),
        sample_failures: samples.failures,
        readings: samples
            .by_process
            .into_iter()
            .map(|(name, _, readings)| (name, readings))
            .collect(),
        tally,
    };
    let md = report_markdown(&run);
    println!("\n{md}");
    let dir = target_dir().join("soak");
    std::fs::create_dir_all(&dir).expect("create target/soak");
    std::fs::write(dir.join("report.md"), &md).expect("write report.md");
    std::fs::write(
        dir.join("report.json"),
        serde_json::to_string_pretty(&report_json(&run)).expect("JSON"),
    )
    .expect("write report.json");
    println!("written to {}", dir.display());

    let tcp_timeouts = run
        .tally
        .kinds
        .get(&Kind::LargeTcp)
        .map_or(0, |s| s.timeouts);
    let mut failures = Vec::new();
    if !alive {
        failures.push(format!("a process exited:\n{}", pod.logs()));
    }
    if !run.sample_failures.is_empty() {
        failures.push(format!("sampling failed: {:?}", run.sample_failures));
    }
    for kind in Kind::ALL {
        let answered = run.tally.kinds.get(&kind).map_or(0, |s| s.answered);
        if answered == 0 {
            failures.push(format!("no answers for {}", kind.label()));
        }
    }
    if run.churn.changes == 0 {
        failures.push("the API did not change".to_owned());
    }
    if !run.capacity_wrong.is_empty() {
        failures.push(format!(
            "wrong answers while measuring capacity:\n{}",
            run.capacity_wrong.join("\n")
        ));
    }
    if all.wrong > 0 {
        failures.push(format!("{} wrong answers (see the report)", all.wrong));
    }
    if all.servfail + all.other_errors > 0 {
        failures.push(format!(
            "{} SERVFAIL, {} other errors: {:?}",
            all.servfail, all.other_errors, run.tally.errors
        ));
    }
    let udp_timeouts = all.timeouts - tcp_timeouts;
    let lost = run.drops_dnsmasq + run.drops_generator;
    if udp_timeouts > run.udp_timeout_allowance + lost || tcp_timeouts > 0 {
        failures.push(format!(
            "{udp_timeouts} UDP timeouts (allowed {} + {lost} datagrams the kernel dropped), \
             {tcp_timeouts} TCP timeouts",
            run.udp_timeout_allowance
        ));
    }
    for f in run.flat.iter().filter(|f| !f.flat()) {
        failures.push(format!(
            "{} {} grew: median {} in the second quarter, {} in the last (allowed {})",
            f.process, f.what, f.second_quarter, f.last_quarter, f.allowed
        ));
    }
    if run.flat.len() != 9 {
        failures.push(format!(
            "too few resource samples to judge ({} series)",
            run.flat.len()
        ));
    }
    assert!(failures.is_empty(), "soak failed:\n{}", failures.join("\n"));
}
