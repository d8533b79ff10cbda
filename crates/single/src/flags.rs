//! The command line: kubedns's flags, then `--dnsmasq` and dnsmasq-rs's arguments, then
//! `--healthz` and healthz's, each group parsed by its own binary's parser; and the arguments
//! an absent group gets, derived from the kubedns group as the kube-dns manifest wires the pod.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use clap::error::ErrorKind;
use clap::{CommandFactory as _, Parser as _};
use kdns_daemon::LogFormat;

/// The word that starts dnsmasq-rs's arguments.
pub const DNSMASQ: &str = "--dnsmasq";
/// The word that starts healthz's arguments.
pub const HEALTHZ: &str = "--healthz";

/// A command line that cannot be run; the message names the group and the flag.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(String);

impl UsageError {
    fn in_group(group: &str, message: impl std::fmt::Display) -> Self {
        Self(format!("in the {group} arguments: {message}"))
    }
}

/// The command line split at the separators, program name left out.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Groups {
    /// Everything before the first separator.
    pub kubedns: Vec<String>,
    /// After `--dnsmasq`, when given.
    pub dnsmasq: Option<Vec<String>>,
    /// After `--healthz`, when given.
    pub healthz: Option<Vec<String>>,
}

impl Groups {
    /// Splits `args` (without the program name) at `--dnsmasq` and `--healthz`, which may come
    /// in either order, each at most once.
    pub fn split<I: IntoIterator<Item = String>>(args: I) -> Result<Self, UsageError> {
        let mut groups = Self::default();
        // Which group takes the next argument: 0 kubedns, 1 dnsmasq-rs, 2 healthz.
        let mut current = 0;
        for arg in args {
            let (next, slot) = match arg.as_str() {
                DNSMASQ => (1, &mut groups.dnsmasq),
                HEALTHZ => (2, &mut groups.healthz),
                _ => {
                    match current {
                        0 => groups.kubedns.push(arg),
                        1 => groups.dnsmasq.get_or_insert_default().push(arg),
                        _ => groups.healthz.get_or_insert_default().push(arg),
                    }
                    continue;
                }
            };
            if slot.replace(Vec::new()).is_some() {
                return Err(UsageError(format!("{arg} is given twice")));
            }
            current = next;
        }
        Ok(groups)
    }
}

/// What the command line asks for.
#[derive(Debug)]
pub enum Command {
    /// Print this (`--help`, `--version`) and exit 0.
    Print(String),
    /// Run.
    Run(Box<Plan>),
}

/// The three groups, parsed and validated.
#[derive(Clone, Debug)]
pub struct Plan {
    /// kubedns's flags.
    pub kubedns: kubedns::Args,
    /// dnsmasq-rs's configuration; `None` for [`dnsmasq_defaults`], built once kubedns's DNS
    /// port is bound.
    pub dnsmasq: Option<dnsmasq_rs::Config>,
    /// healthz's configuration; `None` for [`healthz_defaults`], built once both DNS ports are
    /// bound.
    pub healthz: Option<healthz::Config>,
    /// The log format: kubedns's `--log-format`.
    pub log_format: LogFormat,
    /// The highest klog verbosity of the three groups.
    pub verbosity: u8,
    /// Legacy klog flags accepted and ignored, as given.
    pub ignored: Vec<String>,
}

/// Parses a command line, program name first.
pub fn parse<I: IntoIterator<Item = String>>(argv: I) -> Result<Command, UsageError> {
    let groups = Groups::split(argv.into_iter().skip(1))?;

    let (argv, legacy) =
        kdns_daemon::normalize_args(std::iter::once("kubedns".into()).chain(groups.kubedns), &[]);
    let kubedns = match kubedns::Args::try_parse_from(argv) {
        Ok(args) => args,
        Err(e) if e.kind() == ErrorKind::DisplayHelp => return Ok(Command::Print(help())),
        Err(e) if e.kind() == ErrorKind::DisplayVersion => {
            return Ok(Command::Print(format!(
                "kube-dns-single {}\n",
                env!("CARGO_PKG_VERSION")
            )));
        }
        Err(e) => return Err(UsageError::in_group("kubedns", e.render())),
    };
    let mut ignored = legacy.ignored;
    let mut verbosity = kubedns.verbosity;

    let nominal_dns = stand_in(kubedns.dns_addr());
    let dnsmasq_argv = match &groups.dnsmasq {
        Some(args) => args.clone(),
        None => dnsmasq_defaults(&kubedns, nominal_dns),
    };
    let dnsmasq = match parse_dnsmasq(dnsmasq_argv)? {
        Parsed::Print(text) => return Ok(Command::Print(text)),
        Parsed::Config(config, v, legacy) => {
            verbosity = verbosity.max(v);
            ignored.extend(legacy);
            config
        }
    };

    let dnsmasq_dns = stand_in(dnsmasq.listen.first().copied().unwrap_or(nominal_dns));
    let healthz_argv = match &groups.healthz {
        Some(args) => args.clone(),
        None => healthz_defaults(&kubedns.domain, nominal_dns, dnsmasq_dns),
    };
    let healthz = match parse_healthz(healthz_argv)? {
        Parsed::Print(text) => return Ok(Command::Print(text)),
        Parsed::Config(config, v, legacy) => {
            verbosity = verbosity.max(v);
            ignored.extend(legacy);
            config
        }
    };

    Ok(Command::Run(Box::new(Plan {
        log_format: kubedns.log_format,
        dnsmasq: groups.dnsmasq.is_some().then_some(dnsmasq),
        healthz: groups.healthz.is_some().then_some(healthz),
        kubedns,
        verbosity,
        ignored,
    })))
}

