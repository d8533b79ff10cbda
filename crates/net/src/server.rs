//! The DNS server loop: one UDP receive loop and one TCP accept loop around a [`Handler`].

use std::collections::HashMap;
use std::fmt::Debug;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use hickory_proto::op::{Message, ResponseCode};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::Semaphore;
use tokio::time::{Instant, timeout};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::debug;

use crate::batch::{self, RecvBatch, Replies};
use crate::wire::{self, Fitted, Fitting, Verdict, WireQuery};
use crate::{Handler, Protocol, Request};

/// Largest datagram accepted. A datagram that fills the buffer plus one spare byte was cut by
/// the kernel and is dropped rather than parsed.
const UDP_RECV_BUF: usize = 4096;

/// Pause after an accept or receive error, so a persistent one (out of file descriptors) does
/// not spin a core.
const ERROR_BACKOFF: Duration = Duration::from_millis(10);

/// The largest UDP payload that fits any link carrying IPv6 (1280 bytes less 48 of headers):
/// with replies capped there, they are sent with DF set (see `batch::never_fragment`).
const NEVER_FRAGMENTED_PAYLOAD: u16 = 1232;

/// How long a UDP receive thread waits in the kernel on an idle socket before it looks whether
/// the server is shutting down.
const UDP_THREAD_WAKE: Duration = Duration::from_millis(100);

/// How long the UDP receive thread waits for room in the socket's send buffer before it drops
/// the replies that do not fit (a client that gets none retries).
const UDP_SEND_WAIT: Duration = Duration::from_secs(1);

/// Batches of datagrams the UDP thread may have passed to the runtime and not yet seen taken;
/// beyond this, further ones are dropped and counted as overloaded.
const HANDOFF_BATCHES: usize = 1024;

/// How often, and how far apart, a reply from a spawned task is retried while the socket's
/// send buffer is full.
const UDP_SEND_RETRIES: u32 = 10;
const UDP_SEND_RETRY_PAUSE: Duration = Duration::from_millis(1);

/// Limits for [`serve`]. `Default` gives production values.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// Cap on the UDP payload size a client may ask for with EDNS; also the size advertised in
    /// the server's OPT. Responses to clients without EDNS are always cut at 512 bytes.
    pub max_udp_payload: u16,
    /// How long a TCP connection may sit idle, and the bound on receiving one whole framed
    /// message (a client dribbling bytes is cut off when it expires). Also bounds each write.
    pub tcp_idle_timeout: Duration,
    /// Open TCP connections across all clients; further connections are closed on accept
    /// (or reclaim a stale one, see `tcp_reclaim_after`).
    pub max_tcp_connections: usize,
    /// Open TCP connections from one client IP address; further ones are closed on accept.
    pub max_tcp_connections_per_ip: usize,
    /// What a new connection does when `max_tcp_connections` are open. `None`: it is closed.
    /// `Some(age)`: it takes the place of the open connection that has gone longest without
    /// completing a message, if that is at least `age` (so a flood of idle or dribbling
    /// connections cannot lock well-behaved clients out until the idle timeout); only when
    /// no connection is that stale is the new one closed.
    pub tcp_reclaim_after: Option<Duration>,
    /// Per-client response rate limiting for UDP, consulted before each request that would
    /// get a reply; `None` answers everyone. TCP is never limited (its source address is
    /// proven by the handshake, so it cannot be used for reflection).
    pub response_limiter: Option<Arc<dyn ResponseLimiter>>,
    /// UDP requests whose handler did not finish on first poll and are still running. Beyond
    /// this, new such requests are dropped and counted in [`ServerStats::overloaded`].
    pub max_in_flight: usize,
    /// After shutdown, how long in-flight requests and open TCP exchanges may take to finish.
    pub shutdown_grace: Duration,
    /// Receive UDP on a thread of its own that waits in the kernel (`recvmmsg`) between
    /// batches, rather than through the runtime's `epoll`. A socket in `epoll` keeps a waiter
    /// on its wait queue, so every datagram sent or received pays a wake-up callback; a thread
    /// that is busy answering has none, and an idle one costs the same single wait. Answers
    /// that must wait (forwarding) still run as tasks of the runtime; for a handler that
    /// answers from wire form (a cache), what that path declines is passed to the runtime
    /// whole (see `Handoff`). [`serve_in_task`] always serves UDP on the runtime, for tests
    /// whose clock is paused.
    pub udp_thread: bool,
    /// Counters the server updates; clone the `Arc` before calling [`serve`] to read them.
    pub stats: Arc<ServerStats>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            max_udp_payload: 4096,
            tcp_idle_timeout: Duration::from_secs(10),
            max_tcp_connections: 1024,
            max_tcp_connections_per_ip: 64,
            tcp_reclaim_after: None,
            response_limiter: None,
            max_in_flight: 10_000,
            shutdown_grace: Duration::from_secs(5),
            udp_thread: true,
            stats: Arc::default(),
        }
    }
}

