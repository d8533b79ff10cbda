//! Fake upstreams on 127.0.0.1:0, dnsmasq-rs started in-process, and query helpers.

use std::future::Future;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use dnsmasq_rs::config::ServerSpec;
use dnsmasq_rs::{Config, Running};
use hickory_proto::op::{Message, OpCode, ResponseCode};
use hickory_proto::rr::rdata::{A, CNAME, TXT};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use kdns_net::{Handler, Protocol, Request};
use test_support::timeout_after;
use tokio::net::UdpSocket;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

/// Bound on anything a test waits for; reaching it means the test is stuck, not slow.
pub const GUARD: Duration = Duration::from_secs(10);

/// One question a fake upstream received.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Asked {
    pub name: String,
    pub qtype: RecordType,
    pub protocol: Protocol,
}

/// The SOA fake upstreams put in negative answers.
pub const SOA: &str =
    "example.com. 300 IN SOA ns.example.com. hostmaster.example.com. 1 7200 1800 86400 30";

#[derive(Clone)]
struct Zone {
    marker: Ipv4Addr,
    log: Arc<Mutex<Vec<Asked>>>,
    gate: Option<Arc<Semaphore>>,
    tc_on_udp: bool,
}

impl Zone {
    /// Answers by the first label of the name: `nx` NXDOMAIN, `nodata` NODATA, `servfail`,
    /// `big` (100 A records), `two` (2 A records), `cname` (a CNAME to `www.example.com.`),
    /// anything else one A record `marker` with TTL 60. AAAA is always NODATA.
    fn respond(&self, request: &Message, protocol: Protocol) -> Message {
        let mut reply = Message::response(request.metadata.id, request.metadata.op_code);
        reply.metadata.recursion_desired = request.metadata.recursion_desired;
        reply.metadata.recursion_available = true;
        reply.queries.clone_from(&request.queries);
        let Some(query) = request.queries.first() else {
            reply.metadata.response_code = ResponseCode::FormErr;
            return reply;
        };
        let name = query.name().clone();
        let first = name
            .iter()
            .next()
            .map(|l| String::from_utf8_lossy(l).to_ascii_lowercase())
            .unwrap_or_default();
        let a = |ip: Ipv4Addr| Record::from_rdata(name.clone(), 60, RData::A(A(ip)));
        let soa = || test_support::rr(SOA);
        match (first.as_str(), query.query_type()) {
            ("nx", _) => {
                reply.metadata.response_code = ResponseCode::NXDomain;
                reply.authorities = vec![soa()];
            }
            ("servfail", _) => reply.metadata.response_code = ResponseCode::ServFail,
            ("nodata", _) | (_, RecordType::AAAA) => reply.authorities = vec![soa()],
            ("big", _) => {
                reply.answers = (0..100u8).map(|i| a(Ipv4Addr::new(10, 0, 0, i))).collect();
            }
            ("two", _) => reply.answers = vec![a(self.marker), a(Ipv4Addr::new(192, 0, 2, 254))],
            ("cname", _) => {
                let target = Name::from_ascii("www.example.com.").expect("valid name");
                reply.answers = vec![
                    Record::from_rdata(name.clone(), 300, RData::CNAME(CNAME(target.clone()))),
                    Record::from_rdata(target, 60, RData::A(A(self.marker))),
                ];
            }
            (_, RecordType::TXT) => {
                reply.answers = vec![Record::from_rdata(
                    name.clone(),
                    60,
                    RData::TXT(TXT::new(vec![self.marker.to_string()])),
                )];
            }
            _ => reply.answers = vec![a(self.marker)],
        }
        if self.tc_on_udp && protocol == Protocol::Udp {
            reply.answers.clear();
            reply.metadata.truncation = true;
        }
        reply
    }
}

impl Handler for Zone {
    fn handle(&self, request: Request) -> impl Future<Output = Message> + Send {
        if let Some(query) = request.message.queries.first() {
            self.log.lock().expect("log lock").push(Asked {
                name: query.name().to_ascii(),
                qtype: query.query_type(),
                protocol: request.protocol,
            });
        }
        let zone = self.clone();
        async move {
            if let Some(gate) = &zone.gate {
                let _permit = gate.acquire().await;
            }
            zone.respond(&request.message, request.protocol)
        }
    }
}

/// A DNS server on 127.0.0.1:0 (UDP and TCP) answering from [`Zone`]'s rules.
pub struct FakeUpstream {
    pub addr: SocketAddr,
    log: Arc<Mutex<Vec<Asked>>>,
    shutdown: CancellationToken,
}

impl FakeUpstream {
    /// An upstream whose A answers are `marker`.
    pub async fn start(marker: [u8; 4]) -> Self {
        Self::with(marker, None, false).await
    }

    /// An upstream whose answers wait for permits on the returned semaphore.
    pub async fn gated(marker: [u8; 4]) -> (Self, Arc<Semaphore>) {
        let gate = Arc::new(Semaphore::new(0));
        (Self::with(marker, Some(gate.clone()), false).await, gate)
    }

    /// An upstream that answers every UDP query with an empty truncated reply.
    pub async fn truncating(marker: [u8; 4]) -> Self {
        Self::with(marker, None, true).await
    }