enum Parsed<C> {
    Print(String),
    /// The configuration, the group's verbosity, and the legacy flags it ignored.
    Config(C, u8, Vec<String>),
}

/// dnsmasq-rs's arguments (nanny form or dnsmasq form) into its configuration.
fn parse_dnsmasq(args: Vec<String>) -> Result<Parsed<dnsmasq_rs::Config>, UsageError> {
    let argv = std::iter::once("dnsmasq-rs".to_owned()).chain(args);
    let (args, legacy) = match dnsmasq_rs::parse_args(argv) {
        Ok(parsed) => parsed,
        Err(dnsmasq_rs::config::Error::Usage(e)) if !e.use_stderr() => {
            return Ok(Parsed::Print(e.render().to_string()));
        }
        Err(dnsmasq_rs::config::Error::Usage(e)) => {
            return Err(UsageError::in_group("--dnsmasq", e.render()));
        }
        Err(e) => return Err(UsageError::in_group("--dnsmasq", format!("{e:#}"))),
    };
    let mut ignored = legacy.ignored;
    if !args.dnsmasq_exec.is_empty() {
        // There is no separate dnsmasq process to run.
        ignored.push(format!("-dnsmasqExec={}", args.dnsmasq_exec));
    }
    let verbosity = args.verbosity;
    let config = args
        .into_config()
        .map_err(|e| UsageError::in_group("--dnsmasq", e))?;
    Ok(Parsed::Config(config, verbosity, ignored))
}

/// healthz's arguments into its configuration.
fn parse_healthz(args: Vec<String>) -> Result<Parsed<healthz::Config>, UsageError> {
    let argv = std::iter::once("healthz".to_owned()).chain(args);
    let (argv, legacy) = kdns_daemon::normalize_args(argv, &[]);
    let args = match healthz::Args::try_parse_from(argv) {
        Ok(args) => args,
        Err(e) if !e.use_stderr() => return Ok(Parsed::Print(e.render().to_string())),
        Err(e) => return Err(UsageError::in_group("--healthz", e.render())),
    };
    let verbosity = args.verbosity;
    let config =
        healthz::Config::from_args(args).map_err(|e| UsageError::in_group("--healthz", e))?;
    Ok(Parsed::Config(config, verbosity, legacy.ignored))
}

/// Before binding, a port 0 stands for a port not known yet; defaults are checked with a
/// stand-in (any port parses alike).
fn stand_in(addr: SocketAddr) -> SocketAddr {
    if addr.port() == 0 {
        SocketAddr::new(addr.ip(), 10053)
    } else {
        addr
    }
}

/// Where a local client reaches a server listening on `bound`: loopback for a wildcard address.
pub fn local_target(bound: SocketAddr) -> SocketAddr {
    if bound.ip().is_unspecified() {
        SocketAddr::new(Ipv4Addr::LOCALHOST.into(), bound.port())
    } else {
        bound
    }
}

/// The addresses a `--server` may use to name kubedns listening on `bound`, all answered
/// in-process: the address itself and, for a wildcard, loopback.
pub fn kubedns_addresses(bound: SocketAddr) -> Vec<SocketAddr> {
    let port = bound.port();
    let mut addrs = vec![bound];
    let also: &[IpAddr] = match bound.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => &[IpAddr::V4(Ipv4Addr::LOCALHOST)],
        IpAddr::V6(ip) if ip.is_unspecified() => &[
            IpAddr::V6(std::net::Ipv6Addr::LOCALHOST),
            IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            IpAddr::V4(Ipv4Addr::LOCALHOST),
        ],
        _ => &[],
    };
    addrs.extend(also.iter().map(|ip| SocketAddr::new(*ip, port)));
    addrs
}