/// Counters kept by [`serve`], cheap to update from every task. Read them with
/// `stats.field.load(Ordering::Relaxed)`; they only ever increase.
#[derive(Debug, Default)]
pub struct ServerStats {
    /// Valid requests handed to the handler over UDP.
    pub udp_requests: AtomicU64,
    /// Valid requests handed to the handler over TCP.
    pub tcp_requests: AtomicU64,
    /// Packets dropped without a reply: shorter than a header, a response sent as a query,
    /// a datagram larger than the receive buffer, a TCP frame shorter than a header.
    pub dropped: AtomicU64,
    /// FORMERR replies to malformed requests.
    pub formerr: AtomicU64,
    /// NOTIMP replies to opcodes other than QUERY and NOTIFY.
    pub notimp: AtomicU64,
    /// BADVERS replies to EDNS versions above 0.
    pub badvers: AtomicU64,
    /// UDP requests dropped because `max_in_flight` requests were already being handled.
    pub overloaded: AtomicU64,
    /// UDP responses sent truncated, with TC set.
    pub truncated: AtomicU64,
    /// Responses replaced by SERVFAIL because they could not be encoded or exceeded 64 KiB.
    pub servfail: AtomicU64,
    /// TCP connections closed on accept because of the total or per-IP cap.
    pub tcp_rejected: AtomicU64,
    /// TCP connections closed because they were idle or too slow to send a message.
    pub tcp_timeouts: AtomicU64,
    /// Stale TCP connections closed to make room for a new one at the total cap.
    pub tcp_reclaimed: AtomicU64,
    /// UDP requests left unanswered by the [`ResponseLimiter`].
    pub rate_limited_dropped: AtomicU64,
    /// UDP requests answered with an empty truncated reply by the [`ResponseLimiter`].
    pub rate_limited_slipped: AtomicU64,
}

/// What a [`ResponseLimiter`] lets the server do with one UDP request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Limit {
    /// Answer it as usual.
    Answer,
    /// Send an empty reply with TC set instead, so a real client retries over TCP, while a
    /// spoofed victim of reflection gets nothing larger than the query.
    Slip,
    /// Send nothing.
    Drop,
}

/// Decides, per client address, whether a UDP request is answered. Called once per request
/// that would get a reply, from the receive loop, so it must be quick and must not block.
pub trait ResponseLimiter: Send + Sync + Debug + 'static {
    /// The fate of one request from `client`.
    fn check(&self, client: IpAddr) -> Limit;
}

impl ServerStats {
    fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// Binds UDP and TCP on the same address. With port 0 the kernel picks the UDP port and TCP
/// follows it; if that TCP port is already taken, a few fresh pairs are tried.
pub async fn bind(addr: SocketAddr) -> io::Result<(UdpSocket, TcpListener)> {
    if addr.port() != 0 {
        return Ok((UdpSocket::bind(addr).await?, TcpListener::bind(addr).await?));
    }
    let mut last_error = None;
    for _ in 0..8 {
        let udp = UdpSocket::bind(addr).await?;
        let port = udp.local_addr()?.port();
        match TcpListener::bind(SocketAddr::new(addr.ip(), port)).await {
            Ok(tcp) => return Ok((udp, tcp)),
            Err(error) if error.kind() == io::ErrorKind::AddrInUse => last_error = Some(error),
            Err(error) => return Err(error),
        }
    }
    Err(last_error.unwrap_or_else(|| io::Error::from(io::ErrorKind::AddrInUse)))
}

/// Serves DNS on the given sockets until `shutdown` is cancelled.
///
/// Then it stops receiving and accepting, gives in-flight requests up to
/// [`ServerConfig::shutdown_grace`] to finish, abandons the rest, and returns. Either socket may
/// be `None` to serve only one transport.
///
/// Receive and accept errors are logged and retried, never fatal; an error is returned only at
/// start, if a socket cannot report its local address or the UDP thread cannot be set up.
pub async fn serve<H: Handler>(
    udp: Option<UdpSocket>,
    tcp: Option<TcpListener>,
    handler: Arc<H>,
    config: ServerConfig,
    shutdown: CancellationToken,
) -> io::Result<()> {
    if let Some(udp) = &udp {
        let addr = udp.local_addr()?;
        debug!(%addr, "serving DNS over UDP");
        if addr.is_ipv4()
            && config.max_udp_payload <= NEVER_FRAGMENTED_PAYLOAD
            && let Err(error) = batch::never_fragment(udp)
        {
            debug!(%error, "cannot set DF on UDP replies");
        }
    }
    if let Some(tcp) = &tcp {
        debug!(addr = %tcp.local_addr()?, "serving DNS over TCP");
    }

    let server = Arc::new(Server::new(handler, config, shutdown));

    let (udp_thread, udp) = match udp {
        Some(udp) if server.config.udp_thread => (Some(server.clone().udp_thread(udp)?), None),
        udp => (None, udp),
    };
    let udp_loop = async {
        if let Some(thread) = udp_thread {
            thread.await;
        }
        if let Some(udp) = udp {
            server.clone().udp_loop(Arc::new(udp)).await;
        }
    };
    let tcp_loop = async {
        if let Some(tcp) = tcp {
            server.clone().tcp_loop(tcp).await;
        }
    };
    tokio::join!(udp_loop, tcp_loop);

    server.tasks.close();
    if timeout(server.config.shutdown_grace, server.tasks.wait())
        .await
        .is_err()
    {
        debug!(
            remaining = server.tasks.len(),
            "shutdown grace expired, abandoning requests"
        );
        server.abandon.cancel();
    }
    Ok(())
}

/// State shared by the loops and the tasks they spawn.
struct Server<H> {
    config: ServerConfig,
    handler: Arc<H>,
    /// Permits for UDP requests handled in their own task.
    in_flight: Arc<Semaphore>,
    /// Every spawned task, so shutdown can wait for them.
    tasks: TaskTracker,
    /// Cancelled when the shutdown grace expires; spawned tasks stop at their next await.
    abandon: CancellationToken,
    connections: Arc<Mutex<Connections>>,
    shutdown: CancellationToken,
}

/// What happens to one incoming message.
#[expect(
    clippy::large_enum_variant,
    reason = "returned and matched at once, never stored; boxing would cost an allocation per query"
)]
enum Next {
    /// Nothing goes back (junk, or a response sent as a query).
    Nothing,
    /// A reply the server wrote itself.
    Send(Vec<u8>),
    /// Ask the handler, then fit its answer.
    Handle(Request, Fitting),
}

