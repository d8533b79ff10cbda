//! A config dir that turns invalid and then valid again: the previous configuration keeps
//! serving meanwhile, and the next valid one applies.

use std::net::Ipv4Addr;
use std::path::Path;
use std::time::Duration;

use hickory_proto::rr::RecordType;
use test_support::timeout_after;

use crate::support::{Dnsmasq, FakeUpstream, GUARD, addresses, config, eventually};

fn write(dir: &Path, key: &str, value: &str) {
    // Written beside and renamed, as the kubelet's atomic writer swaps the whole directory.
    let tmp = dir.join(format!(".{key}.tmp"));
    std::fs::write(&tmp, value).expect("write config key");
    std::fs::rename(&tmp, dir.join(key)).expect("rename config key");
}

fn config_errors(dnsmasq: &Dnsmasq) -> u64 {
    dnsmasq
        .running
        .metrics
        .encode()
        .lines()
        .find_map(|l| l.strip_prefix("dnsmasq_config_errors_total "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

#[tokio::test]
async fn an_invalid_config_dir_keeps_the_previous_config_until_a_valid_one_replaces_it() {
    let first = FakeUpstream::start([192, 0, 2, 1]).await;
    let stub = FakeUpstream::start([192, 0, 2, 2]).await;
    let later = FakeUpstream::start([192, 0, 2, 3]).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = config(&[]);
    config.config_dir = Some(dir.path().to_owned());
    config.sync_interval = Duration::from_millis(50);
    let dnsmasq = Dnsmasq::start(config).await;

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
