//! The command line: three groups, each through its binary's own parser; the defaults of absent
//! groups; `--help`; bad flags exiting 64 before anything is bound; the manifest's arguments;
//! and the binary serving until SIGTERM.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command as Process, Output, Stdio};
use std::time::{Duration, Instant};

use hickory_proto::rr::RecordType;
use kube_dns_single::flags::{self, Groups};
use kube_dns_single::{Command, Plan};
use serde_yaml_ng::Value;

const BIN: &str = env!("CARGO_BIN_EXE_kube-dns-single");

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn parse(line: &[&str]) -> Result<Command, kube_dns_single::UsageError> {
    let argv = std::iter::once("kube-dns-single").chain(line.iter().copied());
    kube_dns_single::parse(argv.map(String::from))
}

fn plan(line: &[&str]) -> Plan {
    match parse(line).expect("parses") {
        Command::Run(plan) => *plan,
        Command::Print(text) => panic!("printed instead of running: {text}"),
    }
}

fn addr(s: &str) -> SocketAddr {
    s.parse().expect("socket address")
}

fn run(args: &[&str]) -> Output {
    Process::new(BIN)
        .args(args)
        .env_remove("RUST_LOG")
        .output()
        .expect("run kube-dns-single")
}

#[test]
fn each_group_goes_to_its_own_parser_in_its_own_spelling() {
    let plan = plan(&[
        "--domain=k8s.example.",
        "--dns_port=5353",
        "--logtostderr",
        "--dnsmasq",
        "-v=3",
        "-configDir=/cfg",
        "--",
        "-k",
        "--cache-size=500",
        "--server=/k8s.example/127.0.0.1#5353",
        "--healthz",
        "--probe=dnsmasq,127.0.0.1:53,kubernetes.default.svc.k8s.example,5,SRV",
        "--port=9000",
    ]);
    assert_eq!(plan.kubedns.domain.to_ascii(), "k8s.example.");
    assert_eq!(plan.kubedns.dns_port, 5353);
    let dnsmasq = plan.dnsmasq.expect("the dnsmasq group was given");
    assert_eq!(dnsmasq.cache.capacity, 500);
    assert_eq!(dnsmasq.config_dir, Some(PathBuf::from("/cfg")));
    let healthz = plan.healthz.expect("the healthz group was given");
    assert_eq!(healthz.listen.port(), 9000);
    assert_eq!(healthz.probes.len(), 1);
    assert_eq!(plan.verbosity, 3, "the highest --v of the groups");
    assert_eq!(plan.ignored, ["--logtostderr"]);
}

#[test]
fn absent_groups_get_the_manifests_arguments_derived_from_kubedns() {
    let plan = plan(&[
        "--domain=k8s.example.",
        "--dns-port=5353",
        "--config-dir=/cfg",
    ]);
    assert!(plan.dnsmasq.is_none() && plan.healthz.is_none());
    let kubedns = addr("0.0.0.0:5353");
    assert_eq!(
        flags::dnsmasq_defaults(&plan.kubedns, kubedns),
        [
            "-configDir=/cfg",
            "-kubednsServer=127.0.0.1:5353",
            "--",
            "-k",
            "--cache-size=1000",
            "--no-negcache",
            "--dns-loop-detect",
            "--server=/k8s.example/127.0.0.1#5353",
            "--server=/in-addr.arpa/127.0.0.1#5353",
            "--server=/ip6.arpa/127.0.0.1#5353",
        ]
    );
    let dnsmasq = flags::dnsmasq_default_config(&plan.kubedns, kubedns).expect("defaults parse");
    assert_eq!(dnsmasq.cache.capacity, 1000);
    assert!(!dnsmasq.cache.negative);
    assert_eq!(dnsmasq.kubedns_server, addr("127.0.0.1:5353"));
    assert_eq!(dnsmasq.listen.first().map(SocketAddr::port), Some(53));

    let healthz =
        flags::healthz_default_config(&plan.kubedns.domain, kubedns, addr("[::]:53")).unwrap();
    let probes: Vec<String> = healthz
        .probes
        .iter()
        .map(|p| {
            format!(
                "{} {} {} {:?} {}",
                p.label, p.server, p.name, p.interval, p.qtype
            )
        })
        .collect();
    assert_eq!(
        probes,
        [
            "kubedns 127.0.0.1:5353 kubernetes.default.svc.k8s.example. 5s SRV",
            "dnsmasq 127.0.0.1:53 kubernetes.default.svc.k8s.example. 5s SRV",
        ]
    );
    assert_eq!(healthz.listen.port(), 10054);
    let poll = healthz.dnsmasq.expect("dnsmasq statistics are polled");
    assert_eq!(poll.server.to_string(), "127.0.0.1:53");
    assert_eq!(healthz.probes[0].qtype, RecordType::SRV);

    // kubedns on an address of its own is named by that address.
    let own = addr("10.0.0.5:10053");
    assert!(
        flags::dnsmasq_defaults(&plan.kubedns, own)
            .contains(&"--server=/k8s.example/10.0.0.5#10053".to_owned())
    );
}

