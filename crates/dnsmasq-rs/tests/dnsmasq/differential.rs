//! Differential test: Debian's dnsmasq (package dnsmasq-base) and dnsmasq-rs, started with the
//! same flags in front of the same fake upstream, asked the same queries in the same order, must
//! give the same rcodes, answer records and CHAOS statistics.
//!
//! TTLs are compared apart (both count down in whole seconds, so a second may tick between the
//! two). Deliberate differences (see the README) are kept out of the comparison: dnsmasq 2.90
//! caches only A, AAAA, CNAME, SRV and PTR records, relays a cache miss's OPT-less reply, and
//! re-sends a query that got SERVFAIL.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use hickory_proto::op::{Message, Query, ResponseCode};
use hickory_proto::rr::{DNSClass, Name, RData, RecordType};
use test_support::timeout_after;

use crate::support::{Dnsmasq, FakeUpstream, GUARD};

const DNSMASQ: &str = "/usr/sbin/dnsmasq";

/// Debian's dnsmasq as a child process, killed on drop (also when the test fails).
struct RealDnsmasq {
    child: Child,
    addr: SocketAddr,
}

impl Drop for RealDnsmasq {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl RealDnsmasq {
    async fn start(flags: &[String], log: &Path) -> Self {
        // A port free for UDP and TCP now; dnsmasq binds it a moment later.
        let port = {
            let (udp, _tcp) = kdns_net::bind((Ipv4Addr::LOCALHOST, 0).into())
                .await
                .expect("a free port");
            udp.local_addr().expect("local address").port()
        };
        let child = Command::new(DNSMASQ)
            .args([
                "--keep-in-foreground",
                &format!("--port={port}"),
                "--listen-address=127.0.0.1",
                "--bind-interfaces",
                "--user=root",
                "--conf-file=/dev/null",
                &format!("--pid-file={}", log.with_extension("pid").display()),
                &format!("--log-facility={}", log.display()),
            ])
            .args(flags)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start dnsmasq");
        let dnsmasq = Self {
            child,
            addr: (Ipv4Addr::LOCALHOST, port).into(),
        };
        let deadline = tokio::time::Instant::now() + GUARD;
        loop {
            let probe = chaos_query("cachesize.bind.");
            if kdns_net::exchange_udp(dnsmasq.addr, &probe, Duration::from_millis(100))
                .await
                .is_ok()
            {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "dnsmasq did not start; see {}",
                log.display()
            );
        }
        dnsmasq
    }
}

fn chaos_query(name: &str) -> Message {
    let mut query = kdns_net::query_message(name, RecordType::TXT).expect("valid name");
    query.queries[0].set_query_class(DNSClass::CH);
    query
}

/// One question to ask both.
#[derive(Clone, Copy, Debug)]
enum Ask {
    In(&'static str, RecordType),
    Chaos(&'static str, RecordType),
}

impl Ask {
    fn message(self) -> Message {
        match self {
            Self::In(name, rtype) => kdns_net::query_message(name, rtype).expect("valid name"),
            Self::Chaos(name, rtype) => {
                let mut query = chaos_query(name);
                query.queries[0] = Query::query(Name::from_ascii(name).expect("valid name"), rtype);
                query.queries[0].set_query_class(DNSClass::CH);
                query
            }
        }
    }
}

/// What is compared: the rcode, and the answer records as zone-file text with TTL 0.
fn outcome(reply: &Message) -> (ResponseCode, Vec<String>) {
    let mut answers: Vec<String> = reply
        .answers
        .iter()
        .map(|record| {
            let mut record = record.clone();
            record.ttl = 0;
            record.to_string()
        })
        .collect();
    answers.sort();
    (reply.metadata.response_code, answers)
}

fn txt(reply: &Message) -> Vec<String> {
    reply
        .answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::TXT(txt) => Some(
                txt.txt_data
                    .iter()
                    .map(|s| String::from_utf8_lossy(s).into_owned())
                    .collect::<Vec<_>>()
                    .join(" | "),
            ),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn dnsmasq_rs_answers_like_debians_dnsmasq_with_the_same_flags_and_upstream() {
    if !Path::new(DNSMASQ).exists() {
        eprintln!("SKIPPED: {DNSMASQ} is not installed (apt-get install dnsmasq-base)");
        return;
    }
    let upstream = FakeUpstream::start([192, 0, 2, 53]).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let hosts = dir.path().join("hosts");
    std::fs::write(&hosts, "10.1.2.3 db.internal\n10.1.2.4 cache.internal\n").expect("write hosts");
    let flags: Vec<String> = vec![
        format!("--addn-hosts={}", hosts.display()),
        "--no-resolv".into(),
        "--no-hosts".into(),
        "--cache-size=100".into(),
        format!("--server={}", upstream.server()),
        "--server=/local.lan/".into(),
    ];
    let real = RealDnsmasq::start(&flags, &dir.path().join("dnsmasq.log")).await;

    let argv = [
        "dnsmasq-rs",
        "--",
        "--port=0",
        "--listen-address=127.0.0.1",
        "--metrics-port=0",
    ]
    .into_iter()
    .map(str::to_owned)
    .chain(flags.iter().cloned());
    let (args, _) = dnsmasq_rs::parse_args(argv).expect("dnsmasq's flags parse");
    let mut config = args.into_config().expect("valid flags");
    config.config_dir = None;
    let ours = Dnsmasq::start(config).await;
    // The start-up probe counted as a hit at dnsmasq; even the score.
    let probe = chaos_query("cachesize.bind.");
    timeout_after(GUARD, kdns_net::exchange_udp(ours.addr, &probe, GUARD))
        .await
        .expect("dnsmasq-rs answers");

    let stats = [
        "cachesize.bind.",
        "hits.bind.",
        "misses.bind.",
        "insertions.bind.",
        "evictions.bind.",
    ]
    .map(|name| Ask::Chaos(name, RecordType::TXT));
    let mut script: Vec<Ask> = stats.to_vec();
    script.extend([
        Ask::In("www.example.com.", RecordType::A),
        Ask::In("www.example.com.", RecordType::A),
        Ask::In("two.example.com.", RecordType::A),
        Ask::In("two.example.com.", RecordType::A),
        Ask::In("cname.example.com.", RecordType::A),
        Ask::In("nx.example.com.", RecordType::A),
        Ask::In("nx.example.com.", RecordType::A),
        Ask::In("nodata.example.com.", RecordType::A),
        Ask::In("printer.local.lan.", RecordType::A),
        Ask::In("db.internal.", RecordType::A),
        Ask::In("DB.Internal.", RecordType::A),
        Ask::In("db.internal.", RecordType::AAAA),
        Ask::In("3.2.1.10.in-addr.arpa.", RecordType::PTR),
        Ask::In("v6.example.com.", RecordType::AAAA),
        Ask::In("v6.example.com.", RecordType::AAAA),
    ]);
    script.extend(stats);
    script.extend([
        Ask::Chaos("servers.bind.", RecordType::TXT),
        Ask::Chaos("id.server.", RecordType::TXT),
        Ask::Chaos("hostname.bind.", RecordType::TXT),
        Ask::Chaos("hits.bind.", RecordType::A),
        Ask::Chaos("hits.bind.", RecordType::ANY),
        // Last: dnsmasq sends a query that got SERVFAIL once more, which servers.bind counts;
        // dnsmasq-rs asks each server once (a documented difference).
        Ask::In("servfail.example.com.", RecordType::A),
    ]);

    let mut differences = Vec::new();
    for ask in script {
        let message = ask.message();
        let theirs = timeout_after(GUARD, kdns_net::exchange_udp(real.addr, &message, GUARD))
            .await
            .expect("dnsmasq answers");
        let mine = timeout_after(GUARD, kdns_net::exchange_udp(ours.addr, &message, GUARD))
            .await
            .expect("dnsmasq-rs answers");
        let (theirs_outcome, mine_outcome) = (outcome(&theirs), outcome(&mine));
        if theirs_outcome != mine_outcome {
            differences.push(format!(
                "{ask:?}:\n  dnsmasq:    {theirs_outcome:?}\n  dnsmasq-rs: {mine_outcome:?}"
            ));
        }
        if matches!(
            ask,
            Ask::Chaos(..)
                | Ask::In(
                    "db.internal." | "DB.Internal." | "3.2.1.10.in-addr.arpa.",
                    _
                )
        ) {
            eprintln!(
                "{ask:?}: dnsmasq {:?}, dnsmasq-rs {:?}",
                txt(&theirs),
                txt(&mine)
            );
            let flags = |m: &Message| {
                (
                    m.metadata.authoritative,
                    m.metadata.recursion_available,
                    m.answers
                        .iter()
                        .map(|r| (r.ttl, r.dns_class))
                        .collect::<Vec<_>>(),
                )
            };
            if flags(&theirs) != flags(&mine) {
                differences.push(format!(
                    "{ask:?} flags (AA, RA, TTL/class):\n  dnsmasq:    {:?}\n  dnsmasq-rs: {:?}",
                    flags(&theirs),
                    flags(&mine)
                ));
            }
        }
    }
    assert!(
        differences.is_empty(),
        "dnsmasq-rs differs from dnsmasq:\n{}",
        differences.join("\n")
    );
}
