//! Which binary a container runs, and its command line through that binary's own parser.

use std::net::IpAddr;

use clap::CommandFactory;
use k8s_openapi::api::core::v1::Container;

/// Where the images are published; the manifests name `<IMAGE_REPOSITORY>/<binary>:<version>`.
pub const IMAGE_REPOSITORY: &str = "ghcr.io/kube-dns-rs";

/// One of the pod's binaries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Binary {
    /// `kubedns`, the kubedns container.
    Kubedns,
    /// `dnsmasq-rs`, the dnsmasq container.
    DnsmasqRs,
    /// `healthz`, the sidecar container.
    Healthz,
}

impl Binary {
    /// All three.
    pub const ALL: [Self; 3] = [Self::Kubedns, Self::DnsmasqRs, Self::Healthz];

    /// The executable's name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Kubedns => "kubedns",
            Self::DnsmasqRs => "dnsmasq-rs",
            Self::Healthz => "healthz",
        }
    }

    /// `images/<dir>/Dockerfile` builds its image.
    pub fn image_dir(self) -> &'static str {
        match self {
            Self::Kubedns => "kubedns",
            Self::DnsmasqRs => "dnsmasq",
            Self::Healthz => "healthz",
        }
    }

    /// The image, as the manifests name it: this workspace's version.
    pub fn image(self) -> String {
        format!(
            "{IMAGE_REPOSITORY}/{}:{}",
            self.name(),
            env!("CARGO_PKG_VERSION")
        )
    }

    /// Where the image installs the executable (its entrypoint).
    pub fn installed_path(self) -> String {
        format!("/usr/local/bin/{}", self.name())
    }

    /// The entrypoints of the images it replaces, which manifests may name in `command:`.
    pub fn legacy_paths(self) -> &'static [&'static str] {
        match self {
            Self::Kubedns => &["/kube-dns"],
            Self::DnsmasqRs => &["/dnsmasq-nanny", "/usr/sbin/dnsmasq"],
            Self::Healthz => &["/sidecar"],
        }
    }

    /// The binary an image runs, if it is one of this project's.
    pub fn of_image(image: &str) -> Option<Self> {
        let repository = image.rsplit_once(':').map_or(image, |(repo, _)| repo);
        let name = repository
            .strip_prefix(IMAGE_REPOSITORY)?
            .strip_prefix('/')?;
        Self::ALL.into_iter().find(|binary| binary.name() == name)
    }

    fn clap_command(self) -> clap::Command {
        match self {
            Self::Kubedns => kubedns::Args::command(),
            Self::DnsmasqRs => dnsmasq_rs::Args::command(),
            Self::Healthz => healthz::Args::command(),
        }
    }
}

/// A container's command line as its binary receives it: the program name, `command:` beyond
/// the entrypoint, flags for the environment variables the binary reads, then `args:`.
///
/// Environment variables become the flags they stand for, because the parsers would otherwise
/// read this test process's environment.
///
/// # Panics
/// If `command:` names a path the image does not have.
pub fn command_line(binary: Binary, container: &Container) -> Vec<String> {
    let mut argv = vec![binary.name().to_owned()];
    if let Some(command) = &container.command {
        let entrypoint = command.first().map(String::as_str).unwrap_or_default();
        assert!(
            entrypoint == binary.installed_path() || binary.legacy_paths().contains(&entrypoint),
            "container {}: command {entrypoint:?} is not in the {} image",
            container.name,
            binary.name()
        );
        argv.extend(command.iter().skip(1).cloned());
    }
    let args = container.args.clone().unwrap_or_default();
    let clap = binary.clap_command();
    for var in container.env.iter().flatten() {
        let Some(value) = &var.value else { continue };
        let flag = clap
            .get_arguments()
            .find(|arg| arg.get_env().is_some_and(|env| env == var.name.as_str()))
            .and_then(|arg| arg.get_long());
        if let Some(long) = flag {
            let set_by_args = args
                .iter()
                .any(|a| a == &format!("--{long}") || a.starts_with(&format!("--{long}=")));
            if !set_by_args {
                argv.push(format!("--{long}={value}"));
            }
        }
    }
    argv.extend(args);
    argv
}

