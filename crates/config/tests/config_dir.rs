//! The ConfigMap directory as the kubelet lays it out, read once and polled.

#![cfg(unix)]

use std::fs;
use std::net::SocketAddr;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::Duration;

use kdns_config::{
    ConfigError, DirPoller, DnsConfig, MAX_FILE_BYTES, Nameserver, StubDomain, read_dir, watch_dir,
};
use tokio_util::sync::CancellationToken;

const PERIOD: Duration = Duration::from_secs(10);

/// A ConfigMap volume written the way the kubelet writes it: data in a hidden timestamped
/// directory, `..data` pointing at it, each key a visible symlink through `..data`, and updates
/// made by swapping `..data`.
struct KubeletVolume {
    dir: PathBuf,
    generation: u32,
}

impl KubeletVolume {
    fn new(dir: &Path, data: &[(&str, &str)]) -> KubeletVolume {
        fs::create_dir_all(dir).expect("create volume dir");
        let mut volume = KubeletVolume {
            dir: dir.to_owned(),
            generation: 0,
        };
        volume.update(data);
        volume
    }

    fn update(&mut self, data: &[(&str, &str)]) {
        self.generation += 1;
        let ts = format!("..2024_01_01_00_00_00.{:03}", self.generation);
        let ts_dir = self.dir.join(&ts);
        fs::create_dir(&ts_dir).expect("create timestamp dir");
        for (key, value) in data {
            fs::write(ts_dir.join(key), value).expect("write key");
        }
        let tmp = self.dir.join("..data_tmp");
        symlink(&ts, &tmp).expect("symlink ..data_tmp");
        let old = fs::read_link(self.dir.join("..data")).ok();
        fs::rename(&tmp, self.dir.join("..data")).expect("swap ..data");
        // Visible keys: add new ones, drop removed ones.
        for entry in fs::read_dir(&self.dir).expect("list volume") {
            let entry = entry.expect("entry");
            let name = entry.file_name().to_string_lossy().into_owned();
            if !name.starts_with('.') && !data.iter().any(|(key, _)| *key == name) {
                fs::remove_file(entry.path()).expect("remove old key");
            }
        }
        for (key, _) in data {
            let link = self.dir.join(key);
            if fs::symlink_metadata(&link).is_err() {
                symlink(Path::new("..data").join(key), &link).expect("symlink key");
            }
        }
        if let Some(old) = old {
            fs::remove_dir_all(self.dir.join(old)).expect("remove old timestamp dir");
        }
    }
}

fn addr(s: &str) -> SocketAddr {
    s.parse().expect("test address")
}

fn upstreams(addrs: &[&str]) -> DnsConfig {
    DnsConfig {
        upstream_nameservers: addrs.iter().map(|a| addr(a)).collect(),
        ..DnsConfig::default()
    }
}

#[test]
fn the_kubelet_layout_is_read_through_its_symlinks() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("kube-dns-config");
    KubeletVolume::new(
        &dir,
        &[
            ("upstreamNameservers", r#"["1.1.1.1", "8.8.8.8:5353"]"#),
            (
                "stubDomains",
                r#"{"acme.local": ["10.0.0.1", "ns.acme.local"]}"#,
            ),
        ],
    );
    // Not keys: dotfiles and sub-directories.
    fs::write(dir.join(".hidden"), "x").expect("write dotfile");
    fs::create_dir(dir.join("subdir")).expect("create subdir");
    fs::write(dir.join("subdir").join("federations"), "bad").expect("write nested");

    let files = read_dir(&dir).expect("readable");
    assert_eq!(
        files.files().keys().collect::<Vec<_>>(),
        ["stubDomains", "upstreamNameservers"]
    );
    let config = DnsConfig::from_files(files.files()).expect("valid");
    assert_eq!(
        config,
        DnsConfig {
            upstream_nameservers: vec![addr("1.1.1.1:53"), addr("8.8.8.8:5353")],
            stub_domains: vec![StubDomain {
                domain: "acme.local".into(),
                servers: vec![
                    Nameserver::Addr(addr("10.0.0.1:53")),
                    Nameserver::Host {
                        name: "ns.acme.local".into(),
                        port: 53
                    },
                ],
            }],
            federations: vec![],
        }
    );
}

