//! Upstream servers: an ordered list tried with failover, each server remembered as up or down.
//!
//! A forwarder hands a query to an [`UpstreamPool`]. The pool asks its servers in order, each
//! with the pool's timeout, until one gives a usable reply. A server that timed out or failed at
//! the network level is marked down for a while (1 s, doubling per consecutive failure up to
//! 30 s) and is then asked only after the servers that are up, so a dead server costs one
//! timeout, not one per query. A down server is still asked when nothing else answered, which
//! is also how it is found to be back.
//!
//! [`Upstream`]s are shared (`Arc`), so a caller that rebuilds its pools when its configuration
//! changes can keep a server's health and counters across the rebuild.
//!
//! An upstream is normally reached over a socket. [`Upstream::in_process`] makes one that is
//! answered by an [`Exchanger`] in the same process instead (for instance a [`Handler`] wrapped
//! in [`HandlerExchanger`]): the query is handed over as a [`Message`], with no socket and no
//! encoding, while the pool keeps treating it as the server at its address, with the same
//! counters, timeout, health and failover.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures::StreamExt;
use futures::future::BoxFuture;
use futures::stream::FuturesUnordered;
use hickory_proto::op::{Message, ResponseCode};
use tokio::time::Instant;
use tracing::debug;

use crate::client::{ClientError, exchange_tcp, exchange_udp};
use crate::handler::{Handler, Protocol, Request};

/// How long a server stays down after its first failure in a row.
const DOWN_INITIAL: Duration = Duration::from_secs(1);
/// The longest a server stays down; a server down this long is retried this often.
const DOWN_MAX: Duration = Duration::from_secs(30);

/// One upstream server: its address, whether it is always asked over TCP, its health, and
/// counters of queries sent and failed (what dnsmasq reports in `servers.bind`).
#[derive(Debug)]
pub struct Upstream {
    addr: SocketAddr,
    transport: Transport,
    queries: AtomicU64,
    failures: AtomicU64,
    health: Mutex<Health>,
}

/// Answers queries in the process, in place of a server behind a socket.
///
/// The reply is the complete response, as a [`Handler`] builds it; it is taken as if it had
/// come from the server (its ID and question are not checked, no truncation applies). The
/// future must be `'static` so that a pool can run it beside others; an implementation clones
/// what it needs into it.
pub trait Exchanger: Send + Sync + 'static {
    /// Answers `query`.
    fn exchange(&self, query: Message) -> BoxFuture<'static, Message>;
}

/// An [`Exchanger`] over a [`Handler`]: each query becomes a [`Request`] from `src`, as if it
/// had come over TCP (the whole response, never cut to a UDP size).
#[derive(Debug)]
pub struct HandlerExchanger<H> {
    handler: Arc<H>,
    src: SocketAddr,
}

impl<H: Handler> HandlerExchanger<H> {
    /// Hands queries to `handler`, as from `src`.
    pub fn new(handler: Arc<H>, src: SocketAddr) -> Self {
        Self { handler, src }
    }
}

impl<H: Handler> Exchanger for HandlerExchanger<H> {
    fn exchange(&self, query: Message) -> BoxFuture<'static, Message> {
        let handler = Arc::clone(&self.handler);
        let request = Request {
            message: query,
            src: self.src,
            protocol: Protocol::Tcp,
        };
        Box::pin(async move { handler.handle(request).await })
    }
}

/// How an [`Upstream`] is reached.
enum Transport {
    /// Over the network: UDP (TCP after truncation), or always TCP.
    Socket { always_tcp: bool },
    /// By a call in this process.
    InProcess(Arc<dyn Exchanger>),
}

impl std::fmt::Debug for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Socket { always_tcp: false } => f.write_str("udp"),
            Self::Socket { always_tcp: true } => f.write_str("tcp"),
            Self::InProcess(_) => f.write_str("in-process"),
        }
    }
}

#[derive(Debug, Default, Clone, Copy)]
struct Health {
    failures_in_a_row: u32,
    down_until: Option<Instant>,
}

impl Upstream {
    /// A server at `addr`, asked over UDP (TCP when a reply is truncated), or always over TCP.
    ///
    /// Always-TCP is what a cache in front of cluster DNS wants: no conntrack races on UDP, and
    /// no truncated first attempt for large answers.
    pub fn new(addr: SocketAddr, always_tcp: bool) -> Self {
        Self::with_transport(addr, Transport::Socket { always_tcp })
    }

