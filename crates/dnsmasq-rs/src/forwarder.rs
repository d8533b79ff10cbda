//! The DNS handler: local answers, the cache, routing, coalescing and forwarding.
//!
//! A request goes, in order: NOTIFY handling; CHAOS statistics; hosts files; `--server=/d/`
//! local-only domains; the cache; and finally upstream, where identical queries in flight
//! share one upstream query. Cache hits never wait, so the server answers them inline.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use arc_swap::ArcSwap;
use futures::FutureExt;
use futures::future::{BoxFuture, Shared};
use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{DNSClass, Name, Record, RecordType};
use hickory_proto::serialize::binary::{BinDecodable, BinDecoder, BinEncodable, BinEncoder};
use kdns_net::{Handler, PoolError, Request, UpstreamPool, WireQuery};
use tokio::sync::Semaphore;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use crate::bailiwick;
use crate::cache::{CacheKey, CachePolicy, ResponseCache, WireKey};
use crate::chaos::{self, ChaosStats};
use crate::config::NotifyPolicy;
use crate::hosts::{Hosts, HostsAnswer};
use crate::metrics::Metrics;
use crate::route::{Route, Routes};

/// The forwarder's settings that do not change while it runs.
#[derive(Clone, Debug)]
pub struct ForwarderSettings {
    /// The cache's bound and TTL rules.
    pub cache: CachePolicy,
    /// Who may send NOTIFY.
    pub notify: NotifyPolicy,
    /// The UDP size advertised upstream and to EDNS clients.
    pub edns_packet_max: u16,
    /// Upstream fetches in flight at once; beyond it, SERVFAIL.
    pub forward_max: usize,
    /// Log each query at info.
    pub log_queries: bool,
}

/// Where an answer came from, for `--log-queries`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Source {
    Cache,
    Hosts,
    Local,
    Chaos,
    Upstream,
    Coalesced,
    Notify,
}

/// What one upstream fetch produced; shared by every request that waited for it.
#[derive(Debug)]
enum Fetched {
    Answer(Message),
    /// Every server failed (or there were none).
    Failed {
        no_servers: bool,
    },
    /// `--dns-forward-max` fetches were already in flight.
    Busy,
}

type Fetch = Shared<BoxFuture<'static, Arc<Fetched>>>;

/// The handler behind port 53. Cheap to clone; clones share everything.
#[derive(Clone, Debug)]
pub struct Forwarder {
    inner: Arc<Inner>,
}