type BoxedResponse = Pin<Box<dyn Future<Output = Message> + Send>>;

impl<H: Handler> Server<H> {
    fn new(handler: Arc<H>, config: ServerConfig, shutdown: CancellationToken) -> Self {
        Self {
            in_flight: Arc::new(Semaphore::new(config.max_in_flight)),
            config,
            handler,
            tasks: TaskTracker::new(),
            abandon: CancellationToken::new(),
            connections: Arc::default(),
            shutdown,
        }
    }

    fn stats(&self) -> &ServerStats {
        &self.config.stats
    }

    /// Vets `bytes` and decides what to do, counting as it goes.
    fn next(&self, bytes: &[u8], src: SocketAddr, protocol: Protocol) -> Next {
        let stats = self.stats();
        match wire::vet(bytes, self.config.max_udp_payload) {
            Verdict::Drop(reason) => {
                debug!(%src, ?protocol, reason, "dropped request");
                ServerStats::bump(&stats.dropped);
                Next::Nothing
            }
            Verdict::Reject(reply) => {
                let code = reply.metadata.response_code;
                debug!(%src, ?protocol, %code, "rejected request");
                ServerStats::bump(match code {
                    ResponseCode::NotImp => &stats.notimp,
                    ResponseCode::BADVERS => &stats.badvers,
                    _ => &stats.formerr,
                });
                // Error replies are a header, maybe a question and an OPT: they fit in 512.
                match reply.to_vec() {
                    Ok(bytes) => Next::Send(bytes),
                    Err(error) => {
                        debug!(%src, %error, "could not encode rejection");
                        Next::Nothing
                    }
                }
            }
            Verdict::Handle(message) => {
                ServerStats::bump(match protocol {
                    Protocol::Udp => &stats.udp_requests,
                    Protocol::Tcp => &stats.tcp_requests,
                });
                let fitting = Fitting::new(&message, protocol, self.config.max_udp_payload);
                let request = Request {
                    message,
                    src,
                    protocol,
                };
                Next::Handle(request, fitting)
            }
        }
    }

    /// Fits the handler's response to the request's transport, counting what was done to it.
    fn fit(&self, fitting: &Fitting, response: Message) -> Option<Vec<u8>> {
        let fitted = fitting.fit(response);
        match &fitted {
            Some(Fitted::Truncated(_)) => ServerStats::bump(&self.stats().truncated),
            Some(Fitted::ServFail(_)) => ServerStats::bump(&self.stats().servfail),
            Some(Fitted::Whole(_)) | None => {}
        }
        fitted.map(Fitted::into_bytes)
    }

    /// The handler's encoded answer to a plain query, when it has one, counted as a request.
    /// Writes the handler's encoded answer to a plain query into `reply` (empty), when it has
    /// one, counted as a request.
    fn answer_wire(&self, query: &WireQuery<'_>, reply: &mut Vec<u8>) -> bool {
        let limit = query.limit(self.config.max_udp_payload);
        if !self.handler.handle_wire(query, limit, reply) {
            return false;
        }
        ServerStats::bump(match query.protocol {
            Protocol::Udp => &self.stats().udp_requests,
            Protocol::Tcp => &self.stats().tcp_requests,
        });
        true
    }