#[test]
fn the_separators_are_standalone_words_and_given_once() {
    let groups = Groups::split(["--dnsmasq=x".to_owned()]).unwrap();
    assert_eq!(groups.kubedns, ["--dnsmasq=x"]);
    assert!(parse(&["--healthz", "--healthz"]).is_err());
}

#[test]
fn help_explains_the_groups_and_their_defaults_and_lists_kubednss_flags() {
    let out = run(&["--help"]);
    assert_eq!(out.status.code(), Some(0));
    let help = String::from_utf8_lossy(&out.stdout);
    for needle in [
        "[--dnsmasq DNSMASQ-RS ARGS...] [--healthz HEALTHZ ARGS...]",
        "in the same process",
        "--server=/<--domain>/KUBEDNS",
        "--probe=kubedns,KUBEDNS,kubernetes.default.svc.<--domain>,5,SRV",
        "--cluster-state",
        "exits 0",
        "exit 64",
    ] {
        assert!(help.contains(needle), "--help lacks {needle:?}:\n{help}");
    }
    for (group, flag) in [("--dnsmasq", "--cache-size"), ("--healthz", "--probe")] {
        let out = run(&[group, "--help"]);
        assert_eq!(out.status.code(), Some(0), "{group} --help");
        let help = String::from_utf8_lossy(&out.stdout);
        assert!(help.contains(flag), "{group} --help lacks {flag}:\n{help}");
    }
    let out = run(&["--version"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("kube-dns-single "));
}

#[test]
fn a_bad_flag_in_any_group_exits_64_naming_it_before_anything_is_bound() {
    // A port this test holds: binding it would fail with exit 1, so 64 shows nothing was bound.
    let held = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = held.local_addr().expect("bound").port().to_string();
    let healthz_port = format!("--healthz-port={port}");
    let cases: &[(&[&str], &str)] = &[
        (&["--no-such-flag"], "--no-such-flag"),
        (&["--domain=Not_A_Domain"], "Not_A_Domain"),
        (&["--dnsmasq", "--cache-sise=5"], "--cache-sise"),
        (&["--dnsmasq", "--server=/x/not-an-ip"], "not-an-ip"),
        (&["--healthz", "--probe=kubedns"], "--probe"),
        (&["--healthz", "--port=1", "--prometheus-port=2"], "--port"),
        (
            &["--dnsmasq", "-k", "--dnsmasq"],
            "--dnsmasq is given twice",
        ),
    ];
    for (args, named) in cases {
        let line: Vec<&str> = ["--dns-bind-address=127.0.0.1", healthz_port.as_str()]
            .into_iter()
            .chain(args.iter().copied())
            .collect();
        let out = run(&line);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(64), "{args:?}: {stderr}");
        assert!(
            stderr.contains(named),
            "{args:?}: stderr lacks {named:?}: {stderr}"
        );
    }
    drop(held);
}

