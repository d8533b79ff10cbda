//! Routing, caching, coalescing, failover and the upstream exchange, over real sockets.

use std::net::{Ipv4Addr, SocketAddr};

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::RecordType;
use kdns_net::Protocol;
use test_support::timeout_after;
use tokio::net::UdpSocket;

use crate::support::{
    Dnsmasq, FakeUpstream, GUARD, SilentUpstream, addresses, ask, ask_tcp, config, eventually,
};

#[tokio::test]
async fn queries_go_to_the_longest_matching_domain_and_the_rest_to_the_default_servers() {
    let default = FakeUpstream::start([192, 0, 2, 1]).await;
    let corp = FakeUpstream::start([192, 0, 2, 2]).await;
    let db = FakeUpstream::start([192, 0, 2, 3]).await;
    let dnsmasq = Dnsmasq::start(config(&[
        default.server(),
        format!("/corp.example/{}", corp.server()),
        format!("/db.corp.example/{}", db.server()),
        "/lan/".to_owned(),
    ]))
    .await;
    let cases = [
        ("www.example.com.", Some([192, 0, 2, 1])),
        ("app.corp.example.", Some([192, 0, 2, 2])),
        ("APP.Corp.Example.", Some([192, 0, 2, 2])),
        ("x.db.corp.example.", Some([192, 0, 2, 3])),
        ("corp.example.", Some([192, 0, 2, 2])),
        ("notcorp.example.", Some([192, 0, 2, 1])),
        ("printer.lan.", None),
    ];
    for (name, want) in cases {
        let reply = timeout_after(GUARD, dnsmasq.ask(name, RecordType::A)).await;
        match want {
            Some(ip) => assert_eq!(addresses(&reply), [Ipv4Addr::from(ip)], "{name}"),
            None => assert_eq!(
                reply.metadata.response_code,
                ResponseCode::NXDomain,
                "{name} is local only"
            ),
        }
    }
    assert_eq!(default.count("printer.lan."), 0);
}

#[tokio::test]
async fn a_repeated_query_is_answered_from_the_cache_with_aa_clear_and_the_question_echoed() {
    let upstream = FakeUpstream::start([192, 0, 2, 1]).await;
    let dnsmasq = Dnsmasq::start(config(&[upstream.server()])).await;
    let first = timeout_after(GUARD, dnsmasq.ask("www.example.com.", RecordType::A)).await;
    let second = timeout_after(GUARD, dnsmasq.ask("www.example.com.", RecordType::A)).await;
    assert_eq!(upstream.count("www.example.com."), 1);
    assert_eq!(addresses(&second), addresses(&first));
    assert!(!second.metadata.authoritative);
    assert!(second.metadata.recursion_available);
    assert_eq!(second.queries, first.queries);
    assert!(second.edns.is_some(), "an EDNS client gets an OPT back");

    // Another case of the same name is another entry: 0x20 clients get their own case back.
    let upper = timeout_after(GUARD, dnsmasq.ask("WWW.example.com.", RecordType::A)).await;
    assert_eq!(upper.answers[0].name.to_ascii(), "WWW.example.com.");
    assert_eq!(upstream.count("www.example.com."), 2);
}

#[tokio::test]
async fn negative_answers_are_cached_unless_no_negcache() {
    let upstream = FakeUpstream::start([192, 0, 2, 1]).await;
    let dnsmasq = Dnsmasq::start(config(&[upstream.server()])).await;
    for reply in dnsmasq.ask_twice("nx.example.com.", RecordType::A).await {
        assert_eq!(reply.metadata.response_code, ResponseCode::NXDomain);
        assert_eq!(reply.authorities.len(), 1);
    }
    assert_eq!(upstream.count("nx.example.com."), 1);

    let mut no_negcache = config(&[upstream.server()]);
    no_negcache.cache.negative = false;
    let dnsmasq = Dnsmasq::start(no_negcache).await;
    for _ in 0..2 {
        timeout_after(GUARD, dnsmasq.ask("nodata.example.com.", RecordType::A)).await;
    }
    assert_eq!(upstream.count("nodata.example.com."), 2);
}