#[test]
fn a_missing_directory_is_an_empty_config_but_a_file_is_an_error() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let files = read_dir(&tmp.path().join("missing")).expect("missing is fine");
    assert!(files.is_empty());
    assert_eq!(files.version(), "");

    // invalid
    let file = tmp.path().join("file");
    fs::write(&file, "x").expect("write");
    let err = read_dir(&file).expect_err("a file is not a directory");
    assert!(matches!(err, ConfigError::NotADirectory { .. }), "{err}");
}

#[test]
fn dangling_key_symlinks_are_skipped() {
    let tmp = tempfile::tempdir().expect("tempdir");
    symlink("..data/stubDomains", tmp.path().join("stubDomains")).expect("symlink");
    assert!(read_dir(tmp.path()).expect("readable").is_empty());
}

#[test]
fn content_that_is_not_utf8_fails_the_whole_read() {
    let tmp = tempfile::tempdir().expect("tempdir");
    fs::write(tmp.path().join("upstreamNameservers"), r#"["1.1.1.1"]"#).expect("write");
    fs::write(tmp.path().join("binary"), b"\xff\xfe").expect("write");
    let err = read_dir(tmp.path()).expect_err("not UTF-8");
    assert!(
        matches!(&err, ConfigError::NotUtf8 { file } if file == "binary"),
        "{err}"
    );
}

#[test]
fn files_larger_than_the_limit_fail_the_whole_read() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let limit = usize::try_from(MAX_FILE_BYTES).expect("fits");
    fs::write(tmp.path().join("at-limit"), vec![b' '; limit]).expect("write");
    assert!(read_dir(tmp.path()).is_ok());

    // invalid
    fs::write(tmp.path().join("big"), vec![b' '; limit + 1]).expect("write");
    let err = read_dir(tmp.path()).expect_err("too large");
    assert!(
        matches!(&err, ConfigError::FileTooLarge { file, .. } if file == "big"),
        "{err}"
    );
}

