//! Cache hits answered from the encoded cache are byte for byte what the ordinary path (decode
//! the entry, build the reply, encode it) sends.

use std::future::Future;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;

use dnsmasq_rs::Forwarder;
use hickory_proto::op::{Edns, Message};
use hickory_proto::rr::RecordType;
use kdns_net::{Handler, Protocol, Request, ServerConfig, WireQuery};
use test_support::timeout_after;

use crate::support::{Dnsmasq, FakeUpstream, GUARD, config};

/// The forwarder without its encoded answers: every request takes the ordinary path.
struct MessagesOnly(Forwarder);

impl Handler for MessagesOnly {
    fn handle(&self, request: Request) -> impl Future<Output = Message> + Send {
        self.0.handle(request)
    }
}

const CLIENT: SocketAddr = SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::LOCALHOST), 40000);

/// A request as a client would send it.
fn request(
    name: &str,
    rtype: RecordType,
    edns: Option<(u16, bool)>,
    rd: bool,
    cd: bool,
) -> Message {
    let mut message = kdns_net::query_message(name, rtype).expect("valid name");
    message.metadata.id = 0x5a5a;
    message.metadata.recursion_desired = rd;
    message.metadata.checking_disabled = cd;
    if let Some((size, dnssec_ok)) = edns {
        let mut opt = Edns::new();
        opt.set_max_payload(size);
        opt.set_dnssec_ok(dnssec_ok);
        message.edns = Some(opt);
    }
    message
}

async fn answer<H: Handler>(handler: Arc<H>, bytes: &[u8], protocol: Protocol) -> Vec<u8> {
    kdns_net::answer_message(handler, ServerConfig::default(), bytes, CLIENT, protocol)
        .await
        .expect("a reply")
}

#[tokio::test]
async fn encoded_cache_hits_match_the_ordinary_reply_byte_for_byte() {
    let upstream = FakeUpstream::start([192, 0, 2, 7]).await;
    let dnsmasq = Dnsmasq::start(config(&[upstream.server()])).await;
    let forwarder = Arc::new(dnsmasq.running.forwarder.clone());
    let ordinary = Arc::new(MessagesOnly(dnsmasq.running.forwarder.clone()));

    let plain = None;
    let edns = Some((1232, false));
    let dnssec = Some((4096, true));
    let cases = [
        ("www.example.com.", RecordType::A, plain, true, false),
        ("www.example.com.", RecordType::A, edns, true, false),
        ("www.example.com.", RecordType::A, edns, false, false),
        ("www.example.com.", RecordType::A, dnssec, true, true),
        ("WwW.Example.COM.", RecordType::A, edns, true, false),
        ("two.example.com.", RecordType::A, plain, true, false),
        ("cname.example.com.", RecordType::A, edns, true, false),
        ("nx.example.com.", RecordType::A, edns, true, false),
        ("nodata.example.com.", RecordType::A, plain, true, false),
        ("www.example.com.", RecordType::TXT, edns, true, false),
        // 100 records: over 512 bytes without EDNS, so the server truncates on the ordinary
        // path; within 4096 with it.
        ("big.example.com.", RecordType::A, plain, true, false),
        (
            "big.example.com.",
            RecordType::A,
            Some((4096, false)),
            true,
            false,
        ),
    ];
    for (name, rtype, edns, rd, cd) in cases {
        let message = request(name, rtype, edns, rd, cd);
        let bytes = message.to_vec().expect("encodes");
        // The first answer fills the cache.
        timeout_after(GUARD, answer(ordinary.clone(), &bytes, Protocol::Udp)).await;
        for protocol in [Protocol::Udp, Protocol::Tcp] {
            let query = WireQuery::read(&bytes, CLIENT, protocol).expect("a plain query");
            let limit = match (protocol, edns) {
                (Protocol::Tcp, _) => usize::from(u16::MAX),
                (Protocol::Udp, None) => 512,
                (Protocol::Udp, Some((size, _))) => usize::from(size),
            };
            let direct = forwarder.handle_wire(&query, limit, &mut Vec::new());
            let fits = !(name.starts_with("big") && edns.is_none() && protocol == Protocol::Udp);
            assert_eq!(direct, fits, "{name} {rtype} {edns:?} {protocol:?}");

            // A TTL may tick over between two answers, but not twice in a row.
            let before = timeout_after(GUARD, answer(forwarder.clone(), &bytes, protocol)).await;
            let slow = timeout_after(GUARD, answer(ordinary.clone(), &bytes, protocol)).await;
            let after = timeout_after(GUARD, answer(forwarder.clone(), &bytes, protocol)).await;
            assert!(
                slow == before || slow == after,
                "{name} {rtype} {edns:?} rd={rd} cd={cd} {protocol:?}:\n encoded {:?}\n ordinary {:?}",
                Message::from_vec(&before),
                Message::from_vec(&slow),
            );
        }
    }
    // Every name was fetched once (the DO and CD variants are separate entries, and so is the
    // other case): everything after that came from the cache.
    assert_eq!(upstream.count("www.example.com."), 4);
    // Once over UDP, which truncates 100 records at 1232 bytes, and once more over TCP.
    assert_eq!(upstream.count("big.example.com."), 2);
}