    /// The server at `addr`, answered in this process by `exchanger` instead of over a socket:
    /// for a server that lives in the same process as its client.
    pub fn in_process(addr: SocketAddr, exchanger: Arc<dyn Exchanger>) -> Self {
        Self::with_transport(addr, Transport::InProcess(exchanger))
    }

    fn with_transport(addr: SocketAddr, transport: Transport) -> Self {
        Self {
            addr,
            transport,
            queries: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            health: Mutex::new(Health::default()),
        }
    }

    /// Where queries go.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Whether every query goes over TCP (never for an in-process server).
    pub fn always_tcp(&self) -> bool {
        matches!(self.transport, Transport::Socket { always_tcp: true })
    }

    /// Whether queries are answered in this process rather than over a socket.
    pub fn is_in_process(&self) -> bool {
        matches!(self.transport, Transport::InProcess(_))
    }

    /// Queries sent to this server so far.
    pub fn queries(&self) -> u64 {
        self.queries.load(Ordering::Relaxed)
    }

    /// Queries that got no usable reply: timeouts, network errors, malformed or mismatched
    /// replies, SERVFAIL and REFUSED.
    pub fn failures(&self) -> u64 {
        self.failures.load(Ordering::Relaxed)
    }

    /// Whether the server is being skipped at `now` after failing.
    pub fn is_down(&self, now: Instant) -> bool {
        self.health().down_until.is_some_and(|until| until > now)
    }

    fn health(&self) -> Health {
        *self.health.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Sends `query` (with a fresh random ID) and waits up to `timeout` per transport for the
    /// reply, counting the attempt and updating the server's health. Any reply that matches
    /// counts as the server being up, whatever its rcode.
    ///
    /// Over UDP, a truncated reply is asked again over TCP; if that fails, the truncated reply
    /// is returned. An in-process server is called directly, within the same `timeout`.
    pub async fn exchange(
        &self,
        query: &Message,
        timeout: Duration,
    ) -> Result<Message, ClientError> {
        let mut query = query.clone();
        query.metadata.id = rand::random();
        self.queries.fetch_add(1, Ordering::Relaxed);
        let result = match &self.transport {
            Transport::InProcess(exchanger) => {
                tokio::time::timeout(timeout, exchanger.exchange(query))
                    .await
                    .map_err(|_| ClientError::Timeout {
                        timeout,
                        ignored: 0,
                    })
            }
            Transport::Socket { always_tcp: true } => {
                exchange_tcp(self.addr, &query, timeout).await
            }
            Transport::Socket { always_tcp: false } => {
                match exchange_udp(self.addr, &query, timeout).await {
                    Ok(reply) if reply.metadata.truncation => {
                        // A server without working TCP still answered: hand on the truncated
                        // reply (which is never cached) so the client can decide, rather than fail.
                        match exchange_tcp(self.addr, &query, timeout).await {
                            Ok(whole) => Ok(whole),
                            Err(error) => {
                                debug!(server = %self.addr, %error, "TCP retry of a truncated reply failed");
                                Ok(reply)
                            }
                        }
                    }
                    other => other,
                }
            }
        };
        match &result {
            Ok(reply) => {
                if is_failure(reply.metadata.response_code) {
                    self.failures.fetch_add(1, Ordering::Relaxed);
                }
                self.mark_up();
            }
            Err(_) => {
                self.failures.fetch_add(1, Ordering::Relaxed);
                self.mark_down(Instant::now());
            }
        }
        result
    }

    fn mark_up(&self) {
        *self.health.lock().unwrap_or_else(PoisonError::into_inner) = Health::default();
    }

    fn mark_down(&self, now: Instant) {
        let mut health = self.health.lock().unwrap_or_else(PoisonError::into_inner);
        health.failures_in_a_row = health.failures_in_a_row.saturating_add(1);
        let doublings = health.failures_in_a_row.saturating_sub(1).min(16);
        let pause = DOWN_INITIAL.saturating_mul(1 << doublings).min(DOWN_MAX);
        health.down_until = Some(now + pause);
    }
}

/// Rcodes after which the next server is asked: the server could not or would not answer.
fn is_failure(code: ResponseCode) -> bool {
    matches!(code, ResponseCode::ServFail | ResponseCode::Refused)
}

/// What happened when one server was asked.
#[derive(Debug)]
pub struct Attempt {
    /// The server asked.
    pub server: SocketAddr,
    /// From sending to the outcome.
    pub elapsed: Duration,
    /// The reply's rcode, or `None` when no usable reply came.
    pub rcode: Option<ResponseCode>,
}

/// A usable reply and how it was obtained.
#[derive(Debug)]
pub struct Answer {
    /// The reply, as the server sent it (its ID is the one the pool chose).
    pub reply: Message,
    /// The server that sent it.
    pub server: SocketAddr,
    /// Every server asked, in order, the answering one last.
    pub attempts: Vec<Attempt>,
}

/// Why an [`UpstreamPool`] has no usable reply.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PoolError {
    /// The pool has no servers.
    #[error("no upstream servers")]
    NoServers,
    /// Every server was asked; none gave a usable reply.
    #[error("all {} upstream attempts failed", attempts.len())]
    AllFailed {
        /// Every server asked, in order.
        attempts: Vec<Attempt>,
        /// The last SERVFAIL or REFUSED reply, if any server replied at all.
        last_reply: Option<Box<Message>>,
    },
}

