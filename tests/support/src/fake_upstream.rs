//! A tiny authoritative DNS server standing in for the upstream resolvers a cluster's DNS
//! forwards to.
//!
//! [`FakeUpstream`] answers every name at or below its zone: A with `192.0.2.x` and AAAA with
//! `2001:db8::x` (RFC 5737 and RFC 3849 documentation addresses), `x` derived from the name, so
//! each name has its own stable address ([`FakeUpstream::addresses_of`]). Other types at those
//! names are NODATA, names outside the zone NXDOMAIN, both with the zone's SOA. It serves UDP and
//! TCP through `kdns-net` and remembers every question, so tests can tell which server answered.

use std::future::Future;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex, PoisonError};

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use kdns_net::{Handler, Request};
use tokio_util::sync::CancellationToken;

use crate::records::rr;

/// A DNS server answering for one zone; stops when dropped.
#[derive(Debug)]
pub struct FakeUpstream {
    addr: SocketAddr,
    zone: Arc<Zone>,
    shutdown: CancellationToken,
}

#[derive(Debug)]
struct Zone {
    origin: Name,
    ttl: u32,
    soa: Record,
    asked: Mutex<Vec<(Name, RecordType)>>,
}

impl FakeUpstream {
    /// Serves `zone` (e.g. `"example.com."`) on `listen`, UDP and TCP; port 0 picks a free
    /// port for both. Answers carry `ttl`.
    ///
    /// # Errors
    /// If `zone` is not a domain name or the sockets cannot be bound.
    pub async fn start(listen: SocketAddr, zone: &str, ttl: u32) -> std::io::Result<Self> {
        let origin = Name::from_ascii(zone)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?
            .to_lowercase();
        let mut origin = origin;
        origin.set_fqdn(true);
        let soa = rr(&format!(
            "{origin} {ttl} IN SOA ns.{origin} hostmaster.{origin} 1 7200 1800 86400 {ttl}"
        ));
        let zone = Arc::new(Zone {
            origin,
            ttl,
            soa,
            asked: Mutex::new(Vec::new()),
        });
        let (addr, shutdown) = crate::serve_dns(listen, Arc::clone(&zone)).await?;
        Ok(Self {
            addr,
            zone,
            shutdown,
        })
    }

    /// Where it listens (UDP and TCP).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The zone it answers for, lowercase and absolute.
    pub fn zone(&self) -> &Name {
        &self.zone.origin
    }

    /// The A and AAAA addresses it answers for `name` (whether or not `name` is in its zone).
    pub fn addresses_of(name: &str) -> (Ipv4Addr, Ipv6Addr) {
        let normalized = name.trim_end_matches('.').to_ascii_lowercase();
        // FNV-1a: stable across runs and platforms, unlike the std hasher.
        let hash = normalized.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        });
        let host = u8::try_from(hash % 254).expect("below 254") + 1;
        (
            Ipv4Addr::new(192, 0, 2, host),
            Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, u16::from(host)),
        )
    }

    /// Every question received so far: name (as asked) and type.
    pub fn asked(&self) -> Vec<(Name, RecordType)> {
        self.zone
            .asked
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// How many questions for `name` (any case, trailing dot optional) it received.
    pub fn count(&self, name: &str) -> usize {
        let want = name.trim_end_matches('.');
        self.asked()
            .iter()
            .filter(|(asked, _)| {
                asked
                    .to_ascii()
                    .trim_end_matches('.')
                    .eq_ignore_ascii_case(want)
            })
            .count()
    }
}

impl Drop for FakeUpstream {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

impl Zone {
    fn respond(&self, request: &Message) -> Message {
        let mut reply = Message::response(request.metadata.id, request.metadata.op_code);
        reply.metadata.recursion_desired = request.metadata.recursion_desired;
        reply.metadata.recursion_available = true;
        reply.queries.clone_from(&request.queries);
        let Some(query) = request.queries.first() else {
            reply.metadata.response_code = ResponseCode::FormErr;
            return reply;
        };
        let name = query.name();
        if !self.origin.zone_of(name) {
            // Not ours: no SOA to offer, as a resolver outside the zone would not have one.
            reply.metadata.response_code = ResponseCode::NXDomain;
            return reply;
        }
        reply.metadata.authoritative = true;
        let (v4, v6) = FakeUpstream::addresses_of(&name.to_ascii());
        match query.query_type() {
            RecordType::A => {
                reply.answers = vec![Record::from_rdata(name.clone(), self.ttl, RData::A(A(v4)))];
            }
            RecordType::AAAA => {
                reply.answers = vec![Record::from_rdata(
                    name.clone(),
                    self.ttl,
                    RData::AAAA(AAAA(v6)),
                )];
            }
            RecordType::SOA if name.to_lowercase() == self.origin => {
                reply.answers = vec![self.soa.clone()];
            }
            _ => reply.authorities = vec![self.soa.clone()],
        }
        reply
    }
}

impl Handler for Zone {
    fn handle(&self, request: Request) -> impl Future<Output = Message> + Send {
        if let Some(query) = request.message.queries.first() {
            self.asked
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push((query.name().clone(), query.query_type()));
        }
        std::future::ready(self.respond(&request.message))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_documentation_addresses_stable_per_name_and_case_blind() {
        let (v4, v6) = FakeUpstream::addresses_of("www.example.com.");
        assert_eq!(FakeUpstream::addresses_of("WWW.example.com"), (v4, v6));
        assert_eq!(v4.octets()[..3], [192, 0, 2]);
        assert_ne!(v4.octets()[3], 0);
        assert_eq!(v6.segments()[..2], [0x2001, 0xdb8]);
        assert_eq!(v6.segments()[7], u16::from(v4.octets()[3]));
    }
}
