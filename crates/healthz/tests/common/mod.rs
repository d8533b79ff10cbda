//! Shared by healthz's integration tests: DNS servers to probe (a real kubedns, and a fake that
//! misbehaves on request), HTTP clients with and without sockets, and a hang guard.

#![allow(dead_code, unreachable_pub)]

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{Request as HttpRequest, StatusCode, header};
use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::rdata::{A, SRV, TXT};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};
use http_body_util::BodyExt as _;
use kdns_net::{Handler, Request};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt as _;

/// Hang guard for awaits on peers.
pub const LIMIT: Duration = Duration::from_secs(20);

/// The repository root.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Polls `probe` until it returns true; panics with `what` after `limit`. A hang guard for
/// eventual states, not a timing assertion.
pub async fn eventually<F, Fut>(limit: Duration, what: &str, mut probe: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if probe().await {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "gave up after {limit:?} waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

// ---------------------------------------------------------------------------------------------
// kubedns, in process

/// A kubedns serving the demo cluster state, stopped on drop.
pub struct Kubedns {
    pub dns: SocketAddr,
    running: Option<kubedns::Running>,
    shutdown: CancellationToken,
}

impl Kubedns {
    /// Starts kubedns on 127.0.0.1:`port` (0 picks one) and waits until it is ready.
    pub async fn start(port: u16) -> Self {
        let state = repo_root().join("tests/fixtures/state/demo.yaml");
        let port = port.to_string();
        let args = <kubedns::Args as clap::Parser>::try_parse_from([
            "kubedns",
            "--cluster-state",
            state.to_str().expect("utf-8 path"),
            "--dns-bind-address",
            "127.0.0.1",
            "--dns-port",
            &port,
            "--healthz-port",
            "0",
            "--metrics-port",
            "0",
            "--http-bind-address",
            "127.0.0.1",
            "--nameservers",
            "127.0.0.1:1",
        ])
        .expect("valid kubedns flags");
        let shutdown = CancellationToken::new();
        // On the test's runtime, so that tests with a paused clock see it answer.
        let running = kubedns::start_with(args, shutdown.clone(), kubedns::DnsOn::CurrentRuntime)
            .await
            .expect("kubedns starts");
        let readiness = running.readiness.clone();
        eventually(LIMIT, "kubedns ready", || {
            let ready = readiness.is_ready();
            async move { ready }
        })
        .await;
        Self {
            dns: running.dns,
            running: Some(running),
            shutdown,
        }
    }

    /// Starts kubedns on `port`, retrying while the port is still held by a stopped one.
    pub async fn start_on(port: u16) -> Self {
        let mut attempts = 0;
        loop {
            // The previous instance has released the port once a bind succeeds.
            let free = std::net::UdpSocket::bind(("127.0.0.1", port)).is_ok()
                && std::net::TcpListener::bind(("127.0.0.1", port)).is_ok();
            if free {
                return Self::start(port).await;
            }
            attempts += 1;
            assert!(attempts < 100, "port {port} stayed busy");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Stops kubedns and waits until its DNS server has drained.
    pub async fn stop(mut self) {
        self.shutdown.cancel();
        if let Some(running) = self.running.take() {
            let _ = test_support::timeout_after(LIMIT, running.wait()).await;
        }
    }
}

impl Drop for Kubedns {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

// ---------------------------------------------------------------------------------------------
// A fake DNS server

/// How the fake answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// One record of the asked type (A, AAAA → A, SRV, anything else → A).
    Answer,
    /// NOERROR with no records.
    Empty,
    /// A reply to another question (same ID).
    WrongQuestion,
    /// No reply at all.
    Silent,
}

/// dnsmasq's statistics as the fake reports them over CHAOS TXT.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    pub hits: u64,
    pub misses: u64,
    pub evictions: u64,
    pub insertions: u64,
    pub cache_size: u64,
}

#[derive(Debug)]
struct Behaviour {
    mode: Mode,
    stats: Option<Stats>,
    queries: u64,
}

#[derive(Clone, Debug)]
struct FakeHandler(Arc<Mutex<Behaviour>>);

impl Handler for FakeHandler {
    async fn handle(&self, request: Request) -> Message {
        let (mode, stats) = {
            let mut b = self.0.lock().unwrap_or_else(PoisonError::into_inner);
            b.queries += 1;
            (b.mode, b.stats)
        };
        let query = request.message;
        let question = query.queries[0].clone();
        let mut reply = query.clone().into_response();
        if question.query_class() == DNSClass::CH {
            let name = question.name().to_ascii().to_ascii_lowercase();
            let value = stats.and_then(|s| match name.as_str() {
                "hits.bind." => Some(s.hits),
                "misses.bind." => Some(s.misses),
                "evictions.bind." => Some(s.evictions),
                "insertions.bind." => Some(s.insertions),
                "cachesize.bind." => Some(s.cache_size),
                _ => None,
            });
            match value {
                Some(value) => {
                    let mut record = Record::from_rdata(
                        question.name().clone(),
                        0,
                        RData::TXT(TXT::new(vec![value.to_string()])),
                    );
                    record.dns_class = DNSClass::CH;
                    reply.answers.push(record);
                }
                None => reply.metadata.response_code = ResponseCode::NotImp,
            }
            return reply;
        }
        match mode {
            Mode::Answer => {
                let data = match question.query_type() {
                    RecordType::SRV => RData::SRV(SRV::new(
                        10,
                        100,
                        0,
                        Name::from_ascii("target.example.").expect("valid name"),
                    )),
                    _ => RData::A(A::new(192, 0, 2, 1)),
                };
                reply
                    .answers
                    .push(Record::from_rdata(question.name().clone(), 30, data));
            }
            Mode::Empty => {}
            Mode::WrongQuestion => {
                reply.queries[0].set_name(Name::from_ascii("wrong.example.").expect("valid name"));
                reply.answers.push(Record::from_rdata(
                    Name::from_ascii("wrong.example.").expect("valid name"),
                    30,
                    RData::A(A::new(192, 0, 2, 2)),
                ));
            }
            Mode::Silent => std::future::pending::<()>().await,
        }
        reply
    }
}

/// A DNS server on 127.0.0.1 that answers, answers empty, answers the wrong question, or says
/// nothing, as told; it can also be stopped and started again on the same port.
pub struct FakeDns {
    pub addr: SocketAddr,
    handler: FakeHandler,
    shutdown: CancellationToken,
    server: Option<JoinHandle<std::io::Result<()>>>,
}

impl FakeDns {
    /// Starts on a free port, answering.
    pub async fn start() -> Self {
        let handler = FakeHandler(Arc::new(Mutex::new(Behaviour {
            mode: Mode::Answer,
            stats: None,
            queries: 0,
        })));
        let mut fake = Self {
            addr: "127.0.0.1:0".parse().expect("valid address"),
            handler,
            shutdown: CancellationToken::new(),
            server: None,
        };
        fake.serve().await;
        fake
    }

    async fn serve(&mut self) {
        let mut attempts = 0;
        let (udp, tcp) = loop {
            match kdns_net::bind(self.addr).await {
                Ok(sockets) => break sockets,
                Err(e) => {
                    attempts += 1;
                    assert!(attempts < 100, "cannot bind {}: {e}", self.addr);
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        };
        self.addr = udp.local_addr().expect("bound address");
        self.shutdown = CancellationToken::new();
        let config = kdns_net::ServerConfig {
            // A silent answer is abandoned at once on stop, not after a grace period.
            shutdown_grace: Duration::ZERO,
            // On this runtime, whose clock some tests pause.
            udp_thread: false,
            ..kdns_net::ServerConfig::default()
        };
        self.server = Some(tokio::spawn(kdns_net::serve(
            Some(udp),
            Some(tcp),
            Arc::new(self.handler.clone()),
            config,
            self.shutdown.clone(),
        )));
    }

    /// Changes how it answers from the next query on.
    pub fn set_mode(&self, mode: Mode) {
        self.handler
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .mode = mode;
    }

    /// Sets (or with `None`, removes) the CHAOS statistics it reports.
    pub fn set_stats(&self, stats: Option<Stats>) {
        self.handler
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .stats = stats;
    }

    /// Queries received so far.
    pub fn queries(&self) -> u64 {
        self.handler
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .queries
    }

    /// Stops serving; the port is free afterwards.
    pub async fn stop(&mut self) {
        self.shutdown.cancel();
        if let Some(server) = self.server.take() {
            let _ = test_support::timeout_after(LIMIT, server).await;
        }
    }

    /// Serves again on the same port.
    pub async fn restart(&mut self) {
        self.serve().await;
    }
}

impl Drop for FakeDns {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// A UDP "server" that answers every datagram with the query's ID followed by junk.
pub async fn garbage_server() -> (SocketAddr, JoinHandle<()>) {
    let socket = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    let addr = socket.local_addr().expect("bound address");
    let task = tokio::spawn(async move {
        let mut buf = [0u8; 512];
        while let Ok((len, from)) = socket.recv_from(&mut buf).await {
            if len < 2 {
                continue;
            }
            let junk = [buf[0], buf[1], 0xff, 0xff, 0xff, 0xff, 0x00, 0x07];
            let _ = socket.send_to(&junk, from).await;
        }
    });
    (addr, task)
}

// ---------------------------------------------------------------------------------------------
// HTTP

/// A response, as a test wants to see it.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub content_type: String,
    pub body: String,
}

/// Sends one request to `router` without sockets.
pub async fn oneshot(router: &Router, method: &str, path: &str, accept: Option<&str>) -> Reply {
    let mut request = HttpRequest::builder().method(method).uri(path);
    if let Some(accept) = accept {
        request = request.header(header::ACCEPT, accept);
    }
    let request = request.body(Body::empty()).expect("valid request");
    let response = router.clone().oneshot(request).await.expect("infallible");
    let status = response.status();
    let content_type = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let body = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    Reply {
        status,
        content_type,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

/// `GET path` over a real connection to `addr`, HTTP/1.1 with `Connection: close`.
pub async fn http_get(addr: SocketAddr, path: &str) -> Reply {
    let exchange = async {
        let mut stream = TcpStream::connect(addr).await.expect("connect");
        let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
        stream
            .write_all(request.as_bytes())
            .await
            .expect("send request");
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).await.expect("read response");
        raw
    };
    let raw = test_support::timeout_after(LIMIT, exchange).await;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse::<u16>().ok())
        .and_then(|code| StatusCode::from_u16(code).ok())
        .unwrap_or_else(|| panic!("not an HTTP response: {text:?}"));
    let content_type = head
        .lines()
        .find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.eq_ignore_ascii_case("content-type")
                .then(|| value.trim().to_owned())
        })
        .unwrap_or_default();
    // Bodies here are small and sent whole; chunked framing only appears with streaming.
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_owned()
    };
    Reply {
        status,
        content_type,
        body,
    }
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let Ok(size) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if size == 0 || rest.len() < size {
            break;
        }
        out.push_str(&rest[..size]);
        body = rest[size..].trim_start_matches("\r\n");
    }
    out
}

/// A healthz config from flags, as the binary would build it (legacy spellings included).
pub fn config(args: &[&str]) -> healthz::Config {
    let argv = std::iter::once("healthz")
        .chain(args.iter().copied())
        .map(String::from);
    let (argv, _) = kdns_daemon::normalize_args(argv, &[]);
    let args = <healthz::Args as clap::Parser>::try_parse_from(argv).expect("valid healthz flags");
    healthz::Config::from_args(args).expect("flags fit together")
}