    /// The reply to one message when no response limiter is involved: the handler's encoded
    /// answer, or else vetting, the handler and fitting. `None` when nothing goes back.
    async fn reply(&self, bytes: &[u8], src: SocketAddr, protocol: Protocol) -> Option<Vec<u8>> {
        if H::ANSWERS_WIRE
            && let Some(query) = WireQuery::read(bytes, src, protocol)
        {
            let mut reply = Vec::new();
            if self.answer_wire(&query, &mut reply) {
                return Some(reply);
            }
        }
        match self.next(bytes, src, protocol) {
            Next::Nothing => None,
            Next::Send(reply) => Some(reply),
            Next::Handle(request, fitting) => {
                let message = self.handler.handle(request).await;
                self.fit(&fitting, message)
            }
        }
    }

    async fn udp_loop(self: Arc<Self>, socket: Arc<UdpSocket>) {
        let replier = UdpReplier::Runtime(socket.clone());
        let mut batch = RecvBatch::new(UDP_RECV_BUF + 1);
        let mut replies = Replies::default();
        loop {
            let readable = tokio::select! {
                biased;
                () = self.shutdown.cancelled() => return,
                readable = socket.readable() => readable,
            };
            let received = readable.and_then(|()| batch.recv(&socket));
            if let Err(error) = received {
                if error.kind() != io::ErrorKind::WouldBlock {
                    // Includes ICMP errors from earlier sends reported on this socket.
                    debug!(%error, "UDP receive failed");
                    tokio::time::sleep(ERROR_BACKOFF).await;
                }
                continue;
            }
            self.answer_batch(&batch, &replier, &mut replies, None);
            send_batch(&socket, &mut replies).await;
        }
    }

    /// Starts serving UDP from a thread of its own (see [`ServerConfig::udp_thread`]); the
    /// returned future ends when the thread does, after shutdown. Dropping the future stops
    /// the thread too, so it never outlives the runtime it spawns tasks on.
    fn udp_thread(self: Arc<Self>, socket: UdpSocket) -> io::Result<impl Future<Output = ()>> {
        let runtime = tokio::runtime::Handle::current();
        let socket = Arc::new(blocking_socket(socket)?);
        let (done_tx, done) = tokio::sync::oneshot::channel::<()>();
        let stop = self.shutdown.child_token();
        let stop_when_dropped = stop.clone().drop_guard();
        let handoff = if H::ANSWERS_WIRE {
            let (handoff, batches) = tokio::sync::mpsc::channel(HANDOFF_BATCHES);
            let replier = UdpReplier::Thread(socket.clone());
            self.tasks
                .spawn(self.clone().answer_handed_off(batches, replier));
            Some(handoff)
        } else {
            None
        };
        std::thread::Builder::new()
            .name("dns-udp".to_owned())
            .spawn(move || {
                // Tasks spawned and sockets created while answering belong to the runtime.
                let _runtime = runtime.enter();
                self.udp_blocking_loop(&socket, handoff.as_ref(), &stop);
                drop(done_tx);
            })?;
        Ok(async move {
            let _stop_when_dropped = stop_when_dropped;
            let _ = done.await;
        })
    }

    /// Receives and answers until `stop` is cancelled, which it notices within
    /// `UDP_THREAD_WAKE`.
    fn udp_blocking_loop(
        self: &Arc<Self>,
        socket: &Arc<std::net::UdpSocket>,
        handoff: Option<&tokio::sync::mpsc::Sender<Handoff>>,
        stop: &CancellationToken,
    ) {
        let replier = UdpReplier::Thread(socket.clone());
        let mut batch = RecvBatch::new(UDP_RECV_BUF + 1);
        let mut replies = Replies::default();
        let mut pending = Handoff::default();
        while !stop.is_cancelled() {
            if let Err(error) = batch.recv_blocking(socket.as_ref()) {
                if !matches!(
                    error.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                        | io::ErrorKind::Interrupted
                ) {
                    debug!(%error, "UDP receive failed");
                    std::thread::sleep(ERROR_BACKOFF);
                }
                continue;
            }
            let passed = handoff.is_some().then_some(&mut pending);
            self.answer_batch(&batch, &replier, &mut replies, passed);
            send_batch_blocking(socket.as_ref(), &mut replies);
            if let Some(handoff) = handoff
                && !pending.datagrams.is_empty()
                && let Err(error) = handoff.try_send(std::mem::take(&mut pending))
            {
                let dropped = error.into_inner().datagrams.len();
                debug!(dropped, "dropped requests: the runtime is behind");
                self.stats()
                    .overloaded
                    .fetch_add(dropped as u64, Ordering::Relaxed);
            }
        }
    }

    /// Answers on the runtime what the UDP thread passed to it (see [`Handoff`]), until the
    /// thread stops.
    async fn answer_handed_off(
        self: Arc<Self>,
        mut batches: tokio::sync::mpsc::Receiver<Handoff>,
        replier: UdpReplier,
    ) {
        loop {
            let batch = tokio::select! {
                () = self.abandon.cancelled() => return,
                batch = batches.recv() => batch,
            };
            let Some(batch) = batch else { return };
            for (range, src, verdict) in batch.datagrams {
                let bytes = &batch.bytes[range];
                if let Some(reply) = self.decoded_datagram(&replier, bytes, src, verdict) {
                    replier.send_to(&reply, src).await;
                }
            }
        }
    }