/// The Deployment's container arguments, placeholders filled in.
fn manifest_container() -> (Vec<Value>, Value) {
    let text = std::fs::read_to_string(repo_root().join("manifests/kube-dns-single.yaml"))
        .expect("read the manifest")
        .replace("__DNS__DOMAIN__", "cluster.local")
        .replace("__DNS__SERVER__", "10.96.0.10")
        .replace("__DNS__MEMORY__LIMIT__", "170Mi");
    let docs: Vec<Value> = serde_yaml_ng::Deserializer::from_str(&text)
        .map(|doc| serde::Deserialize::deserialize(doc).expect("a YAML document"))
        .collect();
    let deployment = docs
        .iter()
        .find(|d| d["kind"] == "Deployment" && d["metadata"]["name"] == "kube-dns")
        .expect("the kube-dns Deployment");
    let containers = deployment["spec"]["template"]["spec"]["containers"]
        .as_sequence()
        .expect("containers");
    assert_eq!(containers.len(), 1, "one container");
    (docs.clone(), containers[0].clone())
}

#[test]
fn the_manifests_container_arguments_are_the_pods_through_the_real_parsers() {
    let (_, container) = manifest_container();
    assert_eq!(
        container["image"],
        format!(
            "ghcr.io/kube-dns-rs/kube-dns-single:{}",
            env!("CARGO_PKG_VERSION")
        )
    );
    let args: Vec<&str> = container["args"]
        .as_sequence()
        .expect("args")
        .iter()
        .map(|a| a.as_str().expect("string argument"))
        .collect();
    let plan = plan(&args);
    assert_eq!(plan.kubedns.dns_port, 10053);
    assert_eq!(plan.kubedns.healthz_port, 8081);
    let dnsmasq = plan.dnsmasq.expect("the dnsmasq group is given");
    assert_eq!(dnsmasq.listen.first().map(SocketAddr::port), Some(53));
    assert_eq!(dnsmasq.config_dir, plan.kubedns.config_dir);
    let servers: Vec<String> = dnsmasq.servers.iter().map(|s| format!("{s:?}")).collect();
    assert!(
        servers.iter().all(|s| s.contains("127.0.0.1:10053")),
        "every --server is kubedns's DNS address, answered in-process: {servers:?}"
    );
    let healthz = plan.healthz.expect("the healthz group is given");
    assert_eq!(healthz.listen.port(), 10054);
    let labels: Vec<&str> = healthz.probes.iter().map(|p| p.label.as_str()).collect();
    assert_eq!(labels, ["kubedns", "dnsmasq"]);

    // The probes ask ports this process serves, on paths they serve.
    let liveness = &container["livenessProbe"]["httpGet"];
    assert_eq!(
        (liveness["path"].as_str(), liveness["port"].as_u64()),
        (Some("/healthz"), Some(10054))
    );
    let readiness = &container["readinessProbe"]["httpGet"];
    assert_eq!(
        (readiness["path"].as_str(), readiness["port"].as_u64()),
        (
            Some("/readiness"),
            Some(u64::from(plan.kubedns.healthz_port))
        )
    );
    let ports: Vec<(u64, &str)> = container["ports"]
        .as_sequence()
        .expect("ports")
        .iter()
        .map(|p| {
            (
                p["containerPort"].as_u64().unwrap(),
                p["protocol"].as_str().unwrap(),
            )
        })
        .collect();
    let metrics = plan.kubedns.metrics_port.0;
    assert_eq!(
        ports,
        [
            (53, "UDP"),
            (53, "TCP"),
            (u64::from(healthz.listen.port()), "TCP"),
            (u64::from(metrics.expect("PROMETHEUS_PORT")), "TCP"),
            (
                u64::from(dnsmasq.metrics.expect("dnsmasq metrics").port()),
                "TCP"
            ),
        ]
    );
}

