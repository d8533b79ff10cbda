//! The pod's three binaries as processes on loopback, wired as a manifest wires them.
//!
//! [`Pod::start`] reads the kube-dns Deployment of a manifest and runs each container's command
//! line, changed only where a machine is not a pod:
//! - every port the manifest uses (53, 10053, 8081, 10054, 10055, 10056) becomes a free loopback
//!   port, in addresses (`127.0.0.1#10053`) and port flags alike, including the ports the
//!   binaries take by default;
//! - servers bind 127.0.0.1 instead of all addresses;
//! - the ConfigMap volume becomes a temporary directory shared by the containers that mount it;
//! - kubedns reads the API stand-in ([`test_support::FakeApiServer`]) at `--kube-master-url`,
//!   and both kubedns and dnsmasq-rs forward to a given upstream instead of the node's
//!   resolv.conf;
//! - polling is quicker: the config dir every 200 ms, healthz probes every second.
//!
//! Every process is killed when the [`Pod`] is dropped, also when a test fails; its output is
//! then printed.

use std::collections::VecDeque;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;
use k8s_openapi::api::core::v1::Container;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, Command};

use crate::client::{ask, http_get};
use crate::container::{Binary, Parsed, command_line, parse};
use crate::manifest::Manifest;
use crate::{HANG_GUARD, binaries};

const LOOPBACK: Ipv4Addr = Ipv4Addr::LOCALHOST;

/// The name both SRV probes of the stock manifest ask.
pub const PROBE_NAME: &str = "kubernetes.default.svc.cluster.local.";

/// How a pod is put together.
#[derive(Clone, Debug)]
pub struct Wiring {
    /// The manifest whose kube-dns Deployment is run, relative to the repository root.
    pub manifest: String,
    /// The API stand-in's URL.
    pub api_url: String,
    /// The upstream for names outside the cluster (the node's resolvers in a real pod).
    pub upstream: SocketAddr,
    /// kubedns flags to set on top of the manifest's (`--name=value`; replaces the manifest's).
    pub kubedns_flags: Vec<String>,
    /// dnsmasq-rs flags to set on top of the manifest's.
    pub dnsmasq_flags: Vec<String>,
}

impl Wiring {
    /// The manifest's wiring, nothing set on top.
    pub fn new(manifest: &str, api_url: String, upstream: SocketAddr) -> Self {
        Self {
            manifest: manifest.to_owned(),
            api_url,
            upstream,
            kubedns_flags: Vec::new(),
            dnsmasq_flags: Vec::new(),
        }
    }

    /// Sets a kubedns flag on top of the manifest's.
    pub fn kubedns(mut self, flag: &str) -> Self {
        self.kubedns_flags.push(flag.to_owned());
        self
    }

    /// Sets a dnsmasq-rs flag on top of the manifest's.
    pub fn dnsmasq(mut self, flag: &str) -> Self {
        self.dnsmasq_flags.push(flag.to_owned());
        self
    }
}

/// The loopback ports standing in for the pod's.
#[derive(Clone, Copy, Debug)]
pub struct Ports {
    /// dnsmasq-rs DNS (53).
    pub dns: u16,
    /// kubedns DNS (10053).
    pub kubedns: u16,
    /// kubedns `/readiness` (8081).
    pub readiness: u16,
    /// kubedns `/metrics` (10055).
    pub kubedns_metrics: u16,
    /// healthz (10054).
    pub sidecar: u16,
    /// dnsmasq-rs `/metrics` (10056).
    pub dnsmasq_metrics: u16,
}

impl Ports {
    /// Free ports, found by binding port 0 (UDP and TCP for the DNS ports). All are held until
    /// every one is chosen, so that no two are the same.
    async fn pick() -> Self {
        let dns = kdns_net::bind((LOOPBACK, 0).into())
            .await
            .expect("bind a DNS port");
        let kubedns = kdns_net::bind((LOOPBACK, 0).into())
            .await
            .expect("bind a DNS port");
        let mut http = Vec::new();
        for _ in 0..4 {
            http.push(
                tokio::net::TcpListener::bind((LOOPBACK, 0))
                    .await
                    .expect("bind an HTTP port"),
            );
        }
        let port = |addr: std::io::Result<SocketAddr>| addr.expect("bound socket").port();
        Self {
            dns: port(dns.0.local_addr()),
            kubedns: port(kubedns.0.local_addr()),
            readiness: port(http[0].local_addr()),
            kubedns_metrics: port(http[1].local_addr()),
            sidecar: port(http[2].local_addr()),
            dnsmasq_metrics: port(http[3].local_addr()),
        }
    }

