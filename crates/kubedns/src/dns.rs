//! `ClusterZone`: kubedns's answer to every DNS request, over a records snapshot.

use std::sync::Arc;
use std::time::Instant;

use hickory_proto::op::{Message, OpCode, ResponseCode};
use hickory_proto::rr::rdata::TXT;
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};
use kdns_net::{Handler, Request};

use crate::forward::Forwarder;
use crate::metrics::Metrics;
use crate::records::{Lookup, Records, ZoneOf};
use crate::store::Store;

/// Answers from the cluster's records; forwards what is not the cluster's.
#[derive(Clone, Debug)]
pub struct ClusterZone {
    store: Store,
    forwarder: Forwarder,
    metrics: Metrics,
    ready: Arc<std::sync::atomic::AtomicBool>,
}

impl ClusterZone {
    /// A zone over `store`, not ready until [`ClusterZone::set_ready`].
    pub fn new(store: Store, forwarder: Forwarder, metrics: Metrics) -> Self {
        Self {
            store,
            forwarder,
            metrics,
            ready: Arc::default(),
        }
    }

    /// A ready zone over a fixed cluster state, with no API watch and no HTTP: what tests and
    /// fuzz targets query. Names outside the cluster go to `upstreams` (500 ms each).
    pub fn over_state(
        state: crate::source::file::ClusterState,
        zone: &Name,
        pod_records: crate::records::PodRecords,
        upstreams: Vec<std::net::SocketAddr>,
    ) -> Self {
        let mut writer = crate::store::Writer::new(Records::new(zone, 30, pod_records));
        for event in state.into_events() {
            writer.apply(event);
        }
        writer.publish();
        let forwarder = Forwarder::new(
            crate::forward::Upstreams {
                servers: upstreams,
                stubs: Vec::new(),
            },
            std::time::Duration::from_millis(500),
        );
        let zone = Self::new(writer.store(), forwarder, Metrics::new());
        zone.set_ready();
        zone
    }

    /// The forwarder for names outside the cluster.
    pub fn forwarder(&self) -> &Forwarder {
        &self.forwarder
    }

    /// Marks the first full sync: cluster names are answered from then on.
    pub fn set_ready(&self) {
        self.ready.store(true, std::sync::atomic::Ordering::Release);
    }

    fn is_ready(&self) -> bool {
        self.ready.load(std::sync::atomic::Ordering::Acquire)
    }

    async fn answer(&self, request: &Request) -> Message {
        let req = &request.message;
        let mut response = Message::response(req.metadata.id, req.metadata.op_code);
        response.metadata.recursion_desired = req.metadata.recursion_desired;
        response.metadata.recursion_available = true;
        response.queries = req.queries.clone();
        if req.metadata.op_code != OpCode::Query {
            response.metadata.response_code = ResponseCode::NotImp;
            return response;
        }
        let Some(query) = req.queries.first() else {
            response.metadata.response_code = ResponseCode::FormErr;
            return response;
        };
        let qname = query.name();
        let qtype = query.query_type();
        match query.query_class() {
            DNSClass::IN => {}
            DNSClass::CH => return chaos(response, qname, qtype),
            _ => {
                response.metadata.response_code = ResponseCode::Refused;
                return response;
            }
        }
        let records = self.store.load();
        match records.zone_of(qname) {
            ZoneOf::Cluster if !self.is_ready() => servfail(response),
            ZoneOf::Cluster => {
                let lookup = records.lookup(qname, qtype);
                self.render(response, &records, lookup, req).await
            }
            ZoneOf::Reverse if !self.is_ready() => servfail(response),
            ZoneOf::Reverse => match records.lookup_reverse(qname, qtype) {
                Some(lookup) => self.render(response, &records, lookup, req).await,
                None => self.forward(response, req).await,
            },
            ZoneOf::Outside => self.forward(response, req).await,
        }
    }

    async fn render(
        &self,
        mut response: Message,
        records: &Records,
        lookup: Lookup,
        req: &Message,
    ) -> Message {
        response.metadata.authoritative = true;
        match lookup {
            Lookup::Answer {
                answers,
                additionals,
            } => {
                response.answers = answers;
                response.additionals = additionals;
            }
            Lookup::ExternalCname { answers, target } => {
                response.answers = answers;
                let query = hickory_proto::op::Query::query(target, req.queries[0].query_type());
                let payload = req.edns.as_ref().map(|e| e.max_payload());
                if let Some(reply) = self.forwarder.resolve(&query, true, payload).await {
                    self.metrics.forward(true);
                    if reply.metadata.response_code == ResponseCode::NoError {
                        response.answers.extend(reply.answers);
                    }
                } else {
                    self.metrics.forward(false);
                }
            }
            Lookup::NoData => response.authorities.push(negative_soa(records)),
            Lookup::NxDomain => {
                response.metadata.response_code = ResponseCode::NXDomain;
                response.authorities.push(negative_soa(records));
            }
        }
        response
    }

    async fn forward(&self, mut response: Message, req: &Message) -> Message {
        let payload = req.edns.as_ref().map(|e| e.max_payload());
        match self
            .forwarder
            .resolve(&req.queries[0], req.metadata.recursion_desired, payload)
            .await
        {
            Some(reply) => {
                self.metrics.forward(true);
                // Relay the upstream's answer under the client's ID and question (its case).
                response.metadata.response_code = reply.metadata.response_code;
                response.metadata.authoritative = reply.metadata.authoritative;
                response.metadata.truncation = reply.metadata.truncation;
                response.answers = reply.answers;
                response.authorities = reply.authorities;
                response.additionals = reply.additionals;
                response
            }
            None => {
                self.metrics.forward(false);
                servfail(response)
            }
        }
    }
}

fn servfail(mut response: Message) -> Message {
    response.metadata.response_code = ResponseCode::ServFail;
    response
}

/// The SOA that goes with a negative answer, its TTL the SOA minimum (RFC 2308 §3).
fn negative_soa(records: &Records) -> Record {
    records.soa(records.ttl())
}

/// CHAOS-class questions: only `version.bind`/`version.server` TXT, as servers commonly answer.
fn chaos(mut response: Message, qname: &Name, qtype: RecordType) -> Message {
    let name = qname.to_lowercase().to_ascii();
    if qtype == RecordType::TXT && matches!(name.as_str(), "version.bind." | "version.server.") {
        let text = format!("kubedns-{}", env!("CARGO_PKG_VERSION"));
        let mut record = Record::from_rdata(qname.clone(), 0, RData::TXT(TXT::new(vec![text])));
        record.dns_class = DNSClass::CH;
        response.answers.push(record);
        response.metadata.authoritative = true;
    } else {
        response.metadata.response_code = ResponseCode::Refused;
    }
    response
}

impl Handler for ClusterZone {
    async fn handle(&self, request: Request) -> Message {
        let started = Instant::now();
        let response = self.answer(&request).await;
        let qtype = request
            .message
            .queries
            .first()
            .map_or("none", |q| q.query_type().into());
        self.metrics.request(
            qtype,
            response.metadata.response_code.to_str(),
            started.elapsed(),
        );
        response
    }
}