    async fn with(marker: [u8; 4], gate: Option<Arc<Semaphore>>, tc_on_udp: bool) -> Self {
        let log = Arc::new(Mutex::new(Vec::new()));
        let zone = Zone {
            marker: marker.into(),
            log: log.clone(),
            gate,
            tc_on_udp,
        };
        let (addr, shutdown) =
            test_support::serve_dns((Ipv4Addr::LOCALHOST, 0).into(), Arc::new(zone))
                .await
                .expect("bind the fake upstream");
        Self {
            addr,
            log,
            shutdown,
        }
    }

    /// Every question received so far.
    pub fn asked(&self) -> Vec<Asked> {
        self.log.lock().expect("log lock").clone()
    }

    /// How many times `name` (case-insensitive, trailing dot optional) was asked.
    pub fn count(&self, name: &str) -> usize {
        let want = name.trim_end_matches('.').to_ascii_lowercase();
        self.asked()
            .iter()
            .filter(|a| a.name.trim_end_matches('.').eq_ignore_ascii_case(&want))
            .count()
    }

    /// `--server` text for this upstream.
    pub fn server(&self) -> String {
        format!("{}#{}", self.addr.ip(), self.addr.port())
    }
}

impl Drop for FakeUpstream {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// A UDP socket that reads queries and never answers.
pub struct SilentUpstream {
    pub addr: SocketAddr,
    received: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl SilentUpstream {
    pub async fn start() -> Self {
        let socket = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .expect("bind");
        let addr = socket.local_addr().expect("local address");
        let received = Arc::new(AtomicUsize::new(0));
        let counter = received.clone();
        let task = tokio::spawn(async move {
            let mut buf = vec![0u8; 4096];
            while socket.recv_from(&mut buf).await.is_ok() {
                counter.fetch_add(1, Ordering::SeqCst);
            }
        });
        Self {
            addr,
            received,
            task,
        }
    }

    pub fn received(&self) -> usize {
        self.received.load(Ordering::SeqCst)
    }

    pub fn server(&self) -> String {
        format!("{}#{}", self.addr.ip(), self.addr.port())
    }
}

impl Drop for SilentUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// dnsmasq-rs running in this process; stopped on drop.
pub struct Dnsmasq {
    pub addr: SocketAddr,
    pub running: Running,
    shutdown: CancellationToken,
}

impl Dnsmasq {
    pub async fn start(config: Config) -> Self {
        let shutdown = CancellationToken::new();
        let running = dnsmasq_rs::start(config, shutdown.clone())
            .await
            .expect("dnsmasq-rs starts");
        Self {
            addr: running.dns[0],
            running,
            shutdown,
        }
    }

    pub async fn ask(&self, name: &str, rtype: RecordType) -> Message {
        ask(self.addr, name, rtype).await
    }

    /// Asks `name` twice over UDP, one after the other, within [`GUARD`] each: the second
    /// answer is a cache hit when the first was cacheable.
    pub async fn ask_twice(&self, name: &str, rtype: RecordType) -> [Message; 2] {
        let first = timeout_after(GUARD, self.ask(name, rtype)).await;
        [first, timeout_after(GUARD, self.ask(name, rtype)).await]
    }
}

impl Drop for Dnsmasq {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// A configuration serving on 127.0.0.1:0 with these `--server` values and a short upstream
/// timeout (a failover test waits it out once).
pub fn config(servers: &[String]) -> Config {
    let mut config = Config::new((Ipv4Addr::LOCALHOST, 0).into());
    config.servers = servers
        .iter()
        .map(|s| s.parse::<ServerSpec>().expect("valid --server"))
        .collect();
    config.upstream_timeout = Duration::from_millis(500);
    config
}

/// One query over UDP, with EDNS (as dig sends).
pub async fn ask(server: SocketAddr, name: &str, rtype: RecordType) -> Message {
    let query = kdns_net::with_edns(
        kdns_net::query_message(name, rtype).expect("valid name"),
        1232,
    );
    kdns_net::exchange_udp(server, &query, GUARD)
        .await
        .expect("an answer")
}

/// One query over TCP.
pub async fn ask_tcp(server: SocketAddr, name: &str, rtype: RecordType) -> Message {
    let query = kdns_net::query_message(name, rtype).expect("valid name");
    kdns_net::exchange_tcp(server, &query, GUARD)
        .await
        .expect("an answer")
}

/// The A addresses in an answer, in order.
pub fn addresses(reply: &Message) -> Vec<Ipv4Addr> {
    reply
        .answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(A(ip)) => Some(*ip),
            _ => None,
        })
        .collect()
}

/// A NOTIFY for `name`, as kubedns sends it.
pub fn notify_message(name: &str) -> Message {
    let mut message = kdns_net::query_message(name, RecordType::SOA).expect("valid name");
    message.metadata.op_code = OpCode::Notify;
    message.metadata.authoritative = true;
    message.metadata.recursion_desired = false;
    message
}

/// Polls `check` until it holds; the guard only stops a hang.
pub async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + GUARD;
    while !check().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "never happened: {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
