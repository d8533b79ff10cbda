//! The mounted kube-dns ConfigMap, applied live.

use std::net::Ipv4Addr;
use std::path::Path;
use std::time::Duration;

use hickory_proto::rr::RecordType;
use test_support::timeout_after;

use crate::support::{Dnsmasq, FakeUpstream, GUARD, addresses, config, eventually};

/// A configuration with `servers` that follows the config dir `dir`, checked every 50 ms.
fn watching(dir: &Path, servers: &[String]) -> dnsmasq_rs::Config {
    let mut config = config(servers);
    config.config_dir = Some(dir.to_owned());
    config.sync_interval = Duration::from_millis(50);
    config
}

fn write(dir: &Path, key: &str, value: &str) {
    // Written beside and renamed, as the kubelet's atomic writer swaps the whole directory.
    let tmp = dir.join(format!(".{key}.tmp"));
    std::fs::write(&tmp, value).expect("write config key");
    std::fs::rename(&tmp, dir.join(key)).expect("rename config key");
}

#[tokio::test]
async fn a_config_dir_change_is_applied_live_and_keeps_the_cache_for_untouched_names() {
    let default = FakeUpstream::start([192, 0, 2, 1]).await;
    let old_stub = FakeUpstream::start([192, 0, 2, 2]).await;
    let new_stub = FakeUpstream::start([192, 0, 2, 3]).await;
    let dir = tempfile::tempdir().expect("tempdir");
    write(
        dir.path(),
        "stubDomains",
        &format!(r#"{{"acme.local": ["{}"]}}"#, old_stub.addr),
    );
    let dnsmasq = Dnsmasq::start(watching(dir.path(), &[default.server()])).await;

    let stub = timeout_after(GUARD, dnsmasq.ask("app.acme.local.", RecordType::A)).await;
    assert_eq!(addresses(&stub), [Ipv4Addr::new(192, 0, 2, 2)]);
    timeout_after(GUARD, dnsmasq.ask("www.example.com.", RecordType::A)).await;
    assert_eq!(default.count("www.example.com."), 1);

    write(
        dir.path(),
        "stubDomains",
        &format!(r#"{{"acme.local": ["{}"]}}"#, new_stub.addr),
    );
    eventually("the new stub server answers", || async {
        addresses(&dnsmasq.ask("app.acme.local.", RecordType::A).await)
            == [Ipv4Addr::new(192, 0, 2, 3)]
    })
    .await;

    // Still cached: the change did not touch it.
    timeout_after(GUARD, dnsmasq.ask("www.example.com.", RecordType::A)).await;
    assert_eq!(default.count("www.example.com."), 1);
}

#[tokio::test]
async fn upstream_nameservers_replace_the_default_servers_and_an_invalid_update_keeps_them() {
    let first = FakeUpstream::start([192, 0, 2, 1]).await;
    let second = FakeUpstream::start([192, 0, 2, 2]).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let dnsmasq = Dnsmasq::start(watching(dir.path(), &[])).await;

    write(
        dir.path(),
        "upstreamNameservers",
        &format!(r#"["{}"]"#, first.addr),
    );
    eventually("the first upstream answers", || async {
        addresses(&dnsmasq.ask("a.example.com.", RecordType::A).await)
            == [Ipv4Addr::new(192, 0, 2, 1)]
    })
    .await;

    write(dir.path(), "upstreamNameservers", "not json");
    write(
        dir.path(),
        "stubDomains",
        &format!(r#"{{"acme.local": ["{}"]}}"#, second.addr),
    );
    // The invalid key makes the whole update invalid; wait until it has been read.
    eventually("the invalid update is counted", || async {
        config_errors(&dnsmasq) >= 1
    })
    .await;
    let reply = timeout_after(GUARD, dnsmasq.ask("b.acme.local.", RecordType::A)).await;
    assert_eq!(
        addresses(&reply),
        [Ipv4Addr::new(192, 0, 2, 1)],
        "the previous config stays"
    );
}

/// `dnsmasq_config_errors_total`, read from the metrics registry.
fn config_errors(dnsmasq: &Dnsmasq) -> u64 {
    let text = dnsmasq.running.metrics.encode();
    text.lines()
        .find_map(|l| l.strip_prefix("dnsmasq_config_errors_total "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

#[tokio::test]
async fn a_stub_server_named_in_the_cluster_domain_is_resolved_through_kubedns() {
    // "kubedns" answers every A question with 127.0.0.1; the stub server listens there.
    let kubedns = FakeUpstream::start([127, 0, 0, 1]).await;
    let stub = FakeUpstream::start([192, 0, 2, 44]).await;
    let dir = tempfile::tempdir().expect("tempdir");
    write(
        dir.path(),
        "stubDomains",
        &format!(
            r#"{{"acme.local": ["ns.dns.svc.cluster.local:{}"]}}"#,
            stub.addr.port()
        ),
    );
    let mut config = config(&[]);
    config.config_dir = Some(dir.path().to_owned());
    config.kubedns_server = kubedns.addr;
    let dnsmasq = Dnsmasq::start(config).await;
    let reply = timeout_after(GUARD, dnsmasq.ask("app.acme.local.", RecordType::A)).await;
    assert_eq!(addresses(&reply), [Ipv4Addr::new(192, 0, 2, 44)]);
    assert_eq!(kubedns.count("ns.dns.svc.cluster.local."), 1);
}

/// A config dir that turns invalid and then valid again: the previous configuration keeps
/// serving meanwhile, and the next valid one applies.
#[tokio::test]
async fn an_invalid_config_dir_keeps_the_previous_config_until_a_valid_one_replaces_it() {
    let first = FakeUpstream::start([192, 0, 2, 1]).await;
    let stub = FakeUpstream::start([192, 0, 2, 2]).await;
    let later = FakeUpstream::start([192, 0, 2, 3]).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let dnsmasq = Dnsmasq::start(watching(dir.path(), &[])).await;

    write(
        dir.path(),
        "upstreamNameservers",
        &format!(r#"["{}"]"#, first.addr),
    );
    write(
        dir.path(),
        "stubDomains",
        &format!(r#"{{"acme.local": ["{}"]}}"#, stub.addr),
    );
    eventually("the first config applies", || async {
        addresses(&dnsmasq.ask("x.acme.local.", RecordType::A).await)
            == [Ipv4Addr::new(192, 0, 2, 2)]
    })
    .await;

    write(dir.path(), "stubDomains", "{ not json");
    eventually("the invalid update is counted", || async {
        config_errors(&dnsmasq) >= 1
    })
    .await;
    for name in ["y.acme.local.", "a.example.com."] {
        let reply = timeout_after(GUARD, dnsmasq.ask(name, RecordType::A)).await;
        let want = if name.ends_with("acme.local.") { 2 } else { 1 };
        assert_eq!(
            addresses(&reply),
            [Ipv4Addr::new(192, 0, 2, want)],
            "{name}: the previous config stays"
        );
    }

    write(
        dir.path(),
        "upstreamNameservers",
        &format!(r#"["{}"]"#, later.addr),
    );
    write(dir.path(), "stubDomains", "{}");
    eventually("the next valid config applies", || async {
        addresses(&dnsmasq.ask("z.acme.local.", RecordType::A).await)
            == [Ipv4Addr::new(192, 0, 2, 3)]
    })
    .await;
    let reply = timeout_after(GUARD, dnsmasq.ask("b.example.com.", RecordType::A)).await;
    assert_eq!(addresses(&reply), [Ipv4Addr::new(192, 0, 2, 3)]);
}