/// An ordered list of [`Upstream`]s asked with failover.
#[derive(Debug, Clone)]
pub struct UpstreamPool {
    servers: Vec<Arc<Upstream>>,
    timeout: Duration,
    parallel: bool,
}

impl UpstreamPool {
    /// A pool asking `servers` in order, waiting up to `timeout` for each.
    pub fn new(servers: Vec<Arc<Upstream>>, timeout: Duration) -> Self {
        Self {
            servers,
            timeout,
            parallel: false,
        }
    }

    /// Asks every server at once and takes the first usable reply, instead of one after the
    /// other (dnsmasq's `--all-servers`): faster failover for more upstream traffic.
    #[must_use]
    pub fn parallel(mut self, parallel: bool) -> Self {
        self.parallel = parallel;
        self
    }

    /// The servers, in configured order.
    pub fn servers(&self) -> &[Arc<Upstream>] {
        &self.servers
    }

    /// The servers in the order they are asked at `now`: those that are up in configured order,
    /// then those that are down, soonest back first.
    pub fn order(&self, now: Instant) -> Vec<Arc<Upstream>> {
        let (up, mut down): (Vec<_>, Vec<_>) =
            self.servers.iter().cloned().partition(|s| !s.is_down(now));
        down.sort_by_key(|s| s.health().down_until);
        up.into_iter().chain(down).collect()
    }

    /// Asks the servers for `query` until one gives a usable reply: any rcode except SERVFAIL
    /// and REFUSED. Each attempt gets a fresh random ID and source port, and a truncated UDP
    /// reply is asked again over TCP.
    pub async fn exchange(&self, query: &Message) -> Result<Answer, PoolError> {
        if self.servers.is_empty() {
            return Err(PoolError::NoServers);
        }
        let order = self.order(Instant::now());
        if self.parallel {
            self.exchange_parallel(query, order).await
        } else {
            self.exchange_in_order(query, order).await
        }
    }

    async fn exchange_in_order(
        &self,
        query: &Message,
        order: Vec<Arc<Upstream>>,
    ) -> Result<Answer, PoolError> {
        let mut attempts = Vec::with_capacity(order.len());
        let mut last_reply = None;
        for server in order {
            let (attempt, reply) = ask(&server, query, self.timeout).await;
            attempts.push(attempt);
            match reply {
                Some(reply) if !is_failure(reply.metadata.response_code) => {
                    return Ok(Answer {
                        reply,
                        server: server.addr,
                        attempts,
                    });
                }
                Some(reply) => last_reply = Some(Box::new(reply)),
                None => {}
            }
        }
        Err(PoolError::AllFailed {
            attempts,
            last_reply,
        })
    }

    async fn exchange_parallel(
        &self,
        query: &Message,
        order: Vec<Arc<Upstream>>,
    ) -> Result<Answer, PoolError> {
        let mut pending: FuturesUnordered<_> = order
            .iter()
            .map(|server| async move { (server.addr, ask(server, query, self.timeout).await) })
            .collect();
        let mut attempts = Vec::with_capacity(order.len());
        let mut last_reply = None;
        while let Some((server, (attempt, reply))) = pending.next().await {
            attempts.push(attempt);
            match reply {
                Some(reply) if !is_failure(reply.metadata.response_code) => {
                    return Ok(Answer {
                        reply,
                        server,
                        attempts,
                    });
                }
                Some(reply) => last_reply = Some(Box::new(reply)),
                None => {}
            }
        }
        Err(PoolError::AllFailed {
            attempts,
            last_reply,
        })
    }
}

