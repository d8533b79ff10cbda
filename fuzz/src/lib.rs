//! What the fuzz targets share: one runtime, the demo cluster's zone, and the checks every DNS
//! reply must pass whatever the request was.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, LazyLock};

use hickory_proto::op::{Message, MessageType};
use hickory_proto::rr::Name;
use kdns_net::{Handler, Protocol, ServerConfig, WireQuery, answer_message};
use kubedns::dns::ClusterZone;
use kubedns::records::PodRecords;
use kubedns::source::file;
use tokio::runtime::Runtime;

/// The demo cluster `make run` serves: Services of every kind, endpoints, pods.
pub const DEMO_STATE: &str = include_str!("../../tests/fixtures/state/demo.yaml");

/// Where fuzzed requests come from.
pub const CLIENT: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 5353);

/// RFC 1035's UDP limit for clients without EDNS.
const PLAIN_UDP_LIMIT: usize = 512;

/// A single-threaded runtime for the whole process: a fuzz input runs to completion in
/// `block_on`, and servers started once (the fake upstream) run inside it.
pub fn runtime() -> &'static Runtime {
    static RUNTIME: LazyLock<Runtime> = LazyLock::new(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a tokio runtime")
    });
    &RUNTIME
}

/// A ready kubedns zone over `state` (cluster-state text), `cluster.local.`, pod records on.
/// Names outside the cluster are forwarded to `upstreams`.
pub fn zone_over(state: file::ClusterState, upstreams: Vec<SocketAddr>) -> ClusterZone {
    let zone = Name::from_ascii("cluster.local.").expect("a valid zone");
    ClusterZone::over_state(state, &zone, PodRecords::Insecure, upstreams)
}

/// The demo cluster's zone, built once per process. It forwards nowhere: names outside the
/// cluster get SERVFAIL at once.
pub fn demo_zone() -> Arc<ClusterZone> {
    static ZONE: LazyLock<Arc<ClusterZone>> = LazyLock::new(|| {
        let state = file::parse(DEMO_STATE, Path::new("demo.yaml")).expect("the demo state parses");
        Arc::new(zone_over(state, Vec::new()))
    });
    ZONE.clone()
}

/// Whether the server may stay silent about `request`: junk shorter than a header, a response
/// sent as a query, or (over UDP) a datagram over the receive buffer.
pub fn may_drop(request: &[u8], udp: bool) -> bool {
    request.len() < 12 || request[2] & 0x80 != 0 || (udp && request.len() > 4096)
}

/// The largest UDP reply `request` may get from a server advertising `max_udp_payload`: 512
/// without EDNS, else the client's size (at least 512) capped by the server's.
pub fn udp_limit(request: &[u8], max_udp_payload: u16) -> usize {
    match Message::from_vec(request).ok().and_then(|m| m.edns) {
        None => PLAIN_UDP_LIMIT,
        Some(edns) => usize::from(edns.max_payload())
            .max(PLAIN_UDP_LIMIT)
            .min(usize::from(max_udp_payload).max(PLAIN_UDP_LIMIT)),
    }
}

/// The invariants of any reply to `request`: it decodes, carries the request's ID with QR set,
/// has no OPT if the request had none, and over UDP (`udp_limit` given) fits the size promised.
pub fn check_reply(request: &[u8], reply: &[u8], udp_limit: Option<usize>) -> Message {
    let message = Message::from_vec(reply)
        .unwrap_or_else(|e| panic!("the reply does not decode ({e}): {reply:02x?}"));
    assert_eq!(reply.get(..2), request.get(..2), "the reply's ID differs");
    assert_eq!(
        message.metadata.message_type,
        MessageType::Response,
        "QR is clear in the reply"
    );
    if let Some(limit) = udp_limit {
        assert!(
            reply.len() <= limit,
            "a {}-byte UDP reply exceeds the {limit} bytes promised",
            reply.len()
        );
    }
    if let Ok(parsed) = Message::from_vec(request)
        && parsed.edns.is_none()
    {
        assert!(
            message.edns.is_none(),
            "OPT in the reply to a plain request"
        );
    }
    message
}

/// Whatever kdns-net reads as a plain query straight from its bytes (the path to encoded
/// answers, taken before anything is decoded) must decode to the same request and pass vetting.
pub fn check_wire_query(request: &[u8]) {
    let Some(query) = WireQuery::read(request, CLIENT, Protocol::Udp) else {
        return;
    };
    let message = Message::from_vec(request).expect("a plain query decodes");
    assert_eq!(message.metadata.message_type, MessageType::Query);
    assert_eq!(message.metadata.id, query.id);
    assert_eq!(message.metadata.recursion_desired, query.recursion_desired);
    assert_eq!(message.metadata.checking_disabled, query.checking_disabled);
    assert_eq!(message.queries.len(), 1);
    assert_eq!(message.queries[0].query_type(), query.qtype);
    assert!(message.answers.is_empty() && message.authorities.is_empty());
    assert_eq!(
        message.edns.as_ref().map(|e| (e.version(), e.flags().dnssec_ok)),
        query.edns.map(|e| (0, e.dnssec_ok))
    );
}

/// Runs `request` through kdns-net's UDP path (vetting, `handler`, fitting) as `serve` does for
/// a datagram, and checks the reply, or that dropping the request was right.
pub fn answer_udp_and_check<H: Handler>(handler: Arc<H>, config: ServerConfig, request: &[u8]) {
    check_wire_query(request);
    let max_udp_payload = config.max_udp_payload;
    let reply = runtime().block_on(answer_message(
        handler,
        config,
        request,
        CLIENT,
        Protocol::Udp,
    ));
    match reply {
        Some(reply) => {
            check_reply(request, &reply, Some(udp_limit(request, max_udp_payload)));
        }
        None => assert!(may_drop(request, true), "no reply to a request worth one"),
    }
}
