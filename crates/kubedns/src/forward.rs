//! Forwarding of names kubedns does not own: everything outside the cluster zone, reverse names
//! of addresses the cluster does not know, and ExternalName targets.
//!
//! The upstreams are, in order of precedence, `upstreamNameservers` from the config dir, the
//! `--nameservers` flag, and the resolv.conf nameservers; `stubDomains` route their domains to
//! their own servers. The list is swapped atomically when the config dir changes.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::Name;
use kdns_net::{PoolError, Upstream, UpstreamPool};

/// Where queries go.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Upstreams {
    /// The default servers, tried in order.
    pub servers: Vec<SocketAddr>,
    /// Domains with their own servers (longest match wins), lowercase, absolute.
    pub stubs: Vec<(Name, Vec<SocketAddr>)>,
}

/// Sends queries upstream, through `kdns-net`'s pools: servers in order with failover, a dead
/// server skipped for a while instead of costing every query a timeout.
#[derive(Clone, Debug)]
pub struct Forwarder {
    pools: Arc<ArcSwap<Pools>>,
    timeout: Duration,
}

#[derive(Debug)]
struct Pools {
    upstreams: Upstreams,
    default: UpstreamPool,
    stubs: Vec<(Name, UpstreamPool)>,
}

impl Pools {
    fn new(upstreams: Upstreams, timeout: Duration, previous: Option<&Pools>) -> Self {
        // Keep each server's health and counters across configuration changes.
        let known: Vec<Arc<Upstream>> = previous
            .map(|p| {
                let stubs = p.stubs.iter().flat_map(|(_, pool)| pool.servers());
                p.default.servers().iter().chain(stubs).cloned().collect()
            })
            .unwrap_or_default();
        let pool = |servers: &[SocketAddr]| {
            let servers = servers
                .iter()
                .map(|addr| {
                    known
                        .iter()
                        .find(|u| u.addr() == *addr)
                        .cloned()
                        .unwrap_or_else(|| Arc::new(Upstream::new(*addr, false)))
                })
                .collect();
            UpstreamPool::new(servers, timeout)
        };
        let default = pool(&upstreams.servers);
        let stubs = upstreams
            .stubs
            .iter()
            .map(|(domain, servers)| (domain.clone(), pool(servers)))
            .collect();
        Self {
            upstreams,
            default,
            stubs,
        }
    }

    fn pool_for(&self, qname: &Name) -> &UpstreamPool {
        self.stubs
            .iter()
            .filter(|(domain, _)| domain.zone_of(qname))
            .max_by_key(|(domain, _)| domain.num_labels())
            .map_or(&self.default, |(_, pool)| pool)
    }
}

impl Forwarder {
    /// A forwarder with per-server `timeout`.
    pub fn new(upstreams: Upstreams, timeout: Duration) -> Self {
        Self {
            pools: Arc::new(ArcSwap::from_pointee(Pools::new(upstreams, timeout, None))),
            timeout,
        }
    }

    /// Replaces the upstreams.
    pub fn set_upstreams(&self, upstreams: Upstreams) {
        let previous = self.pools.load_full();
        if previous.upstreams != upstreams {
            let pools = Pools::new(upstreams, self.timeout, Some(&previous));
            self.pools.store(Arc::new(pools));
        }
    }

    /// The upstreams in force.
    pub fn upstreams(&self) -> Upstreams {
        self.pools.load().upstreams.clone()
    }

    /// Asks the upstreams for `query`'s question and returns the first answer that is not
    /// SERVFAIL or REFUSED, else a REFUSED if that is all there was; `None` when every server
    /// failed (the caller answers SERVFAIL).
    pub async fn resolve(
        &self,
        query: &Query,
        recursion_desired: bool,
        edns_payload: Option<u16>,
    ) -> Option<Message> {
        let pools = self.pools.load_full();
        let mut request = Message::new(0, MessageType::Query, OpCode::Query);
        request.metadata.recursion_desired = recursion_desired;
        request.add_query(query.clone());
        if let Some(payload) = edns_payload {
            request = kdns_net::with_edns(request, payload);
        }
        match pools.pool_for(query.name()).exchange(&request).await {
            Ok(answer) => Some(answer.reply),
            Err(PoolError::AllFailed {
                last_reply: Some(reply),
                ..
            }) if reply.metadata.response_code == ResponseCode::Refused => Some(*reply),
            Err(e) => {
                tracing::debug!(error = %e, name = %query.name(), "forwarding failed");
                None
            }
        }
    }
}
