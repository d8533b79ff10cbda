//! A datagram to dnsmasq-rs: kdns-net's vetting, then its Forwarder (hosts, local-only
//! domains, NOTIFY, a small cache, coalescing) forwarding misses to a fake upstream on
//! loopback, then fitting to the client's UDP size.

#![no_main]

use std::net::SocketAddr;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use dnsmasq_rs::cache::CachePolicy;
use dnsmasq_rs::config::{Config, NotifyPolicy};
use dnsmasq_rs::hosts::Hosts;
use dnsmasq_rs::reload::Reloader;
use dnsmasq_rs::{Forwarder, ForwarderSettings, Metrics};
use kdns_config::DnsConfig;
use kdns_fuzz::{CLIENT, answer_udp_and_check, runtime};
use kdns_net::ServerConfig;
use libfuzzer_sys::fuzz_target;
use test_support::FakeUpstream;

const HOSTS: &str = "10.1.2.3 host.local.test alias.local.test\n\
                     fd00::1 host.local.test\n\
                     192.0.2.1 pinned.example.com\n";

struct Setup {
    forwarder: Arc<Forwarder>,
    server_config: ServerConfig,
    // Kept alive: the upstream stops when dropped.
    _upstream: FakeUpstream,
}

/// One upstream and forwarder per process; the cache carries over between inputs, as it does
/// between a real server's queries.
static SETUP: LazyLock<Setup> = LazyLock::new(|| {
    runtime().block_on(async {
        let listen: SocketAddr = "127.0.0.1:0".parse().expect("an address");
        let upstream = FakeUpstream::start(listen, "example.com.", 60)
            .await
            .expect("the fake upstream starts");
        let at = upstream.addr();
        let mut config = Config::new(listen);
        config.servers = [
            format!("127.0.0.1#{}", at.port()),
            format!("/example.com/127.0.0.1#{}", at.port()),
            "/local.test/".to_owned(),
            "/default.example.com/#".to_owned(),
        ]
        .iter()
        .map(|spec| spec.parse().expect("a valid --server"))
        .collect();
        config.cache = CachePolicy {
            capacity: 32,
            ..CachePolicy::default()
        };
        config.notify = NotifyPolicy::From(vec![CLIENT.ip()]);
        config.upstream_timeout = Duration::from_millis(500);
        let routes = Reloader::new(config.clone(), DnsConfig::default())
            .routes()
            .await;
        let forwarder = Forwarder::new(
            ForwarderSettings {
                cache: config.cache.clone(),
                notify: config.notify.clone(),
                edns_packet_max: config.edns_packet_max,
                forward_max: config.dns_forward_max,
                log_queries: false,
            },
            routes,
            Hosts::parse(HOSTS),
            Metrics::new(),
        );
        // As dnsmasq-rs's `start` configures its servers.
        let server_config = ServerConfig {
            max_udp_payload: config.edns_packet_max,
            ..ServerConfig::default()
        };
        Setup {
            forwarder: Arc::new(forwarder),
            server_config,
            _upstream: upstream,
        }
    })
});

fuzz_target!(|data: &[u8]| {
    let setup = &*SETUP;
    answer_udp_and_check(setup.forwarder.clone(), setup.server_config.clone(), data);
});