#[test]
fn the_version_is_stable_for_the_same_content_across_kubelet_updates() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = [("upstreamNameservers", r#"["1.1.1.1"]"#)];
    let mut volume = KubeletVolume::new(tmp.path(), &data);
    let first = read_dir(tmp.path()).expect("readable");
    assert_eq!(
        read_dir(tmp.path()).expect("readable").version(),
        first.version()
    );

    volume.update(&data);
    assert_eq!(
        read_dir(tmp.path()).expect("readable").version(),
        first.version()
    );

    volume.update(&[("upstreamNameservers", r#"["1.1.1.2"]"#)]);
    assert_ne!(
        read_dir(tmp.path()).expect("readable").version(),
        first.version()
    );
}

#[test]
fn the_poller_keeps_the_previous_config_over_an_invalid_update_and_counts_it_once() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut volume = KubeletVolume::new(tmp.path(), &[("upstreamNameservers", r#"["1.1.1.1"]"#)]);
    let mut poller = DirPoller::new(tmp.path().to_owned());
    let counter = poller.invalid_updates();
    assert_eq!(poller.config(), &upstreams(&["1.1.1.1:53"]));
    assert_eq!(poller.poll(), None);

    volume.update(&[("upstreamNameservers", "not json")]);
    assert_eq!(poller.poll(), None);
    assert_eq!(poller.poll(), None);
    assert_eq!(poller.config(), &upstreams(&["1.1.1.1:53"]));
    assert_eq!(counter.load(Ordering::Relaxed), 1);

    volume.update(&[("upstreamNameservers", r#"["1.1.1.2"]"#)]);
    assert_eq!(poller.poll(), Some(&upstreams(&["1.1.1.2:53"])));
    assert_eq!(counter.load(Ordering::Relaxed), 1);
}

#[test]
fn the_poller_goes_back_to_defaults_when_the_config_map_is_emptied_or_removed() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("config");
    let mut volume = KubeletVolume::new(&dir, &[("upstreamNameservers", r#"["1.1.1.1"]"#)]);
    let mut poller = DirPoller::new(dir.clone());

    volume.update(&[]);
    assert_eq!(poller.poll(), Some(&DnsConfig::default()));

    volume.update(&[("upstreamNameservers", r#"["1.1.1.1"]"#)]);
    assert_eq!(poller.poll(), Some(&upstreams(&["1.1.1.1:53"])));

    fs::remove_dir_all(&dir).expect("remove volume");
    assert_eq!(poller.poll(), Some(&DnsConfig::default()));
    assert_eq!(poller.invalid_updates().load(Ordering::Relaxed), 0);
}

#[test]
fn an_invalid_config_at_start_gives_defaults_and_is_counted() {
    let tmp = tempfile::tempdir().expect("tempdir");
    KubeletVolume::new(
        tmp.path(),
        &[("stubDomains", r#"{"Bad_Domain": ["1.1.1.1"]}"#)],
    );
    let poller = DirPoller::new(tmp.path().to_owned());
    assert_eq!(poller.config(), &DnsConfig::default());
    assert_eq!(poller.invalid_updates().load(Ordering::Relaxed), 1);
}

#[tokio::test(start_paused = true)]
async fn watch_dir_publishes_a_valid_update_within_one_period() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut volume = KubeletVolume::new(tmp.path(), &[("upstreamNameservers", r#"["1.1.1.1"]"#)]);
    let shutdown = CancellationToken::new();
    let mut watch = watch_dir(tmp.path().to_owned(), PERIOD, shutdown.clone());
    assert_eq!(watch.initial, upstreams(&["1.1.1.1:53"]));
    assert_eq!(*watch.updates.borrow_and_update(), watch.initial);

    volume.update(&[("upstreamNameservers", r#"["1.1.1.2", "1.1.1.3"]"#)]);
    let start = tokio::time::Instant::now();
    watch.updates.changed().await.expect("update published");
    assert!(start.elapsed() <= PERIOD, "took {:?}", start.elapsed());
    assert_eq!(
        *watch.updates.borrow_and_update(),
        upstreams(&["1.1.1.2:53", "1.1.1.3:53"])
    );

    shutdown.cancel();
    watch.task.await.expect("poller ends on shutdown");
}

#[tokio::test(start_paused = true)]
async fn watch_dir_keeps_the_previous_config_over_an_invalid_update_then_takes_a_valid_one() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut volume = KubeletVolume::new(tmp.path(), &[("upstreamNameservers", r#"["1.1.1.1"]"#)]);
    let shutdown = CancellationToken::new();
    let mut watch = watch_dir(tmp.path().to_owned(), PERIOD, shutdown.clone());

    volume.update(&[(
        "upstreamNameservers",
        r#"["1.1.1.1","1.1.1.2","1.1.1.3","1.1.1.4"]"#,
    )]);
    // Wait until the poller has seen it; the count, not the clock, decides. Time is paused, so
    // the bound only turns a poller that never looks into a failure instead of a hang.
    for _ in 0..100 {
        if watch.invalid_updates.load(Ordering::Relaxed) > 0 {
            break;
        }
        tokio::time::sleep(PERIOD).await;
    }
    assert_eq!(watch.invalid_updates.load(Ordering::Relaxed), 1);
    assert!(!watch.updates.has_changed().expect("poller running"));
    assert_eq!(*watch.updates.borrow(), upstreams(&["1.1.1.1:53"]));

    volume.update(&[]);
    watch.updates.changed().await.expect("update published");
    assert_eq!(*watch.updates.borrow_and_update(), DnsConfig::default());
    assert_eq!(watch.invalid_updates.load(Ordering::Relaxed), 1);

    shutdown.cancel();
    watch.task.await.expect("poller ends on shutdown");
}

#[tokio::test(start_paused = true)]
async fn watch_dir_starts_from_defaults_when_the_config_is_invalid_at_start() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut volume = KubeletVolume::new(tmp.path(), &[("federations", "no-equals-sign")]);
    let shutdown = CancellationToken::new();
    let mut watch = watch_dir(tmp.path().to_owned(), PERIOD, shutdown.clone());
    assert_eq!(watch.initial, DnsConfig::default());
    assert_eq!(watch.invalid_updates.load(Ordering::Relaxed), 1);

    volume.update(&[("federations", "myfed=example.com")]);
    watch.updates.changed().await.expect("update published");
    assert_eq!(
        watch.updates.borrow_and_update().federations,
        vec![("myfed".to_owned(), "example.com".to_owned())]
    );

    shutdown.cancel();
    watch.task.await.expect("poller ends on shutdown");
}