/// `ip#port` as dnsmasq's `--server` spells it (IPv6 in brackets).
fn server_spelling(addr: SocketAddr) -> String {
    match addr.ip() {
        IpAddr::V4(ip) => format!("{ip}#{}", addr.port()),
        IpAddr::V6(ip) => format!("[{ip}]#{}", addr.port()),
    }
}

/// The domain without its final dot.
fn bare(domain: &hickory_proto::rr::Name) -> String {
    domain.to_ascii().trim_end_matches('.').to_owned()
}

/// The dnsmasq container's arguments in manifests/kube-dns.yaml, for kubedns answering on
/// `kubedns_dns`: its domain and the reverse zones go to kubedns, and it reads the ConfigMap
/// directory kubedns reads (the pod mounts one ConfigMap into both containers).
pub fn dnsmasq_defaults(kubedns: &kubedns::Args, kubedns_dns: SocketAddr) -> Vec<String> {
    let target = local_target(kubedns_dns);
    let server = server_spelling(target);
    let mut args = Vec::new();
    if let Some(dir) = &kubedns.config_dir {
        args.push(format!("-configDir={}", dir.display()));
    }
    args.push(format!("-kubednsServer={target}"));
    args.push("--".into());
    args.extend(
        [
            "-k",
            "--cache-size=1000",
            "--no-negcache",
            "--dns-loop-detect",
        ]
        .map(String::from),
    );
    for zone in [bare(&kubedns.domain).as_str(), "in-addr.arpa", "ip6.arpa"] {
        args.push(format!("--server=/{zone}/{server}"));
    }
    args
}

/// The sidecar container's arguments in manifests/kube-dns.yaml, for kubedns answering on
/// `kubedns_dns` and dnsmasq-rs on `dnsmasq_dns`: an SRV probe of each, and dnsmasq-rs's
/// statistics from its port.
pub fn healthz_defaults(
    domain: &hickory_proto::rr::Name,
    kubedns_dns: SocketAddr,
    dnsmasq_dns: SocketAddr,
) -> Vec<String> {
    let name = format!("kubernetes.default.svc.{}", bare(domain));
    let (kubedns, dnsmasq) = (local_target(kubedns_dns), local_target(dnsmasq_dns));
    vec![
        format!("--probe=kubedns,{kubedns},{name},5,SRV"),
        format!("--probe=dnsmasq,{dnsmasq},{name},5,SRV"),
        format!("--dnsmasq-addr={}", dnsmasq.ip()),
        format!("--dnsmasq-port={}", dnsmasq.port()),
    ]
}

/// Builds dnsmasq-rs's default configuration once kubedns is bound.
pub fn dnsmasq_default_config(
    kubedns: &kubedns::Args,
    kubedns_dns: SocketAddr,
) -> Result<dnsmasq_rs::Config, UsageError> {
    match parse_dnsmasq(dnsmasq_defaults(kubedns, kubedns_dns))? {
        Parsed::Config(config, _, _) => Ok(config),
        Parsed::Print(_) => Err(UsageError("the dnsmasq defaults asked for help".into())),
    }
}

/// Builds healthz's default configuration once both DNS servers are bound.
pub fn healthz_default_config(
    domain: &hickory_proto::rr::Name,
    kubedns_dns: SocketAddr,
    dnsmasq_dns: SocketAddr,
) -> Result<healthz::Config, UsageError> {
    match parse_healthz(healthz_defaults(domain, kubedns_dns, dnsmasq_dns))? {
        Parsed::Config(config, _, _) => Ok(config),
        Parsed::Print(_) => Err(UsageError("the healthz defaults asked for help".into())),
    }
}

/// `--help`: how the command line works, then kubedns's flags.
pub fn help() -> String {
    let kubedns = kubedns::Args::command().render_help();
    format!(
        "{}\n\nKUBEDNS FLAGS (before --dnsmasq and --healthz), as for the kubedns binary:\n\n{kubedns}",
        HELP.trim_end()
    )
}

const HELP: &str = "\
The whole kube-dns pod in one process: kubedns, dnsmasq-rs and healthz, with the cache asking
kubedns in-process instead of over loopback.

