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

/// Where queries go.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Upstreams {
    /// The default servers, tried in order.
    pub servers: Vec<SocketAddr>,
    /// Domains with their own servers (longest match wins), lowercase, absolute.
    pub stubs: Vec<(Name, Vec<SocketAddr>)>,
}

impl Upstreams {
    /// The servers for `qname`.
    pub fn servers_for(&self, qname: &Name) -> &[SocketAddr] {
        self.stubs
            .iter()
            .filter(|(domain, _)| domain.zone_of(qname))
            .max_by_key(|(domain, _)| domain.num_labels())
            .map_or(&self.servers, |(_, servers)| servers)
    }
}

/// Sends queries upstream.
#[derive(Clone, Debug)]
pub struct Forwarder {
    upstreams: Arc<ArcSwap<Upstreams>>,
    timeout: Duration,
}

impl Forwarder {
    /// A forwarder with per-server `timeout`.
    pub fn new(upstreams: Upstreams, timeout: Duration) -> Self {
        Self {
            upstreams: Arc::new(ArcSwap::from_pointee(upstreams)),
            timeout,
        }
    }

    /// Replaces the upstreams.
    pub fn set_upstreams(&self, upstreams: Upstreams) {
        self.upstreams.store(Arc::new(upstreams));
    }

    /// The upstreams in force.
    pub fn upstreams(&self) -> Arc<Upstreams> {
        self.upstreams.load_full()
    }

    /// Asks the upstreams for `query`'s question, in order, and returns the first answer that is
    /// not SERVFAIL or REFUSED; `None` when every server failed (the caller answers SERVFAIL).
    pub async fn resolve(
        &self,
        query: &Query,
        recursion_desired: bool,
        edns_payload: Option<u16>,
    ) -> Option<Message> {
        let upstreams = self.upstreams.load_full();
        let servers = upstreams.servers_for(query.name());
        let mut request = Message::new(rand::random(), MessageType::Query, OpCode::Query);
        request.metadata.recursion_desired = recursion_desired;
        request.add_query(query.clone());
        if let Some(payload) = edns_payload {
            request = kdns_net::with_edns(request, payload);
        }
        let mut last = None;
        for server in servers {
            request.metadata.id = rand::random();
            match kdns_net::exchange(*server, &request, self.timeout).await {
                Ok(reply)
                    if !matches!(
                        reply.metadata.response_code,
                        ResponseCode::ServFail | ResponseCode::Refused
                    ) =>
                {
                    return Some(reply);
                }
                Ok(reply) => {
                    tracing::debug!(%server, rcode = %reply.metadata.response_code, "upstream refused; trying the next");
                    last = Some(reply);
                }
                Err(e) => {
                    tracing::debug!(%server, error = %e, "upstream failed; trying the next");
                }
            }
        }
        // A REFUSED from the last server is still an answer the client may act on; SERVFAIL and
        // silence become SERVFAIL.
        last.filter(|r| r.metadata.response_code == ResponseCode::Refused)
    }
}