struct Inner {
    settings: ForwarderSettings,
    cache: Mutex<ResponseCache>,
    routes: ArcSwap<Routes>,
    hosts: ArcSwap<Hosts>,
    inflight: Mutex<HashMap<CacheKey, (u64, Fetch)>>,
    next_fetch: AtomicU64,
    forward_slots: Arc<Semaphore>,
    metrics: Metrics,
    /// Names of loop-detection probes sent, and the server each was sent to.
    loop_probes: Mutex<HashMap<Name, SocketAddr>>,
    /// Servers whose probe came back to us.
    looped: Mutex<Vec<SocketAddr>>,
    loop_found: tokio::sync::Notify,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Forwarder")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding one of these locks leaves consistent data (every critical section
    // is a plain map or cache operation), so carry on with it.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Forwarder {
    /// A forwarder with an empty cache.
    pub fn new(
        settings: ForwarderSettings,
        routes: Routes,
        hosts: Hosts,
        metrics: Metrics,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                cache: Mutex::new(ResponseCache::new(settings.cache.clone())),
                forward_slots: Arc::new(Semaphore::new(settings.forward_max)),
                settings,
                routes: ArcSwap::from_pointee(routes),
                hosts: ArcSwap::from_pointee(hosts),
                inflight: Mutex::default(),
                next_fetch: AtomicU64::new(0),
                metrics,
                loop_probes: Mutex::default(),
                looped: Mutex::default(),
                loop_found: tokio::sync::Notify::new(),
            }),
        }
    }

    /// The routing table in force.
    pub fn routes(&self) -> Arc<Routes> {
        self.inner.routes.load_full()
    }

    /// Replaces the routing table, dropping exactly the cached answers whose names it routes
    /// elsewhere; everything else stays cached. Returns how many entries were dropped.
    pub fn set_routes(&self, routes: Routes) -> usize {
        let old = self.inner.routes.load_full();
        let changed = old.changed_domains(&routes);
        let routes = Arc::new(routes);
        let dropped = {
            let mut cache = lock(&self.inner.cache);
            let dropped = cache.invalidate_where(&changed, |key| {
                let name = key.name();
                old.route(&name).addrs() != routes.route(&name).addrs()
            });
            // Swapped under the cache lock, so a fetch that inserts after this point either
            // sees the new table or the invalidation.
            self.inner.routes.store(routes);
            self.inner.metrics.cache_held(cache.records());
            dropped
        };
        self.drop_inflight(|name| changed.iter().any(|domain| domain.zone_of(name)));
        dropped
    }

    /// Replaces the hosts-file answers.
    pub fn set_hosts(&self, hosts: Hosts) {
        self.inner.hosts.store(Arc::new(hosts));
    }

    /// Records held in the cache.
    pub fn cache_records(&self) -> usize {
        lock(&self.inner.cache).records()
    }

    /// The CHAOS statistics as they stand.
    pub fn stats(&self) -> ChaosStats {
        self.inner.stats()
    }

    /// Drops cached answers at and below `name`, as a NOTIFY does. Returns how many.
    pub fn invalidate(&self, name: &Name) -> usize {
        self.inner.invalidate(name)
    }

    /// Names for loop-detection probes towards `servers` (`--dns-loop-detect`): a random name
    /// under `test.` per server that only this process knows. The caller sends each to its
    /// server; if one comes back to this process, that server forwards to us, and it is
    /// reported by [`Forwarder::looped_servers`].
    pub fn loop_probes(&self, servers: &[SocketAddr]) -> Vec<(Name, SocketAddr)> {
        let mut probes = lock(&self.inner.loop_probes);
        probes.clear();
        servers
            .iter()
            .filter_map(|server| {
                let label = format!("{:016x}", rand::random::<u64>());
                let name = Name::from_ascii(format!("{label}.test.")).ok()?;
                probes.insert(name.clone(), *server);
                Some((name, *server))
            })
            .collect()
    }

    /// Servers found to forward our queries back to us.
    pub fn looped_servers(&self) -> Vec<SocketAddr> {
        lock(&self.inner.looped).clone()
    }

    /// Completes when a loop is newly detected.
    pub async fn loop_detected(&self) {
        self.inner.loop_found.notified().await;
    }

    fn drop_inflight(&self, covered: impl Fn(&Name) -> bool) {
        lock(&self.inner.inflight).retain(|key, _| !covered(&key.name()));
    }
}

impl Inner {
    fn stats(&self) -> ChaosStats {
        let routes = self.routes.load();
        ChaosStats {
            cache_size: self.settings.cache.capacity as u64,
            insertions: self.metrics.insertions(),
            evictions: self.metrics.evictions(),
            misses: self.metrics.misses(),
            hits: self.metrics.hits(),
            servers: routes
                .upstreams()
                .iter()
                .map(|s| {
                    let addr = s.addr();
                    format!(
                        "{}#{} {} {}",
                        addr.ip(),
                        addr.port(),
                        s.queries(),
                        s.failures()
                    )
                })
                .collect(),
        }
    }

    fn invalidate(&self, name: &Name) -> usize {
        let dropped = {
            let mut cache = lock(&self.cache);
            let dropped = cache.invalidate(name);
            self.metrics.cache_held(cache.records());
            dropped
        };
        // New requests must not join a fetch that started before the change.
        lock(&self.inflight).retain(|key, _| !name.zone_of(&key.name()));
        dropped
    }

    async fn answer(self: Arc<Self>, request: Request) -> Message {
        let message = &request.message;
        if message.metadata.op_code == OpCode::Notify {
            let reply = self.notify(&request);
            self.log(&request, Source::Notify, &reply);
            return reply;
        }
        let Some(query) = message.queries.first().cloned() else {
            // The server only hands over requests with exactly one question.
            return error_reply(message, ResponseCode::FormErr);
        };
        let (source, reply) = self.resolve(&request, &query).await;
        self.metrics
            .request(query.query_type(), reply.metadata.response_code);
        self.log(&request, source, &reply);
        reply
    }