    /// Answers the datagrams of one received batch, collecting the replies that are ready;
    /// with `passed`, what the handler's wire path declines goes there instead.
    fn answer_batch(
        self: &Arc<Self>,
        batch: &RecvBatch,
        replier: &UdpReplier,
        replies: &mut Replies,
        mut passed: Option<&mut Handoff>,
    ) {
        for (bytes, src) in batch.datagrams() {
            let Some(src) = src else {
                ServerStats::bump(&self.stats().dropped);
                continue;
            };
            if bytes.len() > UDP_RECV_BUF {
                debug!(%src, len = bytes.len(), "dropped oversized datagram");
                ServerStats::bump(&self.stats().dropped);
                continue;
            }
            self.datagram(replier, bytes, src, replies, passed.as_deref_mut());
        }
    }

    /// Handles one datagram, adding its reply to `replies` when it is ready at once; a spawned
    /// task sends the replies that are not. With `passed`, a datagram the wire path declines
    /// is left there for the runtime.
    fn datagram(
        self: &Arc<Self>,
        replier: &UdpReplier,
        bytes: &[u8],
        src: SocketAddr,
        replies: &mut Replies,
        passed: Option<&mut Handoff>,
    ) {
        // The limiter is asked once per request that gets a reply, which a plain query does.
        let mut verdict = None;
        if H::ANSWERS_WIRE
            && let Some(query) = WireQuery::read(bytes, src, Protocol::Udp)
        {
            let limit = self.limit(src);
            if limit == Limit::Answer && self.answer_wire(&query, replies.buffer()) {
                replies.commit(src);
                return;
            }
            verdict = Some(limit);
        }
        if let Some(passed) = passed {
            passed.push(bytes, src, verdict);
        } else if let Some(reply) = self.decoded_datagram(replier, bytes, src, verdict) {
            replies.push(reply, src);
        }
    }

    /// [`datagram`](Self::datagram) for a request that is decoded: the reply when it is ready
    /// at once. `verdict` is the limiter's, when it was asked already.
    fn decoded_datagram(
        self: &Arc<Self>,
        replier: &UdpReplier,
        bytes: &[u8],
        src: SocketAddr,
        verdict: Option<Limit>,
    ) -> Option<Vec<u8>> {
        let limit = || verdict.unwrap_or_else(|| self.limit(src));
        match self.next(bytes, src, Protocol::Udp) {
            Next::Nothing => None,
            Next::Send(reply) => match limit() {
                // An error reply is as small as a truncated one: slipping sends it.
                Limit::Answer | Limit::Slip => Some(reply),
                Limit::Drop => None,
            },
            Next::Handle(request, fitting) => match limit() {
                Limit::Answer => self.handle_datagram(replier, request, fitting),
                Limit::Slip => {
                    let mut reply = Message::response(
                        request.message.metadata.id,
                        request.message.metadata.op_code,
                    );
                    reply.metadata.recursion_desired = request.message.metadata.recursion_desired;
                    reply.metadata.truncation = true;
                    reply.queries = request.message.queries;
                    fitting.fit(reply).map(Fitted::into_bytes)
                }
                Limit::Drop => None,
            },
        }
    }

    /// Asks the response limiter, if any, about a UDP request from `src`, counting its verdict.
    fn limit(&self, src: SocketAddr) -> Limit {
        let Some(limiter) = &self.config.response_limiter else {
            return Limit::Answer;
        };
        let verdict = limiter.check(src.ip());
        match verdict {
            Limit::Answer => {}
            Limit::Slip => ServerStats::bump(&self.stats().rate_limited_slipped),
            Limit::Drop => ServerStats::bump(&self.stats().rate_limited_dropped),
        }
        verdict
    }

    /// Runs the handler for one datagram. Most answers come from memory and are ready on first
    /// poll, so that poll happens inline, sparing a task spawn; only answers that must wait
    /// (upstream forwarding) get a task, bounded by `max_in_flight`.
    fn handle_datagram(
        self: &Arc<Self>,
        replier: &UdpReplier,
        request: Request,
        fitting: Fitting,
    ) -> Option<Vec<u8>> {
        let src = request.src;
        let handler = self.handler.clone();
        let mut response: BoxedResponse = Box::pin(async move { handler.handle(request).await });
        // A no-op waker is fine: if the future is pending, the spawned task polls it again with
        // a real waker, which is the one the future must register.
        let first_poll = response
            .as_mut()
            .poll(&mut Context::from_waker(Waker::noop()));
        if let Poll::Ready(message) = first_poll {
            return self.fit(&fitting, message);
        }

        let Ok(permit) = self.in_flight.clone().try_acquire_owned() else {
            debug!(%src, "dropped request: too many in flight");
            ServerStats::bump(&self.stats().overloaded);
            return None;
        };
        let server = self.clone();
        let replier = replier.clone();
        self.tasks.spawn(async move {
            let _permit = permit;
            tokio::select! {
                () = server.abandon.cancelled() => {}
                message = response => {
                    if let Some(reply) = server.fit(&fitting, message) {
                        replier.send_to(&reply, src).await;
                    }
                }
            }
        });
        None
    }