#[tokio::test]
async fn servfail_from_every_server_is_answered_servfail_and_never_cached() {
    let upstream = FakeUpstream::start([192, 0, 2, 1]).await;
    let dnsmasq = Dnsmasq::start(config(&[upstream.server()])).await;
    for _ in 0..2 {
        let reply = timeout_after(GUARD, dnsmasq.ask("servfail.example.com.", RecordType::A)).await;
        assert_eq!(reply.metadata.response_code, ResponseCode::ServFail);
    }
    assert_eq!(upstream.count("servfail.example.com."), 2);
}

#[tokio::test]
async fn a_silent_upstream_costs_one_timeout_and_is_then_skipped() {
    let silent = SilentUpstream::start().await;
    let good = FakeUpstream::start([192, 0, 2, 7]).await;
    let dnsmasq = Dnsmasq::start(config(&[silent.server(), good.server()])).await;
    let first = timeout_after(GUARD, dnsmasq.ask("one.example.com.", RecordType::A)).await;
    assert_eq!(addresses(&first), [Ipv4Addr::new(192, 0, 2, 7)]);
    assert_eq!(silent.received(), 1);
    // The silent server is now down: the next queries go to the good one first. (Its pause is
    // a second; these queries take milliseconds.)
    for name in ["two.example.com.", "three.example.com."] {
        timeout_after(GUARD, dnsmasq.ask(name, RecordType::A)).await;
    }
    assert_eq!(silent.received(), 1);
    let servers = dnsmasq.running.forwarder.stats().servers;
    assert!(
        servers.contains(&format!("{}#{} 1 1", silent.addr.ip(), silent.addr.port())),
        "{servers:?}"
    );
}

#[tokio::test]
async fn when_every_upstream_fails_the_answer_is_servfail_and_without_any_it_is_refused() {
    let silent = SilentUpstream::start().await;
    let dnsmasq = Dnsmasq::start(config(&[silent.server()])).await;
    let reply = timeout_after(GUARD, dnsmasq.ask("www.example.com.", RecordType::A)).await;
    assert_eq!(reply.metadata.response_code, ResponseCode::ServFail);

    let dnsmasq = Dnsmasq::start(config(&[])).await;
    let reply = timeout_after(GUARD, dnsmasq.ask("www.example.com.", RecordType::A)).await;
    assert_eq!(
        reply.metadata.response_code,
        ResponseCode::Refused,
        "dnsmasq answers REFUSED without servers"
    );
}

#[tokio::test]
async fn identical_queries_in_flight_share_one_upstream_query() {
    const N: u64 = 20;
    let (upstream, gate) = FakeUpstream::gated([192, 0, 2, 9]).await;
    let dnsmasq = Dnsmasq::start(config(&[upstream.server()])).await;
    let addr = dnsmasq.addr;
    let clients: Vec<_> = (0..N)
        .map(|_| {
            tokio::spawn(async move { ask(addr, "popular.example.com.", RecordType::A).await })
        })
        .collect();
    let forwarder = dnsmasq.running.forwarder.clone();
    eventually("every client is waiting", || {
        let forwarder = forwarder.clone();
        async move { forwarder.stats().misses == N }
    })
    .await;
    gate.add_permits(100);
    for client in clients {
        let reply = timeout_after(GUARD, client).await.expect("client task");
        assert_eq!(addresses(&reply), [Ipv4Addr::new(192, 0, 2, 9)]);
    }
    assert_eq!(upstream.count("popular.example.com."), 1);
}