    /// The loopback port for a port of the pod.
    ///
    /// # Panics
    /// For a port the pod does not use: the manifest has changed and the test must learn it.
    fn remap(&self, pod_port: u16) -> u16 {
        match pod_port {
            53 => self.dns,
            10053 => self.kubedns,
            8081 => self.readiness,
            10055 => self.kubedns_metrics,
            10054 => self.sidecar,
            10056 => self.dnsmasq_metrics,
            other => panic!("the manifest uses port {other}, which the test does not remap"),
        }
    }
}

/// A command line to (re)start.
#[derive(Clone, Debug)]
struct Cmd {
    binary: Binary,
    args: Vec<String>,
}

/// A child process whose output is kept; killed on drop.
#[derive(Debug)]
pub struct Process {
    name: &'static str,
    child: Child,
    log: Arc<Mutex<VecDeque<String>>>,
}

/// Lines of output kept per process.
const LOG_LINES: usize = 400;

impl Process {
    fn spawn(cmd: &Cmd) -> Self {
        let path = binaries::path(cmd.binary);
        let mut child = Command::new(&path)
            .args(&cmd.args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", path.display()));
        let log = Arc::new(Mutex::new(VecDeque::new()));
        if let Some(stdout) = child.stdout.take() {
            keep_lines(stdout, Arc::clone(&log));
        }
        if let Some(stderr) = child.stderr.take() {
            keep_lines(stderr, Arc::clone(&log));
        }
        Self {
            name: cmd.binary.name(),
            child,
            log,
        }
    }

    /// Its process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// SIGKILL, and wait until it is gone.
    pub async fn kill(&mut self) {
        let _ = self.child.start_kill();
        let _ = self.child.wait().await;
    }

    /// Its output so far (the last lines).
    pub fn log(&self) -> String {
        let log = self.log.lock().unwrap_or_else(PoisonError::into_inner);
        log.iter().cloned().collect::<Vec<_>>().join("\n")
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
        if std::thread::panicking() {
            eprintln!("---- {} output ----\n{}\n", self.name, self.log());
        }
    }
}

fn keep_lines(stream: impl AsyncRead + Unpin + Send + 'static, log: Arc<Mutex<VecDeque<String>>>) {
    tokio::spawn(async move {
        let mut lines = BufReader::new(stream).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            let mut log = log.lock().unwrap_or_else(PoisonError::into_inner);
            if log.len() == LOG_LINES {
                log.pop_front();
            }
            log.push_back(line);
        }
    });
}

/// kubedns, dnsmasq-rs and healthz running as one pod.
#[derive(Debug)]
pub struct Pod {
    /// The ports in use.
    pub ports: Ports,
    config_dir: tempfile::TempDir,
    kubedns_cmd: Cmd,
    kubedns: Process,
    dnsmasq: Process,
    healthz: Process,
}

impl Pod {
    /// Starts the pod `wiring` describes and waits until kubedns is ready, dnsmasq-rs answers
    /// the probe name and healthz reports both healthy.
    ///
    /// # Panics
    /// When it does not come up (after three tries with fresh ports, in case another process
    /// took one of them meanwhile).
    pub async fn start(wiring: &Wiring) -> Self {
        let mut failures = Vec::new();
        for _ in 0..3 {
            let ports = Ports::pick().await;
            let config_dir = tempfile::tempdir().expect("create the config dir");
            let cmds = commands(wiring, &ports, config_dir.path());
            let [kubedns, dnsmasq, healthz] = cmds.each_ref().map(Process::spawn);
            let mut pod = Self {
                ports,
                config_dir,
                kubedns_cmd: cmds[0].clone(),
                kubedns,
                dnsmasq,
                healthz,
            };
            match pod.wait_until_up().await {
                Ok(()) => return pod,
                Err(failure) => failures.push(failure),
            }
        }
        panic!("the pod did not start:\n{}", failures.join("\n\n"));
    }

    /// dnsmasq-rs's DNS address: the pod's port 53.
    pub fn dns(&self) -> SocketAddr {
        (LOOPBACK, self.ports.dns).into()
    }