    async fn tcp_loop(self: Arc<Self>, listener: TcpListener) {
        loop {
            let accepted = tokio::select! {
                biased;
                () = self.shutdown.cancelled() => return,
                accepted = listener.accept() => accepted,
            };
            let (stream, peer) = match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    debug!(%error, "TCP accept failed");
                    tokio::time::sleep(ERROR_BACKOFF).await;
                    continue;
                }
            };
            let slot = match Connections::admit(&self.connections, &self.config, peer.ip()) {
                Admission::Admitted(slot) => slot,
                Admission::Reclaimed(slot, victim) => {
                    debug!(%peer, %victim, "closed the stalest TCP connection to make room");
                    ServerStats::bump(&self.stats().tcp_reclaimed);
                    slot
                }
                Admission::Refused => {
                    debug!(%peer, "closed TCP connection: over the connection cap");
                    ServerStats::bump(&self.stats().tcp_rejected);
                    continue;
                }
            };
            // Replies are small and written whole; don't let Nagle hold pipelined ones back.
            let _ = stream.set_nodelay(true);
            let server = self.clone();
            self.tasks.spawn(async move {
                let reclaimed = slot.closed.clone();
                tokio::select! {
                    () = server.abandon.cancelled() => {}
                    () = reclaimed.cancelled() => {}
                    () = server.tcp_connection(stream, peer, Some(&slot)) => {}
                }
            });
        }
    }

    /// Answers framed queries on one connection, one at a time, until the client closes it,
    /// misbehaves, goes quiet for `tcp_idle_timeout`, or the server shuts down.
    async fn tcp_connection<S>(&self, mut stream: S, peer: SocketAddr, slot: Option<&Slot>)
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let limit = self.config.tcp_idle_timeout;
        loop {
            // One timer covers both the idle wait and receiving the whole message, which is
            // what cuts off a client that sends a byte at a time.
            let frame = tokio::select! {
                biased;
                () = self.shutdown.cancelled() => return,
                frame = timeout(limit, wire::read_frame(&mut stream)) => frame,
            };
            let bytes = match frame {
                Ok(Ok(bytes)) => bytes,
                Ok(Err(error)) => {
                    if error.kind() == io::ErrorKind::InvalidData {
                        ServerStats::bump(&self.stats().dropped);
                    }
                    debug!(%peer, %error, "closed TCP connection");
                    return;
                }
                Err(_) => {
                    debug!(%peer, "closed TCP connection: idle or too slow");
                    ServerStats::bump(&self.stats().tcp_timeouts);
                    return;
                }
            };
            if let Some(slot) = slot {
                slot.touch();
            }
            // A stream that carries junk is not worth keeping.
            let Some(reply) = self.reply(&bytes, peer, Protocol::Tcp).await else {
                return;
            };
            let Some(framed) = wire::frame(&reply) else {
                return;
            };
            match timeout(limit, stream.write_all(&framed)).await {
                Ok(Ok(())) => {}
                Ok(Err(error)) => {
                    debug!(%peer, %error, "TCP write failed");
                    return;
                }
                Err(_) => {
                    debug!(%peer, "closed TCP connection: client not reading");
                    ServerStats::bump(&self.stats().tcp_timeouts);
                    return;
                }
            }
        }
    }
}

/// Answers one message exactly as [`serve`] does, without a socket: the same vetting, handler
/// call and fitting to `protocol` (on UDP, to the client's payload size), counted in
/// `config.stats`; the response limiter is not consulted. `None` where the server would send
/// nothing. For tests and fuzzing.
pub async fn answer_message<H: Handler>(
    handler: Arc<H>,
    config: ServerConfig,
    bytes: &[u8],
    src: SocketAddr,
    protocol: Protocol,
) -> Option<Vec<u8>> {
    let server = Server::new(handler, config, CancellationToken::new());
    if protocol == Protocol::Udp && bytes.len() > UDP_RECV_BUF {
        ServerStats::bump(&server.stats().dropped);
        return None;
    }
    server.reply(bytes, src, protocol).await
}

/// Runs [`serve`]'s TCP connection handling on any byte stream until the peer closes it,
/// misbehaves or idles past [`ServerConfig::tcp_idle_timeout`]: length-prefixed requests in,
/// length-prefixed replies out. For tests and fuzzing the framing without a TCP socket.
pub async fn serve_stream<H, S>(handler: Arc<H>, config: ServerConfig, stream: S, peer: SocketAddr)
where
    H: Handler,
    S: AsyncRead + AsyncWrite + Unpin,
{
    let server = Server::new(handler, config, CancellationToken::new());
    server.tcp_connection(stream, peer, None).await;
}