#[tokio::test]
async fn a_truncated_udp_answer_is_asked_again_over_tcp() {
    let upstream = FakeUpstream::start([192, 0, 2, 1]).await;
    let dnsmasq = Dnsmasq::start(config(&[upstream.server()])).await;
    let reply = timeout_after(
        GUARD,
        ask_tcp(dnsmasq.addr, "big.example.com.", RecordType::A),
    )
    .await;
    assert_eq!(reply.answers.len(), 100);
    let protocols: Vec<Protocol> = upstream.asked().iter().map(|a| a.protocol).collect();
    assert_eq!(protocols, [Protocol::Udp, Protocol::Tcp]);

    // Over UDP the client gets what fits its size, with TC set, from the cache.
    let reply = timeout_after(GUARD, dnsmasq.ask("big.example.com.", RecordType::A)).await;
    assert!(reply.metadata.truncation);
    assert_eq!(upstream.asked().len(), 2);
}

#[tokio::test]
async fn an_always_tcp_server_is_never_asked_over_udp() {
    let upstream = FakeUpstream::truncating([192, 0, 2, 5]).await;
    let mut config = config(&[upstream.server()]);
    config.always_tcp = vec![upstream.addr];
    let dnsmasq = Dnsmasq::start(config).await;
    let reply = timeout_after(GUARD, dnsmasq.ask("www.example.com.", RecordType::A)).await;
    assert_eq!(addresses(&reply), [Ipv4Addr::new(192, 0, 2, 5)]);
    assert!(
        upstream.asked().iter().all(|a| a.protocol == Protocol::Tcp),
        "{:?}",
        upstream.asked()
    );
}

/// Answers the one query it receives with `script`: `(from_spoofer, reply)` pairs in order.
async fn scripted_upstream(
    script: impl FnOnce(&Message) -> Vec<(bool, Message)> + Send + 'static,
) -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let upstream = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))
        .await
        .expect("bind");
    let spoofer = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))
        .await
        .expect("bind");
    let addr = upstream.local_addr().expect("local address");
    let task = tokio::spawn(async move {
        let mut buf = vec![0u8; 4096];
        let Ok((len, client)) = upstream.recv_from(&mut buf).await else {
            return;
        };
        let Ok(asked) = Message::from_vec(&buf[..len]) else {
            return;
        };
        for (spoofed, reply) in script(&asked) {
            let socket = if spoofed { &spoofer } else { &upstream };
            let _ = socket
                .send_to(&reply.to_vec().expect("encodes"), client)
                .await;
        }
    });
    (addr, task)
}

#[tokio::test]
async fn spoofed_and_mismatched_replies_are_neither_returned_nor_cached() {
    let (addr, upstream) = scripted_upstream(|asked| {
        let answer = |ip: [u8; 4]| {
            let mut reply = asked.clone().into_response();
            reply.answers = vec![test_support::rr(&format!(
                "bank.example. 60 IN A {}",
                Ipv4Addr::from(ip)
            ))];
            reply
        };
        let mut wrong_id = answer([6, 6, 6, 1]);
        wrong_id.metadata.id = asked.metadata.id.wrapping_add(1);
        let mut wrong_question = answer([6, 6, 6, 2]);
        wrong_question.queries[0].set_name("evil.example.".parse().expect("name"));
        vec![
            (true, answer([6, 6, 6, 6])),
            (false, wrong_id),
            (false, wrong_question),
            (false, answer([192, 0, 2, 80])),
        ]
    })
    .await;
    let dnsmasq = Dnsmasq::start(config(&[format!("{}#{}", addr.ip(), addr.port())])).await;
    let reply = timeout_after(GUARD, dnsmasq.ask("bank.example.", RecordType::A)).await;
    assert_eq!(addresses(&reply), [Ipv4Addr::new(192, 0, 2, 80)]);
    timeout_after(GUARD, upstream).await.expect("upstream task");
    let cached = timeout_after(GUARD, dnsmasq.ask("bank.example.", RecordType::A)).await;
    assert_eq!(addresses(&cached), [Ipv4Addr::new(192, 0, 2, 80)]);
}