async fn ask(server: &Upstream, query: &Message, timeout: Duration) -> (Attempt, Option<Message>) {
    let started = Instant::now();
    let result = server.exchange(query, timeout).await;
    let elapsed = started.elapsed();
    let reply = match result {
        Ok(reply) => Some(reply),
        Err(error) => {
            debug!(server = %server.addr, %error, "upstream attempt failed");
            None
        }
    };
    let attempt = Attempt {
        server: server.addr,
        elapsed,
        rcode: reply.as_ref().map(|r| r.metadata.response_code),
    };
    (attempt, reply)
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;

    fn server(last: u8) -> Arc<Upstream> {
        Arc::new(Upstream::new(
            (Ipv4Addr::new(10, 0, 0, last), 53).into(),
            false,
        ))
    }

    fn addrs(order: &[Arc<Upstream>]) -> Vec<u8> {
        order
            .iter()
            .map(|s| match s.addr().ip() {
                std::net::IpAddr::V4(ip) => ip.octets()[3],
                std::net::IpAddr::V6(_) => 0,
            })
            .collect()
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_server_is_asked_last_until_its_pause_ends() {
        let pool = UpstreamPool::new(
            vec![server(1), server(2), server(3)],
            Duration::from_secs(1),
        );
        let now = Instant::now();
        pool.servers()[0].mark_down(now);
        assert_eq!(addrs(&pool.order(now)), [2, 3, 1]);
        assert_eq!(addrs(&pool.order(now + DOWN_INITIAL)), [1, 2, 3]);
    }

    #[tokio::test(start_paused = true)]
    async fn the_pause_doubles_with_each_failure_in_a_row_up_to_a_cap() {
        let upstream = server(1);
        let now = Instant::now();
        upstream.mark_down(now);
        upstream.mark_down(now);
        upstream.mark_down(now);
        assert!(upstream.is_down(now + DOWN_INITIAL * 3));
        assert!(!upstream.is_down(now + DOWN_INITIAL * 4));
        for _ in 0..40 {
            upstream.mark_down(now);
        }
        assert!(!upstream.is_down(now + DOWN_MAX));
        upstream.mark_up();
        assert!(!upstream.is_down(now));
    }

    /// Answers every query with NOERROR and the query's question, after `delay`.
    #[derive(Debug)]
    struct Echo {
        delay: Duration,
    }

    impl Exchanger for Echo {
        fn exchange(&self, query: Message) -> BoxFuture<'static, Message> {
            let delay = self.delay;
            Box::pin(async move {
                tokio::time::sleep(delay).await;
                let mut reply = Message::response(query.metadata.id, query.metadata.op_code);
                reply.queries = query.queries;
                reply
            })
        }
    }

    fn query() -> Message {
        crate::client::query_message("example.com.", hickory_proto::rr::RecordType::A)
            .expect("valid name")
    }

    #[tokio::test(start_paused = true)]
    async fn an_in_process_server_answers_without_a_socket_and_keeps_its_counters() {
        let addr: SocketAddr = (Ipv4Addr::LOCALHOST, 10053).into();
        let fast = Arc::new(Upstream::in_process(
            addr,
            Arc::new(Echo {
                delay: Duration::ZERO,
            }),
        ));
        assert!(fast.is_in_process() && !fast.always_tcp());
        let pool = UpstreamPool::new(vec![fast.clone()], Duration::from_secs(1));
        let answer = pool.exchange(&query()).await.expect("answered");
        assert_eq!(answer.server, addr);
        assert_eq!(answer.reply.queries, query().queries);
        assert_eq!((fast.queries(), fast.failures()), (1, 0));
    }

    #[tokio::test(start_paused = true)]
    async fn a_slow_in_process_server_times_out_and_is_marked_down_like_a_remote_one() {
        let slow = Arc::new(Upstream::in_process(
            (Ipv4Addr::LOCALHOST, 10053).into(),
            Arc::new(Echo {
                delay: Duration::from_secs(5),
            }),
        ));
        let pool = UpstreamPool::new(vec![slow.clone()], Duration::from_secs(1));
        let error = pool.exchange(&query()).await.expect_err("timed out");
        assert!(matches!(error, PoolError::AllFailed { .. }), "{error}");
        assert_eq!((slow.queries(), slow.failures()), (1, 1));
        assert!(slow.is_down(Instant::now()));
    }

    #[tokio::test(start_paused = true)]
    async fn down_servers_are_ordered_by_when_they_come_back() {
        let pool = UpstreamPool::new(
            vec![server(1), server(2), server(3)],
            Duration::from_secs(1),
        );
        let now = Instant::now();
        pool.servers()[0].mark_down(now);
        pool.servers()[0].mark_down(now);
        pool.servers()[1].mark_down(now);
        assert_eq!(addrs(&pool.order(now)), [3, 2, 1]);
    }
}
