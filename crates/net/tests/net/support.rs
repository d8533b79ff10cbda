//! A configurable handler, a server started on ephemeral ports, and raw socket helpers.

use std::future::Future;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use hickory_proto::op::{Edns, Message, MessageType};
use hickory_proto::rr::rdata::A;
use hickory_proto::rr::{Name, RData, Record, RecordType};
use kdns_net::{Handler, Request, ServerConfig, ServerStats, bind, query_message, serve};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Bound on anything a test waits for; reaching it means the test is stuck, not slow.
pub const GUARD: Duration = Duration::from_secs(10);

/// Answers every request with `answers` A records for the question's name (and `additionals`
/// more in the additional section), whatever the class. With a `gate`, each request waits
/// for a permit first, so tests can hold requests in flight.
#[derive(Clone, Default)]
pub struct Answers {
    pub answers: usize,
    pub additionals: usize,
    /// Put an OPT in every response, whether or not the request had one.
    pub always_edns: bool,
    pub gate: Option<Arc<Semaphore>>,
    /// Requests that reached the handler.
    pub started: Arc<AtomicUsize>,
}

impl Answers {
    pub fn new(answers: usize) -> Self {
        Self {
            answers,
            ..Self::default()
        }
    }

    /// A handler whose requests wait until the returned semaphore gets permits.
    pub fn gated(answers: usize) -> (Self, Arc<Semaphore>) {
        let gate = Arc::new(Semaphore::new(0));
        let handler = Self {
            answers,
            gate: Some(gate.clone()),
            ..Self::default()
        };
        (handler, gate)
    }

    fn respond(&self, request: &Message) -> Message {
        let mut response = Message::response(request.metadata.id, request.metadata.op_code);
        response.metadata.recursion_desired = request.metadata.recursion_desired;
        response.queries.clone_from(&request.queries);
        let name = request
            .queries
            .first()
            .map_or_else(Name::root, |query| query.name().clone());
        response.answers = (0..self.answers).map(|i| a_record(&name, i)).collect();
        response.additionals = (0..self.additionals)
            .map(|i| a_record(&name, 1000 + i))
            .collect();
        if self.always_edns {
            response.edns = Some(Edns::new());
        }
        response
    }
}

impl Handler for Answers {
    fn handle(&self, request: Request) -> impl Future<Output = Message> + Send {
        self.started.fetch_add(1, Ordering::SeqCst);
        let response = self.respond(&request.message);
        let gate = self.gate.clone();
        async move {
            if let Some(gate) = gate {
                gate.acquire().await.expect("gate open").forget();
            }
            response
        }
    }
}

/// The `i`th of a run of distinct A records for `name`.
pub fn a_record(name: &Name, i: usize) -> Record {
    let ip = Ipv4Addr::from(0x0a00_0000 + u32::try_from(i).expect("small index"));
    Record::from_rdata(name.clone(), 60, RData::A(A(ip)))
}

/// A running server; dropping it cancels it.
pub struct TestServer {
    pub addr: SocketAddr,
    pub stats: Arc<ServerStats>,
    pub shutdown: CancellationToken,
    pub task: Option<JoinHandle<io::Result<()>>>,
}

impl TestServer {
    /// Cancels the server and waits for `serve` to return.
    pub async fn stop(mut self) -> io::Result<()> {
        self.shutdown.cancel();
        let task = self.task.take().expect("running");
        tokio::time::timeout(GUARD, task)
            .await
            .expect("serve returns after shutdown")
            .expect("serve does not panic")
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// Test limits: a short TCP idle timeout so slow-client tests end quickly.
pub fn config() -> ServerConfig {
    ServerConfig {
        tcp_idle_timeout: Duration::from_millis(300),
        ..ServerConfig::default()
    }
}

/// Limits for tests that keep TCP connections open between steps.
pub fn patient_config() -> ServerConfig {
    ServerConfig {
        tcp_idle_timeout: GUARD * 3,
        ..ServerConfig::default()
    }
}

pub async fn start<H: Handler>(handler: H, config: ServerConfig) -> TestServer {
    let (udp, tcp) = bind((Ipv4Addr::LOCALHOST, 0).into())
        .await
        .expect("bind UDP and TCP");
    let addr = udp.local_addr().expect("local address");
    assert_eq!(tcp.local_addr().expect("local address"), addr);
    let stats = config.stats.clone();
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(serve(
        Some(udp),
        Some(tcp),
        Arc::new(handler),
        config,
        shutdown.clone(),
    ));
    TestServer {
        addr,
        stats,
        shutdown,
        task: Some(task),
    }
}

/// A query for `name`, type A.
pub fn query(name: &str) -> Message {
    query_message(name, RecordType::A).expect("valid name")
}

/// Sends raw bytes from a fresh socket and returns the first datagram that comes back.
pub async fn udp_raw(server: SocketAddr, bytes: &[u8]) -> Vec<u8> {
    let socket = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))
        .await
        .expect("bind");
    socket.send_to(bytes, server).await.expect("send");
    let mut buf = vec![0u8; 65535];
    let (len, _) = tokio::time::timeout(GUARD, socket.recv_from(&mut buf))
        .await
        .expect("a reply")
        .expect("receive");
    buf.truncate(len);
    buf
}

/// Writes one length-prefixed message.
pub async fn write_frame(stream: &mut TcpStream, message: &[u8]) {
    let len = u16::try_from(message.len()).expect("fits a frame");
    let mut framed = len.to_be_bytes().to_vec();
    framed.extend_from_slice(message);
    stream.write_all(&framed).await.expect("write");
}

/// Reads one length-prefixed message.
pub async fn read_frame(stream: &mut TcpStream) -> Vec<u8> {
    let read = async {
        let len = stream.read_u16().await?;
        let mut message = vec![0u8; usize::from(len)];
        stream.read_exact(&mut message).await?;
        io::Result::Ok(message)
    };
    tokio::time::timeout(GUARD, read)
        .await
        .expect("a reply")
        .expect("read")
}

/// Sends a query over an open connection and checks the answer.
pub async fn tcp_ask(stream: &mut TcpStream, name: &str) -> Message {
    let query = query(name);
    write_frame(stream, &query.to_vec().expect("encodes")).await;
    let reply = Message::from_vec(&read_frame(stream).await).expect("decodes");
    assert_eq!(reply.metadata.id, query.metadata.id);
    assert_eq!(reply.metadata.message_type, MessageType::Response);
    reply
}

/// Asserts that the server closes `stream` without sending anything.
pub async fn assert_closed(stream: &mut TcpStream) {
    let mut buf = [0u8; 512];
    match tokio::time::timeout(GUARD, stream.read(&mut buf))
        .await
        .expect("the server closes the connection")
    {
        Ok(0) | Err(_) => {}
        Ok(n) => panic!("expected the connection to close, got {n} bytes"),
    }
}

/// Waits until `condition` holds, for state the server reaches asynchronously.
pub async fn eventually(what: &str, condition: impl Fn() -> bool) {
    let wait = async {
        while !condition() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    };
    tokio::time::timeout(GUARD, wait)
        .await
        .unwrap_or_else(|_| panic!("never happened: {what}"));
}