#[tokio::test]
async fn beyond_dns_forward_max_new_upstream_queries_get_servfail() {
    let (upstream, gate) = FakeUpstream::gated([192, 0, 2, 9]).await;
    let mut config = config(&[upstream.server()]);
    config.dns_forward_max = 1;
    let dnsmasq = Dnsmasq::start(config).await;
    let addr = dnsmasq.addr;
    let held = tokio::spawn(async move { ask(addr, "first.example.com.", RecordType::A).await });
    eventually("the first query reaches the upstream", || async {
        upstream.count("first.example.com.") == 1
    })
    .await;
    let rejected = timeout_after(GUARD, dnsmasq.ask("second.example.com.", RecordType::A)).await;
    assert_eq!(rejected.metadata.response_code, ResponseCode::ServFail);
    gate.add_permits(10);
    let first = timeout_after(GUARD, held).await.expect("client task");
    assert_eq!(addresses(&first), [Ipv4Addr::new(192, 0, 2, 9)]);
}

#[tokio::test]
async fn names_in_hosts_files_are_answered_locally_with_ttl_zero() {
    let upstream = FakeUpstream::start([192, 0, 2, 1]).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let hosts = dir.path().join("hosts");
    std::fs::write(&hosts, "10.1.2.3 db.internal db\n").expect("write hosts");
    let mut config = config(&[upstream.server()]);
    config.hosts_files = vec![hosts];
    let dnsmasq = Dnsmasq::start(config).await;
    let reply = timeout_after(GUARD, dnsmasq.ask("db.internal.", RecordType::A)).await;
    test_support::assert_records_eq(&reply.answers, &["db.internal. 0 IN A 10.1.2.3"]);
    assert!(reply.metadata.authoritative);
    let reply = timeout_after(
        GUARD,
        dnsmasq.ask("3.2.1.10.in-addr.arpa.", RecordType::PTR),
    )
    .await;
    test_support::assert_records_eq(
        &reply.answers,
        &[
            "3.2.1.10.in-addr.arpa. 0 IN PTR db.internal.",
            "3.2.1.10.in-addr.arpa. 0 IN PTR db.",
        ],
    );
    assert!(upstream.asked().is_empty());
}

#[tokio::test]
async fn a_cached_name_that_the_hosts_files_take_up_is_answered_from_them() {
    let upstream = FakeUpstream::start([192, 0, 2, 1]).await;
    let dnsmasq = Dnsmasq::start(config(&[upstream.server()])).await;
    for reply in dnsmasq.ask_twice("db.internal.", RecordType::A).await {
        assert_eq!(addresses(&reply), [Ipv4Addr::new(192, 0, 2, 1)]);
    }
    assert_eq!(
        upstream.count("db.internal."),
        1,
        "the second answer is a cache hit"
    );

    let forwarder = &dnsmasq.running.forwarder;
    forwarder.set_hosts(dnsmasq_rs::hosts::Hosts::parse("10.1.2.3 DB.Internal\n"));
    for name in ["db.internal.", "dB.iNTERNAL."] {
        let reply = timeout_after(GUARD, dnsmasq.ask(name, RecordType::A)).await;
        assert_eq!(addresses(&reply), [Ipv4Addr::new(10, 1, 2, 3)], "{name}");
        assert!(reply.metadata.authoritative, "{name}");
    }
    // A type the hosts files do not answer is still served from the cache.
    dnsmasq.ask_twice("db.internal.", RecordType::TXT).await;
    assert_eq!(upstream.count("db.internal."), 2);
}