    /// kubedns's DNS address.
    pub fn kubedns_dns(&self) -> SocketAddr {
        (LOOPBACK, self.ports.kubedns).into()
    }

    /// kubedns's `/readiness` server.
    pub fn readiness(&self) -> SocketAddr {
        (LOOPBACK, self.ports.readiness).into()
    }

    /// healthz's HTTP server.
    pub fn sidecar(&self) -> SocketAddr {
        (LOOPBACK, self.ports.sidecar).into()
    }

    /// dnsmasq-rs's `/metrics` server.
    pub fn dnsmasq_metrics(&self) -> SocketAddr {
        (LOOPBACK, self.ports.dnsmasq_metrics).into()
    }

    /// The mounted `kube-dns` ConfigMap, shared by kubedns and dnsmasq-rs.
    pub fn config_dir(&self) -> &Path {
        self.config_dir.path()
    }

    /// kubedns's command line (without the program name).
    pub fn kubedns_args(&self) -> &[String] {
        &self.kubedns_cmd.args
    }

    /// The three processes by binary name, with their process ids (`None` once one has exited).
    pub fn pids(&self) -> [(&'static str, Option<u32>); 3] {
        [&self.kubedns, &self.dnsmasq, &self.healthz].map(|p| (p.name, p.pid()))
    }

    /// The last lines of output of the three processes, for failure reports.
    pub fn logs(&self) -> String {
        [&self.kubedns, &self.dnsmasq, &self.healthz]
            .map(|p| format!("---- {} ----\n{}", p.name, p.log()))
            .join("\n")
    }

    /// SIGKILLs kubedns and waits until it is gone.
    pub async fn kill_kubedns(&mut self) {
        self.kubedns.kill().await;
    }

    /// Starts kubedns again with the same command line, on the same ports, and waits until its
    /// DNS port answers (ready or not).
    ///
    /// # Panics
    /// If it keeps failing to start.
    pub async fn restart_kubedns(&mut self) {
        let deadline = tokio::time::Instant::now() + HANG_GUARD;
        loop {
            self.kubedns = Process::spawn(&self.kubedns_cmd);
            loop {
                if self.kubedns.exited().is_some() {
                    break;
                }
                if ask(self.kubedns_dns(), PROBE_NAME, RecordType::SRV)
                    .await
                    .is_ok()
                {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            // The port may still be held for a moment by the killed process's sockets.
            assert!(
                tokio::time::Instant::now() < deadline,
                "kubedns does not start again:\n{}",
                self.kubedns.log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn wait_until_up(&mut self) -> Result<(), String> {
        let deadline = tokio::time::Instant::now() + HANG_GUARD;
        loop {
            for process in [&mut self.kubedns, &mut self.dnsmasq, &mut self.healthz] {
                if let Some(status) = process.exited() {
                    // Let the output readers catch up with the last lines.
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    return Err(format!(
                        "{} exited with {status}:\n{}",
                        process.name,
                        process.log()
                    ));
                }
            }
            if self.is_up().await {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(format!(
                    "not up after {HANG_GUARD:?}\n---- kubedns ----\n{}\n---- dnsmasq-rs ----\n{}\n---- healthz ----\n{}",
                    self.kubedns.log(),
                    self.dnsmasq.log(),
                    self.healthz.log()
                ));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn is_up(&self) -> bool {
        if http_get(self.readiness(), "/readiness").await.0 != 200 {
            return false;
        }
        let answered = ask(self.dns(), PROBE_NAME, RecordType::SRV)
            .await
            .is_ok_and(|reply| {
                reply.metadata.response_code == ResponseCode::NoError && !reply.answers.is_empty()
            });
        answered && http_get(self.sidecar(), "/healthz").await.0 == 200
    }
}

/// The kube-dns Deployment's containers, by name.
fn container<'a>(containers: &'a [Container], name: &str) -> &'a Container {
    containers
        .iter()
        .find(|c| c.name == name)
        .unwrap_or_else(|| panic!("the kube-dns Deployment has no container {name}"))
}

/// kubedns, dnsmasq-rs and healthz command lines (without program names), from the manifest.
fn commands(wiring: &Wiring, ports: &Ports, config_dir: &Path) -> [Cmd; 3] {
    let manifest = Manifest::load(&wiring.manifest);
    let (_, spec) = manifest
        .pod_specs()
        .into_iter()
        .find(|(id, _)| id == "Deployment/kube-dns")
        .unwrap_or_else(|| panic!("{}: no kube-dns Deployment", wiring.manifest));
    let from_manifest = |name: &str| {
        let container = container(&spec.containers, name);
        let binary = Binary::of_image(container.image.as_deref().unwrap_or_default())
            .unwrap_or_else(|| panic!("container {name} does not run one of our images"));
        let mounts: Vec<PathBuf> = container
            .volume_mounts
            .iter()
            .flatten()
            .map(|m| PathBuf::from(&m.mount_path))
            .collect();
        let argv: Vec<String> = command_line(binary, container)
            .into_iter()
            .map(|arg| remap_addresses(&with_dir(&arg, &mounts, config_dir), ports))
            .collect();
        let parsed = parse(binary, argv.clone())
            .unwrap_or_else(|e| panic!("container {name}: its arguments do not parse: {e}"));
        (binary, argv, parsed)
    };

    let (binary, mut kubedns, parsed) = from_manifest("kubedns");
    let Parsed::Kubedns(args) = parsed else {
        panic!("the kubedns container runs {}", binary.name())
    };
    let loopback = LOOPBACK.to_string();
    set(&mut kubedns, "--dns-port", ports.remap(args.dns_port));
    set(
        &mut kubedns,
        "--healthz-port",
        ports.remap(args.healthz_port),
    );
    if let Some(port) = args.metrics_port.0 {
        set(&mut kubedns, "--metrics-port", ports.remap(port));
    }
    set(&mut kubedns, "--dns-bind-address", &loopback);
    set(&mut kubedns, "--http-bind-address", &loopback);
    set(&mut kubedns, "--kube-master-url", &wiring.api_url);
    set(&mut kubedns, "--nameservers", wiring.upstream);
    set(&mut kubedns, "--config-period", "200ms");
    for flag in &wiring.kubedns_flags {
        set_flag(&mut kubedns, flag);
    }

    let (binary, mut dnsmasq, parsed) = from_manifest("dnsmasq");
    let Parsed::DnsmasqRs(config) = parsed else {
        panic!("the dnsmasq container runs {}", binary.name())
    };
    let listen_port = config.listen.first().map_or(53, SocketAddr::port);
    set(&mut dnsmasq, "--port", ports.remap(listen_port));
    set(&mut dnsmasq, "--listen-address", &loopback);
    if let Some(metrics) = config.metrics {
        set(&mut dnsmasq, "--metrics-port", ports.remap(metrics.port()));
    }
    set(&mut dnsmasq, "--metrics-bind-address", &loopback);
    set(
        &mut dnsmasq,
        "--kubednsServer",
        format!("{loopback}:{}", ports.remap(config.kubedns_server.port())),
    );
    set(&mut dnsmasq, "--syncInterval", "200ms");
    // The node's resolv.conf, in a pod; the upstream here.
    dnsmasq.push("--no-resolv".to_owned());
    dnsmasq.push(format!(
        "--server={}#{}",
        wiring.upstream.ip(),
        wiring.upstream.port()
    ));
    for flag in &wiring.dnsmasq_flags {
        set_flag(&mut dnsmasq, flag);
    }

    let (binary, sidecar, parsed) = from_manifest("sidecar");
    let Parsed::Healthz(config) = parsed else {
        panic!("the sidecar container runs {}", binary.name())
    };
    let mut sidecar: Vec<String> = sidecar
        .into_iter()
        .map(|arg| match arg.strip_prefix("--probe=") {
            Some(spec) => format!("--probe={}", every_second(spec)),
            None => arg,
        })
        .collect();
    set(
        &mut sidecar,
        "--prometheus-port",
        ports.remap(config.listen.port()),
    );
    set(&mut sidecar, "--prometheus-addr", &loopback);
    if let Some(poll) = &config.dnsmasq {
        set(
            &mut sidecar,
            "--dnsmasq-port",
            ports.remap(poll.server.port),
        );
        set(&mut sidecar, "--dnsmasq-addr", &loopback);
    }

    [
        Cmd {
            binary: Binary::Kubedns,
            args: kubedns.split_off(1),
        },
        Cmd {
            binary: Binary::DnsmasqRs,
            args: dnsmasq.split_off(1),
        },
        Cmd {
            binary: Binary::Healthz,
            args: sidecar.split_off(1),
        },
    ]
}

/// `arg` with a mount path of the ConfigMap volume replaced by `dir`.
fn with_dir(arg: &str, mounts: &[PathBuf], dir: &Path) -> String {
    mounts.iter().fold(arg.to_owned(), |arg, mount| {
        let mount = mount.to_string_lossy();
        match arg.split_once('=') {
            Some((flag, value)) if value == mount => format!("{flag}={}", dir.display()),
            _ => arg,
        }
    })
}

/// `arg` with every `127.0.0.1:PORT` and `127.0.0.1#PORT` pointing at the remapped port.
fn remap_addresses(arg: &str, ports: &Ports) -> String {
    let needle = "127.0.0.1";
    let mut out = String::new();
    let mut rest = arg;
    while let Some(at) = rest.find(needle) {
        let (before, after) = rest.split_at(at + needle.len());
        out.push_str(before);
        rest = after;
        let Some(separator) = rest.chars().next().filter(|c| *c == ':' || *c == '#') else {
            continue;
        };
        let digits: String = rest[1..].chars().take_while(char::is_ascii_digit).collect();
        let Ok(port) = digits.parse::<u16>() else {
            continue;
        };
        out.push(separator);
        out.push_str(&ports.remap(port).to_string());
        rest = &rest[1 + digits.len()..];
    }
    out.push_str(rest);
    out
}

/// A `--probe` spec with its interval set to one second.
fn every_second(spec: &str) -> String {
    let mut fields: Vec<&str> = spec.split(',').collect();
    while fields.len() < 4 {
        fields.push("");
    }
    fields[3] = "1";
    fields.join(",")
}

/// Sets `--name=value` (given whole): drops the flag wherever it is, in any spelling (one or two
/// dashes), and appends it.
fn set_flag(argv: &mut Vec<String>, flag: &str) {
    let (name, value) = flag.split_once('=').unwrap_or((flag, ""));
    set(argv, name, value);
}

fn set(argv: &mut Vec<String>, name: &str, value: impl std::fmt::Display) {
    let bare = name.trim_start_matches('-');
    argv.retain(|arg| {
        let body = arg.trim_start_matches('-');
        let flag_name = body.split_once('=').map_or(body, |(n, _)| n);
        !(arg.starts_with('-') && flag_name == bare)
    });
    argv.push(format!("{name}={value}"));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ports() -> Ports {
        Ports {
            dns: 1,
            kubedns: 2,
            readiness: 3,
            kubedns_metrics: 4,
            sidecar: 5,
            dnsmasq_metrics: 6,
        }
    }

    #[test]
    fn loopback_addresses_in_arguments_point_at_the_remapped_ports() {
        let remapped = |arg| remap_addresses(arg, &ports());
        assert_eq!(
            remapped("--server=/cluster.local/127.0.0.1#10053"),
            "--server=/cluster.local/127.0.0.1#2"
        );
        assert_eq!(remapped("--notify=127.0.0.1:53"), "--notify=127.0.0.1:1");
        assert_eq!(
            remapped("--probe=dnsmasq,127.0.0.1:53,kubernetes.default.svc.cluster.local,5,SRV"),
            "--probe=dnsmasq,127.0.0.1:1,kubernetes.default.svc.cluster.local,5,SRV"
        );
        assert_eq!(
            remapped("--domain=cluster.local."),
            "--domain=cluster.local."
        );
    }

    #[test]
    fn setting_a_flag_replaces_every_spelling_of_it() {
        let mut argv = vec![
            "dnsmasq-rs".to_owned(),
            "-syncInterval=10s".to_owned(),
            "--".to_owned(),
            "--port=53".to_owned(),
            "--server=/x/1.2.3.4".to_owned(),
        ];
        set(&mut argv, "--syncInterval", "200ms");
        set(&mut argv, "--port", 7);
        assert_eq!(
            argv,
            [
                "dnsmasq-rs",
                "--",
                "--server=/x/1.2.3.4",
                "--syncInterval=200ms",
                "--port=7"
            ]
        );
    }

    #[test]
    fn probe_intervals_become_one_second() {
        assert_eq!(
            every_second("k,127.0.0.1:1,name,5,SRV"),
            "k,127.0.0.1:1,name,1,SRV"
        );
        assert_eq!(every_second("k,127.0.0.1:1,name"), "k,127.0.0.1:1,name,1");
    }
}