    async fn resolve(self: &Arc<Self>, request: &Request, query: &Query) -> (Source, Message) {
        let message = &request.message;
        let qname = query.name();
        if query.query_class() == DNSClass::CH
            && let Some(result) = chaos::answer(qname, query.query_type(), || self.stats())
        {
            let reply = match result {
                Ok(record) => {
                    let mut reply = self.reply_with(message, vec![record], ResponseCode::NoError);
                    reply.metadata.authoritative = true;
                    reply
                }
                Err(code) => self.reply_with(message, Vec::new(), code),
            };
            // Counted after answering, so `hits.bind` does not count itself (as in dnsmasq).
            self.metrics.hit();
            return (Source::Chaos, reply);
        }

        if query.query_class() == DNSClass::IN {
            if let Some(server) = self.loop_probe_returned(qname) {
                warn!(%server, "forwarding loop detected: this upstream sends our queries back to us; not using it");
                let mut looped = lock(&self.looped);
                if !looped.contains(&server) {
                    looped.push(server);
                    self.loop_found.notify_one();
                }
                drop(looped);
                return (
                    Source::Local,
                    self.reply_with(message, Vec::new(), ResponseCode::Refused),
                );
            }
            if let HostsAnswer::Records(records) =
                self.hosts.load().answer(qname, query.query_type())
            {
                let mut reply = self.reply_with(message, records, ResponseCode::NoError);
                reply.metadata.authoritative = true;
                self.metrics.hit();
                return (Source::Hosts, reply);
            }
        }

        let routes = self.routes.load_full();
        let pool = match routes.route(qname) {
            Route::Local => {
                let mut reply = self.reply_with(message, Vec::new(), ResponseCode::NXDomain);
                reply.metadata.authoritative = true;
                self.metrics.hit();
                return (Source::Local, reply);
            }
            Route::Forward(pool) => pool.clone(),
        };

        let Some(key) = CacheKey::for_request(message) else {
            return (Source::Local, error_reply(message, ResponseCode::FormErr));
        };
        let cached = lock(&self.cache).get(&key, Instant::now());
        if let Some(cached) = cached {
            self.metrics.hit();
            return (Source::Cache, self.reply_from(message, cached));
        }

        self.metrics.miss();
        let (fetch, coalesced) = {
            let mut inflight = lock(&self.inflight);
            match inflight.get(&key) {
                Some((_, fetch)) => (fetch.clone(), true),
                None => {
                    let id = self.next_fetch.fetch_add(1, Ordering::Relaxed);
                    let fetch = self
                        .clone()
                        .fetch(id, key.clone(), message, pool, routes)
                        .boxed()
                        .shared();
                    inflight.insert(key, (id, fetch.clone()));
                    (fetch, false)
                }
            }
        };
        if coalesced {
            self.metrics.coalesced();
        }
        let source = if coalesced {
            Source::Coalesced
        } else {
            Source::Upstream
        };
        let reply = match &*fetch.await {
            Fetched::Answer(reply) => self.reply_from(message, reply.clone()),
            Fetched::Failed { no_servers: true } => {
                self.reply_with(message, Vec::new(), ResponseCode::Refused)
            }
            Fetched::Failed { no_servers: false } | Fetched::Busy => {
                self.reply_with(message, Vec::new(), ResponseCode::ServFail)
            }
        };
        (source, reply)
    }