/// A command line accepted and validated by its binary.
#[derive(Clone, Debug)]
pub enum Parsed {
    /// kubedns's flags.
    Kubedns(Box<kubedns::Args>),
    /// dnsmasq-rs's validated configuration.
    DnsmasqRs(Box<dnsmasq_rs::Config>),
    /// healthz's validated configuration.
    Healthz(Box<healthz::Config>),
}

/// Runs `argv` (program name first) through `binary`'s parser and validation, exactly as its
/// `main` does before binding anything.
///
/// # Errors
/// The binary's own message when it would refuse to start.
pub fn parse(binary: Binary, argv: Vec<String>) -> Result<Parsed, String> {
    match binary {
        Binary::Kubedns => {
            let (argv, _) = kdns_daemon::normalize_args(argv, &[]);
            <kubedns::Args as clap::Parser>::try_parse_from(argv)
                .map(|args| Parsed::Kubedns(Box::new(args)))
                .map_err(|e| e.to_string())
        }
        Binary::DnsmasqRs => {
            let (args, _) = dnsmasq_rs::parse_args(argv).map_err(|e| e.to_string())?;
            args.into_config()
                .map(|config| Parsed::DnsmasqRs(Box::new(config)))
                .map_err(|e| e.to_string())
        }
        Binary::Healthz => {
            let (argv, _) = kdns_daemon::normalize_args(argv, &[]);
            let args =
                <healthz::Args as clap::Parser>::try_parse_from(argv).map_err(|e| e.to_string())?;
            healthz::Config::from_args(args)
                .map(|config| Parsed::Healthz(Box::new(config)))
                .map_err(|e| e.to_string())
        }
    }
}

/// What answers on a port.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Server {
    /// DNS (kubedns or dnsmasq-rs).
    Dns,
    /// kubedns's `/readiness` and `/cache`.
    KubednsHealthz,
    /// kubedns's `/metrics`.
    KubednsMetrics,
    /// dnsmasq-rs's `/metrics`.
    DnsmasqMetrics,
    /// healthz's HTTP server.
    Healthz,
}

/// A socket a binary listens on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Listener {
    /// The address (unspecified for all).
    pub ip: IpAddr,
    /// The port.
    pub port: u16,
    /// `UDP` or `TCP`, as Kubernetes spells them.
    pub protocol: &'static str,
    /// What answers there.
    pub server: Server,
}

impl Parsed {
    /// Every socket the binary would listen on with these flags.
    pub fn listeners(&self) -> Vec<Listener> {
        let listener = |ip, port, protocol, server| Listener {
            ip,
            port,
            protocol,
            server,
        };
        match self {
            Self::Kubedns(args) => {
                let mut all = vec![
                    listener(args.dns_bind_address, args.dns_port, "UDP", Server::Dns),
                    listener(args.dns_bind_address, args.dns_port, "TCP", Server::Dns),
                    listener(
                        args.http_bind_address,
                        args.healthz_port,
                        "TCP",
                        Server::KubednsHealthz,
                    ),
                ];
                if let Some(port) = args.metrics_port.0 {
                    all.push(listener(
                        args.http_bind_address,
                        port,
                        "TCP",
                        Server::KubednsMetrics,
                    ));
                }
                all
            }
            Self::DnsmasqRs(config) => {
                let mut all = Vec::new();
                for addr in &config.listen {
                    all.push(listener(addr.ip(), addr.port(), "UDP", Server::Dns));
                    all.push(listener(addr.ip(), addr.port(), "TCP", Server::Dns));
                }
                if let Some(addr) = config.metrics {
                    all.push(listener(
                        addr.ip(),
                        addr.port(),
                        "TCP",
                        Server::DnsmasqMetrics,
                    ));
                }
                all
            }
            Self::Healthz(config) => vec![listener(
                config.listen.ip(),
                config.listen.port(),
                "TCP",
                Server::Healthz,
            )],
        }
    }
}
