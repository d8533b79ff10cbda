//! The binary: flags, the README's flag list, start-up and SIGTERM.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use clap::CommandFactory;
use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;
use test_support::timeout_after;

use crate::support::{FakeUpstream, GUARD, addresses, ask};

const BIN: &str = env!("CARGO_BIN_EXE_dnsmasq-rs");

/// A child process killed on drop, so a failing test leaves nothing behind.
struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn an_unknown_flag_exits_64_with_an_error_naming_it() {
    for args in [
        &["-configDir=/tmp", "--", "-k", "--bogus-priv"][..],
        &["--cache-size=10", "--no-such-flag=1"][..],
        &["-noSuchNannyFlag=1"][..],
    ] {
        let output = Command::new(BIN)
            .args(args)
            .output()
            .expect("run dnsmasq-rs");
        assert_eq!(output.status.code(), Some(64), "{args:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        let flag = args
            .last()
            .expect("an argument")
            .split('=')
            .next()
            .expect("a name");
        let flag = flag.trim_start_matches('-');
        assert!(stderr.contains(flag), "{args:?}: {stderr}");
    }
}

#[test]
fn every_readme_flag_exists_and_every_flag_is_in_the_readme() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
        .expect("README.md");
    let flags_section = readme
        .split("\n## ")
        .find(|section| section.starts_with("Flags"))
        .expect("a Flags section");
    let mut documented = BTreeSet::new();
    for (i, _) in flags_section.match_indices("--") {
        let name: String = flags_section[i + 2..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
            .collect();
        if name.chars().next().is_some_and(|c| c.is_ascii_alphabetic()) {
            documented.insert(name);
        }
    }
    let command = dnsmasq_rs::Args::command();
    let known: BTreeSet<String> = command
        .get_arguments()
        .filter_map(|arg| arg.get_long().map(str::to_owned))
        .filter(|long| long != "help" && long != "version")
        .collect();
    let unknown: Vec<_> = documented.difference(&known).collect();
    let undocumented: Vec<_> = known.difference(&documented).collect();
    assert!(
        unknown.is_empty(),
        "README flags clap does not know: {unknown:?}"
    );
    assert!(
        undocumented.is_empty(),
        "flags missing from the README: {undocumented:?}"
    );
}

/// Starts the binary with `args` and returns it with the DNS address it logged.
fn spawn(args: &[String]) -> (Process, SocketAddr) {
    let mut child = Command::new(BIN)
        .args(args)
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start dnsmasq-rs");
    let stderr = child.stderr.take().expect("piped stderr");
    let process = Process(child);
    let mut lines = BufReader::new(stderr).lines();
    let addr = loop {
        let line = lines
            .next()
            .expect("dnsmasq-rs logs its address before anything fails")
            .expect("read stderr");
        if line.contains("listening for DNS over UDP and TCP")
            && let Some(addr) = line.split("addr=").nth(1)
        {
            break addr
                .split_whitespace()
                .next()
                .expect("an address")
                .parse()
                .expect("a socket address");
        }
    };
    // Keep draining stderr so the child never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines.by_ref() {});
    (process, addr)
}

#[tokio::test]
async fn the_binary_serves_the_nanny_invocation_and_stops_cleanly_on_sigterm() {
    let upstream = FakeUpstream::start([192, 0, 2, 1]).await;
    let config_dir = tempfile::tempdir().expect("tempdir");
    let args: Vec<String> = [
        "-v=2".to_owned(),
        "-logtostderr".to_owned(),
        format!("-configDir={}", config_dir.path().display()),
        "-restartDnsmasq=true".to_owned(),
        "--metrics-port=0".to_owned(),
        "--".to_owned(),
        "-k".to_owned(),
        "--cache-size=1000".to_owned(),
        "--no-negcache".to_owned(),
        "--dns-loop-detect".to_owned(),
        "--log-facility=-".to_owned(),
        "--server=/cluster.local/127.0.0.1#10053".to_owned(),
        format!("--server={}", upstream.server()),
        "--no-resolv".to_owned(),
        "--no-hosts".to_owned(),
        "--port=0".to_owned(),
        "--listen-address=127.0.0.1".to_owned(),
    ]
    .into();
    let (mut process, addr) = spawn(&args);
    let reply = timeout_after(GUARD, ask(addr, "www.example.com.", RecordType::A)).await;
    assert_eq!(reply.metadata.response_code, ResponseCode::NoError);
    assert_eq!(addresses(&reply), [std::net::Ipv4Addr::new(192, 0, 2, 1)]);

    let pid = process.0.id().to_string();
    let status = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("run kill");
    assert!(status.success());
    let deadline = std::time::Instant::now() + GUARD;
    let exit = loop {
        if let Some(exit) = process.0.try_wait().expect("wait") {
            break exit;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "dnsmasq-rs did not stop after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(exit.success(), "{exit:?}");
}