    /// Asks upstream for `key`'s question and caches the answer. Runs once per coalesced group,
    /// driven by whichever waiter polls it.
    fn fetch(
        self: Arc<Self>,
        id: u64,
        key: CacheKey,
        request: &Message,
        pool: Arc<UpstreamPool>,
        routes: Arc<Routes>,
    ) -> impl std::future::Future<Output = Arc<Fetched>> + Send + 'static {
        let query = self.upstream_query(request);
        async move {
            let outcome = self.fetch_once(&key, &query, &pool, &routes).await;
            let mut inflight = lock(&self.inflight);
            if inflight
                .get(&key)
                .is_some_and(|(current, _)| *current == id)
            {
                inflight.remove(&key);
            }
            Arc::new(outcome)
        }
    }

    async fn fetch_once(
        &self,
        key: &CacheKey,
        query: &Message,
        pool: &UpstreamPool,
        routes: &Arc<Routes>,
    ) -> Fetched {
        let Ok(_slot) = self.forward_slots.clone().try_acquire_owned() else {
            self.metrics.forward_rejected();
            warn!(
                limit = self.settings.forward_max,
                "maximum number of concurrent upstream queries reached (--dns-forward-max)"
            );
            return Fetched::Busy;
        };
        let generation = lock(&self.cache).generation();
        let result = pool.exchange(query).await;
        let attempts = match &result {
            Ok(answer) => &answer.attempts,
            Err(PoolError::AllFailed { attempts, .. }) => attempts,
            Err(_) => &Vec::new(),
        };
        for attempt in attempts {
            let failed = !matches!(attempt.rcode, Some(code) if code != ResponseCode::ServFail && code != ResponseCode::Refused);
            self.metrics
                .upstream_attempt(attempt.server, attempt.elapsed, failed);
        }
        match result {
            Ok(mut answer) => {
                let qname = key.name();
                let bailiwick = routes.domain_of(&qname);
                let scrubbed = bailiwick::scrub(&qname, &bailiwick, &mut answer.reply);
                if scrubbed > 0 {
                    debug!(%qname, %bailiwick, scrubbed, "dropped out-of-bailiwick records");
                    self.metrics.out_of_bailiwick(scrubbed);
                }
                let mut cache = lock(&self.cache);
                // A table swapped while the query was out may send this name elsewhere now.
                let current = self.routes.load();
                let same_route = Arc::ptr_eq(&current, routes)
                    || current.route(&qname).addrs() == routes.route(&qname).addrs();
                if same_route {
                    let inserted = cache.insert_unless_invalidated(
                        key.clone(),
                        &answer.reply,
                        Instant::now(),
                        generation,
                    );
                    self.metrics
                        .cache_changed(inserted.records, inserted.evicted, cache.records());
                }
                Fetched::Answer(answer.reply)
            }
            Err(PoolError::NoServers) => {
                debug!(qname = %key.name(), "no upstream servers for this name");
                Fetched::Failed { no_servers: true }
            }
            Err(error) => {
                debug!(qname = %key.name(), %error, "every upstream failed");
                Fetched::Failed { no_servers: false }
            }
        }
    }

    /// The query sent upstream: the client's question (case kept), RD always set as dnsmasq
    /// does, the client's CD bit, and an OPT advertising our size with the client's DO bit.
    fn upstream_query(&self, request: &Message) -> Message {
        let mut query = Message::new(0, MessageType::Query, OpCode::Query);
        query.metadata.recursion_desired = true;
        query.metadata.checking_disabled = request.metadata.checking_disabled;
        query.queries = request.queries.clone();
        let mut edns = Edns::new();
        edns.set_max_payload(self.settings.edns_packet_max);
        edns.set_dnssec_ok(request.edns.as_ref().is_some_and(|e| e.flags().dnssec_ok));
        query.edns = Some(edns);
        query
    }

    /// The client's reply built from an upstream or cached response: its rcode, flags and
    /// sections, with the client's ID, question and RD, RA set, and our OPT for EDNS clients.
    fn reply_from(&self, request: &Message, base: Message) -> Message {
        let mut reply = base;
        reply.metadata.id = request.metadata.id;
        reply.metadata.message_type = MessageType::Response;
        reply.metadata.op_code = request.metadata.op_code;
        reply.metadata.recursion_desired = request.metadata.recursion_desired;
        reply.metadata.recursion_available = true;
        reply.metadata.checking_disabled = request.metadata.checking_disabled;
        reply.queries.clone_from(&request.queries);
        reply.signature = None;
        reply.edns = self.reply_edns(request);
        reply
    }

    /// A cache hit answered in wire form, exactly as [`resolve`](Self::resolve) and
    /// [`reply_from`](Self::reply_from) would answer the same query: `None` for anything that
    /// is not a cache hit that fits in `limit` bytes, which then takes the ordinary path.
    ///
    /// What comes before the cache in `resolve` cannot hold for a cached name, apart from the
    /// hosts files (they may be reloaded with a cached name), so only those are consulted:
    /// NOTIFY and CHAOS are never plain queries, loop probes are never cached, and
    /// [`Forwarder::set_routes`] drops every cached name that a new table routes elsewhere,
    /// local-only domains included.
    /// The cached answer to `query` in `reply` (empty on entry), or `None` for a miss or an
    /// answer over `limit`.
    fn cache_hit_encoded(
        &self,
        query: &WireQuery<'_>,
        limit: usize,
        reply: &mut Vec<u8>,
    ) -> Option<()> {
        if self.hosts.load().mentions_wire(query.name) {
            return None;
        }
        let key = WireKey::new(query);
        let hit = lock(&self.cache).get_encoded(&key, Instant::now(), reply)?;
        reply[..2].copy_from_slice(&query.id.to_be_bytes());
        reply[2] |= u8::from(query.recursion_desired);
        reply[3] |= u8::from(query.checking_disabled) << 4;
        if let Some(client) = query.edns {
            let additionals = u16::from_be_bytes([reply[10], reply[11]]).checked_add(1)?;
            reply[10..12].copy_from_slice(&additionals.to_be_bytes());
            // The OPT record goes last, after the cached additional records.
            let end = u32::try_from(reply.len()).ok()?;
            self.edns(client.dnssec_ok)
                .emit(&mut BinEncoder::with_offset(reply, end))
                .ok()?;
        }
        if reply.len() > limit {
            // Truncation is the server's job, on the ordinary path.
            return None;
        }
        self.metrics.hit();
        self.metrics.request(query.qtype, hit.rcode);
        if self.settings.log_queries {
            // A plain query's name always reads back.
            let qname = Name::read(&mut BinDecoder::new(query.name))
                .map(|name| name.to_string())
                .unwrap_or_default();
            let answers = usize::from(hit.answers);
            log_query(
                query.src.ip(),
                qname,
                query.qtype,
                Source::Cache,
                hit.rcode,
                answers,
            );
        }
        Some(())
    }

    fn reply_with(&self, request: &Message, answers: Vec<Record>, rcode: ResponseCode) -> Message {
        let mut reply = Message::response(request.metadata.id, request.metadata.op_code);
        reply.metadata.recursion_desired = request.metadata.recursion_desired;
        reply.metadata.recursion_available = true;
        reply.metadata.checking_disabled = request.metadata.checking_disabled;
        reply.metadata.response_code = rcode;
        reply.queries.clone_from(&request.queries);
        reply.answers = answers;
        reply.edns = self.reply_edns(request);
        reply
    }

    fn reply_edns(&self, request: &Message) -> Option<Edns> {
        request
            .edns
            .as_ref()
            .map(|client| self.edns(client.flags().dnssec_ok))
    }

    /// The OPT record for replies: our UDP size, and the client's DO bit echoed.
    fn edns(&self, dnssec_ok: bool) -> Edns {
        let mut edns = Edns::new();
        edns.set_max_payload(self.settings.edns_packet_max);
        edns.set_dnssec_ok(dnssec_ok);
        edns
    }

    /// RFC 1996 NOTIFY from kubedns: drop what is cached at and below the named owner, then
    /// acknowledge. See the crate README for who may send it.
    fn notify(&self, request: &Request) -> Message {
        let message = &request.message;
        let mut reply = Message::response(message.metadata.id, OpCode::Notify);
        reply.queries.clone_from(&message.queries);
        reply.edns = self.reply_edns(message);
        let allowed = match &self.settings.notify {
            NotifyPolicy::Disabled => {
                self.metrics.notify("disabled", 0);
                reply.metadata.response_code = ResponseCode::NotImp;
                return reply;
            }
            NotifyPolicy::From(allowed) => allowed,
        };
        let src = request.src.ip().to_canonical();
        if !allowed.contains(&src) {
            debug!(%src, "NOTIFY from a source not allowed; refused");
            self.metrics.notify("refused", 0);
            reply.metadata.response_code = ResponseCode::Refused;
            return reply;
        }
        let Some(query) = message.queries.first() else {
            reply.metadata.response_code = ResponseCode::FormErr;
            return reply;
        };
        let dropped = self.invalidate(query.name());
        debug!(name = %query.name(), dropped, %src, "NOTIFY: dropped cached answers");
        self.metrics.notify("accepted", dropped);
        reply.metadata.authoritative = true;
        reply
    }

    fn loop_probe_returned(&self, qname: &Name) -> Option<SocketAddr> {
        let probes = lock(&self.loop_probes);
        if probes.is_empty() {
            return None;
        }
        probes.get(qname).copied()
    }

    fn log(&self, request: &Request, source: Source, reply: &Message) {
        if self.settings.log_queries {
            let (qname, qtype) = request
                .message
                .queries
                .first()
                .map_or((String::new(), RecordType::Unknown(0)), |q| {
                    (q.name().to_string(), q.query_type())
                });
            let rcode = reply.metadata.response_code;
            let answers = reply.answers.len();
            log_query(request.src.ip(), qname, qtype, source, rcode, answers);
        }
    }
}

/// One `--log-queries` line.
fn log_query(
    client: IpAddr,
    qname: String,
    qtype: RecordType,
    source: Source,
    rcode: ResponseCode,
    answers: usize,
) {
    info!(
        %client,
        qname,
        %qtype,
        source = ?source,
        rcode = %rcode,
        answers,
        "query"
    );
}

/// An error reply with the question echoed.
fn error_reply(request: &Message, rcode: ResponseCode) -> Message {
    let mut reply = Message::response(request.metadata.id, request.metadata.op_code);
    reply.metadata.response_code = rcode;
    reply.metadata.recursion_desired = request.metadata.recursion_desired;
    reply.queries.clone_from(&request.queries);
    reply
}

impl Handler for Forwarder {
    const ANSWERS_WIRE: bool = true;

    fn handle(&self, request: Request) -> impl std::future::Future<Output = Message> + Send {
        self.inner.clone().answer(request)
    }

    fn handle_wire(&self, query: &WireQuery<'_>, limit: usize, reply: &mut Vec<u8>) -> bool {
        self.inner.cache_hit_encoded(query, limit, reply).is_some()
    }
}