/// Sends every reply in `replies`, in batches, and empties it. A reply the kernel refuses is
/// logged and skipped; a full send buffer is waited out.
async fn send_batch(socket: &UdpSocket, replies: &mut Replies) {
    let mut start = 0;
    while send_until_full(replies, &mut start, |ready| batch::send(socket, ready)) {
        if let Err(error) = socket.writable().await {
            debug!(%error, "UDP socket not writable; replies dropped");
            break;
        }
    }
    replies.clear();
}

/// [`send_batch`] for the UDP thread's blocking socket, whose write timeout bounds the wait for
/// room; what does not fit by then is dropped.
fn send_batch_blocking(socket: &std::net::UdpSocket, replies: &mut Replies) {
    let mut start = 0;
    if send_until_full(replies, &mut start, |ready| {
        batch::send_blocking(socket, ready)
    }) {
        debug!(
            dropped = replies.ready().len() - start,
            "UDP send buffer full; replies dropped"
        );
    }
    replies.clear();
}

/// Sends the replies from `start` on with `send`, skipping (and logging) any the kernel refuses,
/// until all went (`false`) or the send buffer is full (`true`, `start` at the first unsent).
fn send_until_full(
    replies: &Replies,
    start: &mut usize,
    mut send: impl FnMut(&[(Vec<u8>, SocketAddr)]) -> io::Result<usize>,
) -> bool {
    let ready = replies.ready();
    while *start < ready.len() {
        match send(&ready[*start..]) {
            Ok(sent) => *start += sent,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(error)
                if matches!(
                    error.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                return true;
            }
            Err(error) => {
                debug!(dst = %ready[*start].1, %error, "UDP send failed");
                *start += 1;
            }
        }
    }
    false
}

/// Datagrams the UDP thread of a handler that answers from wire form (a cache) passes to the
/// runtime, one batch at a time: what the wire path declines mostly waits on an upstream, and
/// a future started on the thread would be finished, and its memory freed, on the runtime,
/// which glibc's per-thread arenas make dear. Copied into one buffer per batch.
#[derive(Debug, Default)]
struct Handoff {
    bytes: Vec<u8>,
    /// Where each datagram is in `bytes`, its sender, and the limiter's verdict if it was
    /// asked already.
    datagrams: Vec<(std::ops::Range<usize>, SocketAddr, Option<Limit>)>,
}

impl Handoff {
    fn push(&mut self, bytes: &[u8], src: SocketAddr, verdict: Option<Limit>) {
        let start = self.bytes.len();
        self.bytes.extend_from_slice(bytes);
        self.datagrams.push((start..self.bytes.len(), src, verdict));
    }
}

/// The UDP socket as seen by a task that sends one late reply.
#[derive(Clone, Debug)]
enum UdpReplier {
    /// Registered with the runtime.
    Runtime(Arc<UdpSocket>),
    /// The UDP thread's blocking socket: replies are sent without blocking, and retried
    /// briefly while the send buffer is full.
    Thread(Arc<std::net::UdpSocket>),
}

impl UdpReplier {
    async fn send_to(&self, reply: &[u8], dst: SocketAddr) {
        let sent = match self {
            Self::Runtime(socket) => socket.send_to(reply, dst).await.map(drop),
            Self::Thread(socket) => {
                let mut retries = 0;
                loop {
                    match batch::send_one(socket.as_ref(), reply, dst) {
                        Err(error)
                            if error.kind() == io::ErrorKind::WouldBlock
                                && retries < UDP_SEND_RETRIES =>
                        {
                            retries += 1;
                            tokio::time::sleep(UDP_SEND_RETRY_PAUSE).await;
                        }
                        sent => break sent,
                    }
                }
            }
        };
        if let Err(error) = sent {
            debug!(%dst, %error, "UDP send failed");
        }
    }
}

/// Takes `socket` out of the runtime and makes it blocking, with the UDP thread's timeouts.
fn blocking_socket(socket: UdpSocket) -> io::Result<std::net::UdpSocket> {
    let socket = socket.into_std()?;
    socket.set_nonblocking(false)?;
    socket.set_read_timeout(Some(UDP_THREAD_WAKE))?;
    socket.set_write_timeout(Some(UDP_SEND_WAIT))?;
    Ok(socket)
}

/// Open TCP connections, in total and per client address.
#[derive(Debug, Default)]
struct Connections {
    per_ip: HashMap<IpAddr, usize>,
    open: HashMap<u64, Open>,
    next_id: u64,
}

/// One open connection, as the table sees it.
#[derive(Debug)]
struct Open {
    ip: IpAddr,
    /// When it was accepted or last completed a message.
    active: Instant,
    /// Cancelled to close it when it is reclaimed.
    closed: CancellationToken,
}

/// The outcome of [`Connections::admit`].
enum Admission {
    Admitted(Slot),
    /// Admitted in place of the connection from this address, which is being closed.
    Reclaimed(Slot, IpAddr),
    Refused,
}