#[test]
fn everything_but_the_deployment_is_kube_dns_yamls() {
    let (ours, _) = manifest_container();
    let text = std::fs::read_to_string(repo_root().join("manifests/kube-dns.yaml"))
        .expect("read kube-dns.yaml")
        .replace("__DNS__DOMAIN__", "cluster.local")
        .replace("__DNS__SERVER__", "10.96.0.10")
        .replace("__DNS__MEMORY__LIMIT__", "170Mi");
    let theirs: Vec<Value> = serde_yaml_ng::Deserializer::from_str(&text)
        .map(|doc| serde::Deserialize::deserialize(doc).expect("a YAML document"))
        .collect();
    let not_kube_dns_deployment =
        |d: &&Value| !(d["kind"] == "Deployment" && d["metadata"]["name"] == "kube-dns");
    let ours: Vec<&Value> = ours.iter().filter(not_kube_dns_deployment).collect();
    let theirs: Vec<&Value> = theirs.iter().filter(not_kube_dns_deployment).collect();
    assert_eq!(ours, theirs);
}

/// Kills the process when the test ends, passing or failing.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    let udp = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    let port = udp.local_addr().expect("bound").port();
    // Free over TCP too, or try again.
    match std::net::TcpListener::bind(("127.0.0.1", port)) {
        Ok(_) => port,
        Err(_) => free_port(),
    }
}

#[test]
fn the_binary_answers_cluster_names_on_the_cache_port_and_stops_on_sigterm() {
    let (kubedns, dnsmasq) = (free_port(), free_port());
    let state = repo_root().join("tests/fixtures/state/demo.yaml");
    let config_dir = tempfile::tempdir().expect("temp dir");
    let child = Process::new(BIN)
        .args([
            format!("--cluster-state={}", state.display()),
            "--dns-bind-address=127.0.0.1".into(),
            format!("--dns-port={kubedns}"),
            "--http-bind-address=127.0.0.1".into(),
            "--healthz-port=0".into(),
            "--metrics-port=off".into(),
            "--nameservers=127.0.0.1:9".into(),
            "--dnsmasq".into(),
            format!("-configDir={}", config_dir.path().display()),
            "--".into(),
            "--listen-address=127.0.0.1".into(),
            format!("--port={dnsmasq}"),
            "--metrics-port=0".into(),
            "--no-resolv".into(),
            format!("--server=/cluster.local/127.0.0.1#{kubedns}"),
            "--healthz".into(),
            "--port=0".into(),
            "--prometheus-addr=127.0.0.1".into(),
            "--dnsmasq-poll-interval-ms=0".into(),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start kube-dns-single");
    let mut running = Running(child);

    let server: SocketAddr = ([127, 0, 0, 1], dnsmasq).into();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let began = Instant::now();
    let reply = runtime.block_on(async {
        let query = kdns_net::query_message("kubernetes.default.svc.cluster.local", RecordType::A)
            .expect("name");
        // Until it is up and synced (a hang guard, not a timing assertion).
        loop {
            if let Ok(reply) = kdns_net::exchange(server, &query, Duration::from_millis(500)).await
                && !reply.answers.is_empty()
            {
                return reply;
            }
            assert!(
                began.elapsed() < Duration::from_secs(60),
                "no answer in 60 s"
            );
            assert!(
                running.0.try_wait().expect("wait").is_none(),
                "kube-dns-single exited"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    println!("answered after {:?}", began.elapsed());
    assert_eq!(reply.answers[0].data.to_string(), "10.96.0.1");

    let pid = running.0.id().to_string();
    let killed = Process::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("run kill");
    assert!(killed.success());
    let stopped = Instant::now();
    let status = loop {
        if let Some(status) = running.0.try_wait().expect("wait") {
            break status;
        }
        assert!(
            stopped.elapsed() < Duration::from_secs(30),
            "no exit 30 s after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    println!("exited {:?} after SIGTERM", stopped.elapsed());
    assert_eq!(status.code(), Some(0));
}