Usage: kube-dns-single [KUBEDNS FLAGS...] [--dnsmasq DNSMASQ-RS ARGS...] [--healthz HEALTHZ ARGS...]

The command line is three groups, split at the standalone words --dnsmasq and --healthz (either
order, each at most once). Each group is parsed by its binary's own parser, so every flag means
what it means for that binary, legacy spellings included:
  kubedns     --domain, --dns-port, --config-dir, --cluster-state, --kube-master-url, ...
  --dnsmasq   nanny form (-configDir=... -- -k --cache-size=1000 ...) or dnsmasq form
  --healthz   --probe, --port, --prometheus-port, ...
`kube-dns-single --dnsmasq --help` and `kube-dns-single --healthz --help` list those groups' flags.

A query dnsmasq-rs would send to kubedns's DNS address (a --server naming it, such as
127.0.0.1#10053) is answered by kubedns's handler in the same process: no socket, no encoding.
Everything else (stub domains, upstreams, failover, cache, NOTIFY) is dnsmasq-rs's as usual.
kubedns still listens on its DNS port, for the kubedns probe and outside clients.

An absent group gets the arguments of its container in manifests/kube-dns.yaml, derived from the
kubedns group (KUBEDNS is 127.0.0.1#<--dns-port>, or --dns-bind-address when it is not a
wildcard; DNSMASQ is dnsmasq-rs's port, 53 by default):
  --dnsmasq [-configDir=<--config-dir>] -kubednsServer=KUBEDNS -- -k --cache-size=1000
            --no-negcache --dns-loop-detect --server=/<--domain>/KUBEDNS
            --server=/in-addr.arpa/KUBEDNS --server=/ip6.arpa/KUBEDNS
  --healthz --probe=kubedns,KUBEDNS,kubernetes.default.svc.<--domain>,5,SRV
            --probe=dnsmasq,DNSMASQ,kubernetes.default.svc.<--domain>,5,SRV
            --dnsmasq-port=DNSMASQ

Ports, as in the pod: 53 DNS (dnsmasq-rs), 10053 DNS (kubedns), 8081 /readiness (kubedns),
10055 /metrics (kubedns), 10056 /metrics (dnsmasq-rs), 10054 /healthz, /healthz-<label>,
/healthcheck/<label> and /metrics (healthz).

Logs follow kubedns's --log-format, at the highest --v of the three groups. SIGTERM drains all
three and exits 0; bad flags exit 64 before anything is bound; a failure to start exits 1.";

#[cfg(test)]
mod tests {
    use super::*;

    fn words(line: &str) -> Vec<String> {
        line.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn the_separators_split_the_groups_in_either_order() {
        let groups = Groups::split(words(
            "--domain=x. --healthz --probe=a,1.2.3.4,b --dnsmasq -v=2 -- -k",
        ))
        .unwrap();
        assert_eq!(groups.kubedns, ["--domain=x."]);
        assert_eq!(groups.healthz.unwrap(), ["--probe=a,1.2.3.4,b"]);
        assert_eq!(groups.dnsmasq.unwrap(), ["-v=2", "--", "-k"]);
        let empty = Groups::split(words("--dnsmasq")).unwrap();
        assert_eq!(empty.dnsmasq, Some(Vec::new()));
        assert_eq!(empty.healthz, None);
    }

    #[test]
    fn a_separator_given_twice_is_an_error() {
        let err = Groups::split(words("--dnsmasq -k --dnsmasq")).unwrap_err();
        assert!(
            err.to_string().contains("--dnsmasq is given twice"),
            "{err}"
        );
    }

    #[test]
    fn kubedns_on_a_wildcard_is_named_by_loopback_and_answers_there_in_process() {
        let v4: SocketAddr = "0.0.0.0:10053".parse().unwrap();
        assert_eq!(local_target(v4), "127.0.0.1:10053".parse().unwrap());
        assert_eq!(
            kubedns_addresses(v4),
            ["0.0.0.0:10053", "127.0.0.1:10053"].map(|a| a.parse::<SocketAddr>().unwrap())
        );
        let own: SocketAddr = "10.0.0.5:5353".parse().unwrap();
        assert_eq!(local_target(own), own);
        assert_eq!(kubedns_addresses(own), [own]);
        assert!(
            kubedns_addresses("[::]:53".parse().unwrap())
                .contains(&"127.0.0.1:53".parse().unwrap())
        );
        assert_eq!(server_spelling("[::1]:53".parse().unwrap()), "[::1]#53");
    }
}