impl Connections {
    /// Takes a slot for a connection from `ip`: a free one, or (with `tcp_reclaim_after`)
    /// that of the stalest connection; `Refused` if a cap is reached.
    fn admit(table: &Arc<Mutex<Self>>, config: &ServerConfig, ip: IpAddr) -> Admission {
        let mut connections = table.lock().unwrap_or_else(PoisonError::into_inner);
        let from_ip = connections.per_ip.get(&ip).copied().unwrap_or(0);
        if from_ip >= config.max_tcp_connections_per_ip {
            return Admission::Refused;
        }
        let now = Instant::now();
        let mut victim = None;
        if connections.open.len() >= config.max_tcp_connections {
            let Some(age) = config.tcp_reclaim_after else {
                return Admission::Refused;
            };
            let stalest = connections
                .open
                .iter()
                .min_by_key(|(_, open)| open.active)
                .filter(|(_, open)| now.saturating_duration_since(open.active) >= age)
                .map(|(id, _)| *id);
            let Some(id) = stalest else {
                return Admission::Refused;
            };
            let open = connections.forget(id).expect("the stalest is open");
            open.closed.cancel();
            victim = Some(open.ip);
        }
        let id = connections.next_id;
        connections.next_id += 1;
        let closed = CancellationToken::new();
        connections.open.insert(
            id,
            Open {
                ip,
                active: now,
                closed: closed.clone(),
            },
        );
        *connections.per_ip.entry(ip).or_default() += 1;
        let slot = Slot {
            table: table.clone(),
            id,
            closed,
        };
        match victim {
            Some(victim) => Admission::Reclaimed(slot, victim),
            None => Admission::Admitted(slot),
        }
    }

    /// Removes connection `id` from the table and the per-IP counts.
    fn forget(&mut self, id: u64) -> Option<Open> {
        let open = self.open.remove(&id)?;
        if let Some(count) = self.per_ip.get_mut(&open.ip) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                self.per_ip.remove(&open.ip);
            }
        }
        Some(open)
    }
}

/// A connection's place in [`Connections`], given back on drop.
struct Slot {
    table: Arc<Mutex<Connections>>,
    id: u64,
    /// Cancelled when the connection is reclaimed for another.
    closed: CancellationToken,
}

impl Slot {
    /// Notes that the connection just completed a message.
    fn touch(&self) {
        let mut connections = self.table.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(open) = connections.open.get_mut(&self.id) {
            open.active = Instant::now();
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        // Already gone if it was reclaimed.
        let _ = self
            .table
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .forget(self.id);
    }
}

/// A [`serve`] running in the background: on a thread of its own ([`serve_on_thread`]) or as a
/// task of the caller's runtime ([`serve_in_task`]).
#[derive(Debug)]
pub struct RunningServer {
    done: tokio::sync::oneshot::Receiver<io::Result<()>>,
}

/// Runs [`serve`] as a task of the current runtime and returns at once. Tests that pause the
/// runtime's clock need this: a server on another thread runs in real time and would be outrun.
pub fn serve_in_task<H: Handler>(
    udp: Option<UdpSocket>,
    tcp: Option<TcpListener>,
    handler: Arc<H>,
    config: ServerConfig,
    shutdown: CancellationToken,
) -> RunningServer {
    let (done_tx, done) = tokio::sync::oneshot::channel();
    let config = ServerConfig {
        udp_thread: false,
        ..config
    };
    tokio::spawn(async move {
        let _ = done_tx.send(serve(udp, tcp, handler, config, shutdown).await);
    });
    RunningServer { done }
}

impl RunningServer {
    /// Waits until the server has drained after shutdown.
    pub async fn wait(self) -> io::Result<()> {
        self.done
            .await
            .unwrap_or_else(|_| Err(io::Error::other("DNS server ended abnormally")))
    }
}

/// Runs [`serve`] on a new thread with a single-threaded runtime of its own, and returns at once.
///
/// Answering from memory takes a few microseconds between a receive and a send; on a
/// multi-threaded runtime every send also wakes an idle worker (the socket's write-readiness
/// edge), which cost more CPU than the answers themselves. A runtime of its own (and, with
/// [`ServerConfig::udp_thread`], a UDP thread beside it) keeps the receive-answer-send loop on
/// one core, while the caller's runtime does everything else (API watches, HTTP). The sockets
/// may have been bound on any runtime.
pub fn serve_on_thread<H: Handler>(
    name: &str,
    udp: Option<UdpSocket>,
    tcp: Option<TcpListener>,
    handler: Arc<H>,
    config: ServerConfig,
    shutdown: CancellationToken,
) -> io::Result<RunningServer> {
    let udp = udp.map(UdpSocket::into_std).transpose()?;
    let tcp = tcp.map(TcpListener::into_std).transpose()?;
    let (done_tx, done) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name(name.to_owned())
        .spawn(move || {
            let result = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .and_then(|runtime| {
                    runtime.block_on(async move {
                        let udp = udp.map(UdpSocket::from_std).transpose()?;
                        let tcp = tcp.map(TcpListener::from_std).transpose()?;
                        serve(udp, tcp, handler, config, shutdown).await
                    })
                });
            let _ = done_tx.send(result);
        })?;
    Ok(RunningServer { done })
}