#[tokio::test]
async fn the_metrics_endpoint_reports_cache_and_upstream_counters() {
    let upstream = FakeUpstream::start([192, 0, 2, 1]).await;
    let mut config = config(&[upstream.server()]);
    config.metrics = Some((Ipv4Addr::LOCALHOST, 0).into());
    let dnsmasq = Dnsmasq::start(config).await;
    for _ in 0..2 {
        timeout_after(GUARD, dnsmasq.ask("www.example.com.", RecordType::A)).await;
    }
    let metrics = dnsmasq.running.metrics_addr.expect("metrics served");
    let body = timeout_after(GUARD, http_get(metrics, "/metrics")).await;
    for line in [
        "dnsmasq_cache_hits_total 1",
        "dnsmasq_cache_misses_total 1",
        "dnsmasq_cache_insertions_total 1",
        "dnsmasq_cache_size 1",
        "dnsmasq_requests_total{qtype=\"A\",rcode=\"NOERROR\"} 2",
    ] {
        assert!(
            body.lines().any(|l| l == line),
            "missing {line:?} in\n{body}"
        );
    }
    assert!(
        body.contains(&format!(
            "dnsmasq_upstream_request_duration_seconds_count{{server=\"{}\"}} 1",
            upstream.addr
        )),
        "{body}"
    );
}

async fn http_get(addr: SocketAddr, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut body = String::new();
    stream.read_to_string(&mut body).await.expect("read");
    body
}

#[tokio::test]
async fn a_cname_chain_is_cached_with_each_record_counting_down_on_its_own() {
    let upstream = FakeUpstream::start([192, 0, 2, 1]).await;
    let dnsmasq = Dnsmasq::start(config(&[upstream.server()])).await;
    let first = timeout_after(GUARD, dnsmasq.ask("cname.example.com.", RecordType::A)).await;
    let second = timeout_after(GUARD, dnsmasq.ask("cname.example.com.", RecordType::A)).await;
    assert_eq!(upstream.count("cname.example.com."), 1);
    assert_eq!(first.answers.len(), 2);
    assert_eq!(second.answers.len(), 2);
    assert!(second.answers[0].ttl <= 300 && second.answers[0].ttl > 60);
}

#[tokio::test]
async fn dns_loop_detect_drops_an_upstream_that_sends_queries_back() {
    // The port dnsmasq-rs will listen on, reserved now so the looping upstream knows it.
    let port = {
        let (udp, _tcp) = kdns_net::bind((Ipv4Addr::LOCALHOST, 0).into())
            .await
            .expect("a free port");
        udp.local_addr().expect("local address").port()
    };
    let target: SocketAddr = (Ipv4Addr::LOCALHOST, port).into();
    // An upstream that forwards every query to dnsmasq-rs, as a misconfigured resolver would.
    let looping = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))
        .await
        .expect("bind");
    let looping_addr = looping.local_addr().expect("local address");
    let relay = tokio::spawn(async move {
        let mut buf = vec![0u8; 4096];
        while let Ok((len, _)) = looping.recv_from(&mut buf).await {
            let Ok(query) = Message::from_vec(&buf[..len]) else {
                continue;
            };
            let _ = kdns_net::exchange_udp(target, &query, GUARD).await;
        }
    });
    let good = FakeUpstream::start([192, 0, 2, 1]).await;
    let mut config = config(&[
        format!("{}#{}", looping_addr.ip(), looping_addr.port()),
        good.server(),
    ]);
    config.listen = vec![target];
    config.dns_loop_detect = true;
    let dnsmasq = Dnsmasq::start(config).await;
    let forwarder = dnsmasq.running.forwarder.clone();
    eventually("the loop is detected", || {
        let forwarder = forwarder.clone();
        async move { forwarder.looped_servers() == [looping_addr] }
    })
    .await;
    eventually("the looping upstream is no longer used", || {
        let forwarder = forwarder.clone();
        async move {
            forwarder
                .routes()
                .upstreams()
                .iter()
                .all(|s| s.addr() != looping_addr)
        }
    })
    .await;
    let reply = timeout_after(GUARD, dnsmasq.ask("www.example.com.", RecordType::A)).await;
    assert_eq!(addresses(&reply), [Ipv4Addr::new(192, 0, 2, 1)]);
    relay.abort();
}
