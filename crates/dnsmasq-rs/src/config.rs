//! Flags: dnsmasq-nanny's single-dash flags, `--`, then dnsmasq's own; or dnsmasq's alone.
//!
//! [`parse_args`] turns a command line into [`Args`] (one clap command holding both sets, so
//! either invocation works), reading `--conf-file`s on the way; [`Args::into_config`] validates
//! them into a [`Config`] that [`crate::start`] runs. Tests build a [`Config`] directly.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use clap::{ArgAction, Parser};
use hickory_proto::rr::Name;
use kdns_daemon::{LogFormat, parse_duration};

use crate::cache::{CachePolicy, MAX_MIN_CACHE_TTL};
use crate::rrl::RateLimit;

/// dnsmasq's short options that a cluster's manifests use; passed to `normalize_args` so the
/// legacy-flag rewriting leaves them alone.
pub const SHORT_FLAGS: &[char] = &[
    'k', 'd', 'p', 'a', 'z', 'u', 'c', 'N', 'S', 'R', 'r', 'H', 'o', 'P', 'q', 'C', '8', '0',
];

/// The default for `--dns-forward-max`; see the flag's documentation for why.
pub const DEFAULT_FORWARD_MAX: usize = 10_000;

/// The caching DNS front end of the kube-dns pod: dnsmasq and dnsmasq-nanny in one process.
#[derive(Clone, Debug, Parser)]
#[command(name = "dnsmasq-rs", version, about, long_about = None, args_override_self = true)]
pub struct Args {
    // --- dnsmasq-nanny ---
    /// Directory of the mounted kube-dns ConfigMap (stubDomains, upstreamNameservers); applied
    /// live, without a restart.
    #[arg(long = "configDir", default_value = "/etc/k8s/dns/dnsmasq-nanny")]
    pub config_dir: PathBuf,

    /// How often the config directory, resolv.conf and hosts files are re-read.
    #[arg(long = "syncInterval", default_value = "10s", value_parser = parse_duration)]
    pub sync_interval: Duration,

    /// kubedns's address: stub-domain servers named inside the cluster domain are resolved
    /// through it, and it may send NOTIFY.
    #[arg(long = "kubednsServer", default_value = "127.0.0.1:10053", value_parser = parse_addr)]
    pub kubedns_server: SocketAddr,

    /// Accepted for compatibility: configuration changes are applied live, never by a restart.
    #[arg(long = "restartDnsmasq", action = ArgAction::Set, num_args = 0..=1, require_equals = true,
          default_value_t = false, default_missing_value = "true")]
    pub restart_dnsmasq: bool,

    /// Accepted for compatibility and ignored: there is no dnsmasq binary to run.
    #[arg(long = "dnsmasqExec", default_value = "")]
    pub dnsmasq_exec: String,

    /// When above zero, log the cache statistics this often (the nanny sent dnsmasq SIGUSR1).
    #[arg(long = "logInterval", default_value = "0", value_parser = parse_duration)]
    pub log_interval: Duration,

    /// klog verbosity: 0-2 info, 3 debug for this binary, 4 and above debug for everything.
    #[arg(long = "v", default_value_t = 0)]
    pub verbosity: u8,

    /// Log format: text or json.
    #[arg(long, default_value = "text", env = "DNSMASQ_RS_LOG_FORMAT")]
    pub log_format: LogFormat,

    // --- this implementation ---
    /// Port for Prometheus /metrics; 0 turns metrics off.
    #[arg(long, default_value_t = 10056)]
    pub metrics_port: u16,

    /// Address for the /metrics server.
    #[arg(long, default_value = "0.0.0.0")]
    pub metrics_bind_address: IpAddr,

    /// Source addresses allowed to send NOTIFY (repeatable, or comma-separated). Defaults to
    /// the address of --kubednsServer and of the --server for the cluster domain.
    #[arg(long, value_delimiter = ',')]
    pub notify_from: Vec<IpAddr>,

    /// Answer NOTIFY with NOTIMP instead of acting on it.
    #[arg(long)]
    pub no_notify: bool,

    /// Upstream servers (`ip[#port]`, repeatable) always asked over TCP, as NodeLocal DNSCache
    /// does towards cluster DNS to stay clear of conntrack races on UDP.
    #[arg(long, value_parser = parse_server_addr)]
    pub always_tcp: Vec<SocketAddr>,

    /// How long to wait for one upstream server before asking the next.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    pub upstream_timeout: Duration,

    /// UDP answers per second to one client network (see --rate-limit-ipv4-prefix); beyond it
    /// requests are dropped or slipped (--rate-limit-slip). 0 turns rate limiting off. TCP is
    /// never limited.
    #[arg(long, default_value_t = 0)]
    pub rate_limit: u32,

    /// Every Nth rate-limited request gets an empty reply with TC set, so real clients retry
    /// over TCP; 0 drops them all.
    #[arg(long, default_value_t = 2)]
    pub rate_limit_slip: u32,

    /// Rate-limit IPv4 clients per network of this prefix length.
    #[arg(long, default_value_t = 24, value_parser = clap::value_parser!(u8).range(0..=32))]
    pub rate_limit_ipv4_prefix: u8,

    /// Rate-limit IPv6 clients per network of this prefix length.
    #[arg(long, default_value_t = 56, value_parser = clap::value_parser!(u8).range(0..=128))]
    pub rate_limit_ipv6_prefix: u8,

    // --- dnsmasq ---
    /// Accepted: this process never daemonizes.
    #[arg(short = 'k', long)]
    pub keep_in_foreground: bool,

    /// Accepted: this process never daemonizes.
    #[arg(short = 'd', long)]
    pub no_daemon: bool,

    /// Port to serve DNS on. Unlike dnsmasq, 0 means an ephemeral port, not "DNS off".
    #[arg(short = 'p', long, default_value_t = 53)]
    pub port: u16,

    /// Address to serve DNS on (repeatable). Without one, all addresses (IPv6 and IPv4).
    #[arg(short = 'a', long, value_delimiter = ',')]
    pub listen_address: Vec<IpAddr>,

    /// Accepted: the listen addresses are always bound individually.
    #[arg(short = 'z', long)]
    pub bind_interfaces: bool,

    /// Accepted and ignored: the container's security context picks the user.
    #[arg(short = 'u', long)]
    pub user: Option<String>,

    /// Cache bound, in records, as in dnsmasq. 0 turns the cache off.
    #[arg(short = 'c', long, default_value_t = 150)]
    pub cache_size: usize,

    /// Do not cache NXDOMAIN and NODATA answers.
    #[arg(short = 'N', long)]
    pub no_negcache: bool,

    /// Seconds: the most a negative answer is cached for, and how long one without an SOA is.
    #[arg(long)]
    pub neg_ttl: Option<u32>,

    /// Seconds: shorter TTLs are cached this long (at most 3600, as in dnsmasq).
    #[arg(long, default_value_t = 0)]
    pub min_cache_ttl: u32,

    /// Seconds: longer TTLs are cached only this long.
    #[arg(long)]
    pub max_cache_ttl: Option<u32>,

    /// Upstream server: `ip[#port]` for all names, `/domain/[domain/]ip[#port]` for names in
    /// those domains (longest match wins), `/domain/` to answer them only locally, `/domain/#` to
    /// use the default servers for them. IPv6 plain or in brackets. Repeatable.
    #[arg(short = 'S', long)]
    pub server: Vec<ServerSpec>,

    /// Do not read upstream servers from the resolv file.
    #[arg(short = 'R', long)]
    pub no_resolv: bool,

    /// Where to read default upstream servers (re-read every --syncInterval).
    #[arg(short = 'r', long, default_value = "/etc/resolv.conf")]
    pub resolv_file: PathBuf,

    /// Do not answer from /etc/hosts.
    #[arg(long)]
    pub no_hosts: bool,

    /// Another hosts file to answer from (repeatable).
    #[arg(short = 'H', long)]
    pub addn_hosts: Vec<PathBuf>,

    /// Accepted: servers are always asked in order (with failover and dead-server skipping).
    #[arg(short = 'o', long)]
    pub strict_order: bool,

    /// Ask every upstream at once and take the first answer.
    #[arg(long)]
    pub all_servers: bool,

    /// Upstream queries in flight at once. dnsmasq's 150 is what clusters hit as "Maximum
    /// number of concurrent DNS queries reached"; the default, 10000 (capped at half the
    /// open-files limit), never limits a healthy pod: by Little's law 10000 in flight at 100 ms
    /// upstream latency is 100000 misses per second, beyond what the pod serves, while each
    /// query in flight holds one socket.
    #[arg(short = '0', long)]
    pub dns_forward_max: Option<usize>,

    /// Largest UDP answer to an EDNS client, and the size advertised upstream.
    #[arg(short = 'P', long, default_value_t = 1232)]
    pub edns_packet_max: u16,

    /// Detect forwarding loops: probe each default upstream and stop using one that sends the
    /// probe back.
    #[arg(long)]
    pub dns_loop_detect: bool,

    /// Log every query (at info), with where it was answered from.
    #[arg(short = 'q', long, num_args = 0..=1, require_equals = true, default_missing_value = "")]
    pub log_queries: Option<String>,

    /// Accepted: logs always go to stderr.
    #[arg(short = '8', long)]
    pub log_facility: Option<String>,

    /// Read more options from this file, one `option[=value]` per line (repeatable).
    #[arg(short = 'C', long)]
    pub conf_file: Vec<PathBuf>,
}

/// Why the command line cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// clap rejected it (unknown flag, bad value); the message names the flag.
    #[error(transparent)]
    Usage(#[from] clap::Error),
    /// A `--conf-file` could not be read.
    #[error("cannot read --conf-file {path}")]
    ConfFile {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A flag's value is out of range.
    #[error("invalid --{flag}: {reason}")]
    Invalid {
        /// The flag, without dashes.
        flag: &'static str,
        /// What is wrong.
        reason: String,
    },
}

/// Parses a command line (program name first): the nanny part is normalised with
/// `kdns_daemon::normalize_args`, the first `--` is dropped, `--conf-file`s are read and their
/// options placed before the command line's (so the command line wins).
pub fn parse_args<I>(argv: I) -> Result<(Args, kdns_daemon::LegacyFlags), Error>
where
    I: IntoIterator<Item = String>,
{
    let (normalized, legacy) = kdns_daemon::normalize_args(argv, SHORT_FLAGS);
    let mut args: Vec<String> = Vec::with_capacity(normalized.len());
    let mut dropped_separator = false;
    for arg in normalized {
        if arg == "--" && !dropped_separator {
            dropped_separator = true;
            continue;
        }
        args.push(arg);
    }
    let first = Args::try_parse_from(&args)?;
    if first.conf_file.is_empty() {
        return Ok((first, legacy));
    }
    let mut merged = vec![args.first().cloned().unwrap_or_default()];
    for path in &first.conf_file {
        let text = std::fs::read_to_string(path).map_err(|source| Error::ConfFile {
            path: path.clone(),
            source,
        })?;
        merged.extend(conf_file_options(&text));
    }
    merged.extend(args.into_iter().skip(1));
    Ok((Args::try_parse_from(merged)?, legacy))
}

/// dnsmasq's configuration file syntax: `option` or `option=value` per line, `#` comments.
fn conf_file_options(text: &str) -> Vec<String> {
    text.lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        // A conf-file naming another is not followed; the command line names them all.
        .filter(|line| !line.starts_with("conf-file"))
        .map(|line| format!("--{line}"))
        .collect()
}

fn parse_addr(s: &str) -> Result<SocketAddr, String> {
    kdns_config::parse_nameserver(s).map_err(|e| e.to_string())
}

/// `ip`, `ip#port`, `[ipv6]`, `[ipv6]#port`, `[ipv6]:port` or `ipv4:port` (the nanny's spelling
/// before it munged it), port 53 by default.
pub fn parse_server_addr(s: &str) -> Result<SocketAddr, String> {
    let bad = |why: &str| format!("{s:?}: {why}");
    if s.contains('@') {
        return Err(bad("source addresses and interfaces (@) are not supported"));
    }
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Ok(SocketAddr::new(ip, 53));
    }
    let (host, port) = match s.rsplit_once('#') {
        Some((host, port)) => (host, Some(port)),
        None => (s, None),
    };
    let port = match port {
        Some(port) => match port.parse::<u16>() {
            Ok(port) if port != 0 => port,
            _ => return Err(bad("port must be 1-65535")),
        },
        None => 53,
    };
    if let Some(inner) = host.strip_prefix('[') {
        let (ip, rest) = inner.split_once(']').ok_or_else(|| bad("missing ']'"))?;
        let ip: Ipv6Addr = ip.parse().map_err(|_| bad("not an IPv6 address in [ ]"))?;
        let port = match rest.strip_prefix(':') {
            Some(p) => p
                .parse::<u16>()
                .ok()
                .filter(|p| *p != 0)
                .ok_or_else(|| bad("bad port"))?,
            None if rest.is_empty() => port,
            None => return Err(bad("unexpected text after ']'")),
        };
        return Ok(SocketAddr::new(ip.into(), port));
    }
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(SocketAddr::new(ip, port));
    }
    if let Some((ip, p)) = host.rsplit_once(':')
        && let (Ok(ip), Ok(p)) = (ip.parse::<Ipv4Addr>(), p.parse::<u16>())
        && p != 0
    {
        return Ok(SocketAddr::new(ip.into(), p));
    }
    Err(bad(
        "not an IP address (host names are not supported in --server)",
    ))
}

/// One `--server` value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerSpec {
    /// The domains it applies to, lowercase and absolute; empty for a default server.
    pub domains: Vec<Name>,
    /// What to do with those names.
    pub target: ServerTarget,
}

/// Where a `--server` sends its names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ServerTarget {
    /// To this server.
    Addr(SocketAddr),
    /// Nowhere: answer from hosts files or NXDOMAIN (`/domain/`).
    Local,
    /// To the default servers, even if a shorter domain has others (`/domain/#`).
    Default,
}

impl FromStr for ServerSpec {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let Some(rest) = s.strip_prefix('/') else {
            return Ok(Self {
                domains: Vec::new(),
                target: ServerTarget::Addr(parse_server_addr(s)?),
            });
        };
        let (domains, target) = rest
            .rsplit_once('/')
            .ok_or_else(|| format!("{s:?}: expected /domain/[server]"))?;
        let domains = domains
            .split('/')
            .map(|d| parse_domain(d).map_err(|e| format!("{s:?}: {e}")))
            .collect::<Result<Vec<_>, _>>()?;
        let target = match target {
            "" => ServerTarget::Local,
            "#" => ServerTarget::Default,
            addr => ServerTarget::Addr(parse_server_addr(addr)?),
        };
        Ok(Self { domains, target })
    }
}

/// A domain as routing uses it: lowercase, absolute.
pub fn parse_domain(s: &str) -> Result<Name, String> {
    if s.is_empty() {
        return Err("empty domain (unqualified-name routing is not supported)".into());
    }
    let mut name = Name::from_ascii(s).map_err(|e| format!("invalid domain {s:?}: {e}"))?;
    name.set_fqdn(true);
    Ok(name.to_lowercase())
}

/// Who may send NOTIFY.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NotifyPolicy {
    /// Nobody: NOTIFY gets NOTIMP.
    Disabled,
    /// These source addresses; others get REFUSED.
    From(Vec<IpAddr>),
}

/// Everything [`crate::start`] needs, validated.
#[derive(Clone, Debug)]
pub struct Config {
    /// Addresses to serve DNS on, UDP and TCP (port 0: ephemeral).
    pub listen: Vec<SocketAddr>,
    /// Where to serve /metrics; `None` for no metrics server.
    pub metrics: Option<SocketAddr>,
    /// The cache's bound and TTL rules.
    pub cache: CachePolicy,
    /// `--server` flags, in order.
    pub servers: Vec<ServerSpec>,
    /// The resolv file to take default servers from; `None` with `--no-resolv`.
    pub resolv_file: Option<PathBuf>,
    /// Hosts files answered from, in order.
    pub hosts_files: Vec<PathBuf>,
    /// The mounted ConfigMap; `None` to ignore it.
    pub config_dir: Option<PathBuf>,
    /// How often the config dir, resolv file and hosts files are re-read.
    pub sync_interval: Duration,
    /// kubedns's address, for resolving stub-domain server names in the cluster domain.
    pub kubedns_server: SocketAddr,
    /// The cluster domains: those routed to kubedns by `--server`, else `cluster.local.`.
    pub cluster_domains: Vec<Name>,
    /// Who may send NOTIFY.
    pub notify: NotifyPolicy,
    /// Upstreams always asked over TCP.
    pub always_tcp: Vec<SocketAddr>,
    /// Per-server upstream timeout.
    pub upstream_timeout: Duration,
    /// Ask all upstreams at once.
    pub all_servers: bool,
    /// Upstream fetches in flight at once.
    pub dns_forward_max: usize,
    /// Largest UDP answer; size advertised upstream.
    pub edns_packet_max: u16,
    /// Probe default upstreams for forwarding loops.
    pub dns_loop_detect: bool,
    /// Log each query at info.
    pub log_queries: bool,
    /// Log cache statistics this often (zero: never).
    pub log_interval: Duration,
    /// Per-client UDP response rate limiting; `None` answers everyone.
    pub rate_limit: Option<RateLimit>,
}

impl Config {
    /// A configuration for tests and embedding: DNS on `listen`, no metrics server, dnsmasq's
    /// cache defaults, no upstreams, no resolv, hosts or config files.
    pub fn new(listen: SocketAddr) -> Self {
        Self {
            listen: vec![listen],
            metrics: None,
            cache: CachePolicy::default(),
            servers: Vec::new(),
            resolv_file: None,
            hosts_files: Vec::new(),
            config_dir: None,
            sync_interval: Duration::from_secs(10),
            kubedns_server: SocketAddr::from(([127, 0, 0, 1], 10053)),
            cluster_domains: vec![
                Name::from_ascii("cluster.local.").expect("a valid constant name"),
            ],
            notify: NotifyPolicy::Disabled,
            always_tcp: Vec::new(),
            upstream_timeout: Duration::from_secs(2),
            all_servers: false,
            dns_forward_max: DEFAULT_FORWARD_MAX,
            edns_packet_max: 1232,
            dns_loop_detect: false,
            log_queries: false,
            log_interval: Duration::ZERO,
            rate_limit: None,
        }
    }
}

impl Args {
    /// Validates the flags into a [`Config`].
    pub fn into_config(self) -> Result<Config, Error> {
        if self.edns_packet_max < 512 {
            return Err(Error::Invalid {
                flag: "edns-packet-max",
                reason: "must be at least 512".into(),
            });
        }
        if self.dns_forward_max == Some(0) {
            return Err(Error::Invalid {
                flag: "dns-forward-max",
                reason: "must be at least 1".into(),
            });
        }
        let listen = if self.listen_address.is_empty() {
            // All addresses: on Linux an IPv6 wildcard socket takes IPv4 too; `start` falls
            // back to the IPv4 wildcard where IPv6 is off.
            vec![SocketAddr::new(Ipv6Addr::UNSPECIFIED.into(), self.port)]
        } else {
            self.listen_address
                .iter()
                .map(|ip| SocketAddr::new(*ip, self.port))
                .collect()
        };
        let mut hosts_files = Vec::new();
        if !self.no_hosts {
            hosts_files.push(PathBuf::from("/etc/hosts"));
        }
        hosts_files.extend(self.addn_hosts.iter().cloned());

        let mut cluster_domains: Vec<Name> = Vec::new();
        for spec in &self.server {
            if let ServerTarget::Addr(addr) = spec.target
                && addr == self.kubedns_server
            {
                for domain in &spec.domains {
                    let reverse = domain.to_ascii().ends_with("arpa.");
                    if !reverse && !cluster_domains.contains(domain) {
                        cluster_domains.push(domain.clone());
                    }
                }
            }
        }
        if cluster_domains.is_empty() {
            cluster_domains
                .push(Name::from_ascii("cluster.local.").expect("a valid constant name"));
        }

        let notify = if self.no_notify {
            NotifyPolicy::Disabled
        } else if !self.notify_from.is_empty() {
            NotifyPolicy::From(self.notify_from.iter().map(IpAddr::to_canonical).collect())
        } else {
            let mut from = vec![self.kubedns_server.ip().to_canonical()];
            for spec in &self.server {
                if let ServerTarget::Addr(addr) = spec.target
                    && spec.domains.iter().any(|d| cluster_domains.contains(d))
                    && !from.contains(&addr.ip().to_canonical())
                {
                    from.push(addr.ip().to_canonical());
                }
            }
            NotifyPolicy::From(from)
        };

        Ok(Config {
            listen,
            metrics: (self.metrics_port != 0)
                .then(|| SocketAddr::new(self.metrics_bind_address, self.metrics_port)),
            cache: CachePolicy {
                capacity: self.cache_size,
                min_ttl: self.min_cache_ttl.min(MAX_MIN_CACHE_TTL),
                max_ttl: self.max_cache_ttl,
                negative: !self.no_negcache,
                neg_ttl: self.neg_ttl,
            },
            servers: self.server,
            resolv_file: (!self.no_resolv).then_some(self.resolv_file),
            hosts_files,
            config_dir: Some(self.config_dir),
            sync_interval: self.sync_interval,
            kubedns_server: self.kubedns_server,
            cluster_domains,
            notify,
            always_tcp: self.always_tcp,
            upstream_timeout: self.upstream_timeout,
            all_servers: self.all_servers,
            dns_forward_max: self.dns_forward_max.unwrap_or_else(default_forward_max),
            edns_packet_max: self.edns_packet_max,
            dns_loop_detect: self.dns_loop_detect,
            log_queries: self.log_queries.is_some(),
            log_interval: self.log_interval,
            rate_limit: (self.rate_limit > 0).then_some(RateLimit {
                per_second: self.rate_limit,
                slip: self.rate_limit_slip,
                ipv4_prefix: self.rate_limit_ipv4_prefix,
                ipv6_prefix: self.rate_limit_ipv6_prefix,
            }),
        })
    }
}

/// [`DEFAULT_FORWARD_MAX`], or half the soft open-files limit if that is lower: every query in
/// flight upstream holds a socket, and the listeners and TCP clients need descriptors too.
fn default_forward_max() -> usize {
    let soft_limit = std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|limits| {
            limits
                .lines()
                .find(|line| line.starts_with("Max open files"))
                .and_then(|line| line.split_whitespace().nth(3))
                .and_then(|soft| soft.parse::<usize>().ok())
        });
    match soft_limit {
        Some(limit) => DEFAULT_FORWARD_MAX.min((limit / 2).max(64)),
        None => DEFAULT_FORWARD_MAX,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Args, Error> {
        let argv = std::iter::once("dnsmasq-rs")
            .chain(args.iter().copied())
            .map(String::from);
        parse_args(argv).map(|(args, _)| args)
    }

    fn addr(s: &str) -> SocketAddr {
        s.parse().expect("valid socket address")
    }

    fn name(s: &str) -> Name {
        Name::from_ascii(s).expect("valid name")
    }

    #[test]
    fn the_kube_dns_manifest_invocation_is_accepted() {
        let args = parse(&[
            "-v=2",
            "-logtostderr",
            "-configDir=/etc/k8s/dns/dnsmasq-nanny",
            "-restartDnsmasq=true",
            "--",
            "-k",
            "--cache-size=1000",
            "--no-negcache",
            "--dns-loop-detect",
            "--log-facility=-",
            "--server=/cluster.local/127.0.0.1#10053",
            "--server=/in-addr.arpa/127.0.0.1#10053",
            "--server=/ip6.arpa/127.0.0.1#10053",
        ])
        .expect("the manifest's flags parse");
        assert_eq!(args.verbosity, 2);
        assert!(args.restart_dnsmasq && args.keep_in_foreground && args.no_negcache);
        assert_eq!(args.cache_size, 1000);
        assert_eq!(args.server.len(), 3);
        let config = args.into_config().expect("valid");
        assert_eq!(config.cluster_domains, [name("cluster.local.")]);
        assert_eq!(
            config.notify,
            NotifyPolicy::From(vec!["127.0.0.1".parse().expect("ip")])
        );
        assert!(!config.cache.negative);
        assert_eq!(config.listen, [addr("[::]:53")]);
    }

    #[test]
    fn plain_dnsmasq_invocation_works_without_the_nanny_part() {
        let args = parse(&[
            "-k",
            "--port=5353",
            "--listen-address=127.0.0.1",
            "--server",
            "8.8.8.8",
            "-S",
            "/x.local/1.2.3.4#54",
        ])
        .expect("plain flags parse");
        let config = args.into_config().expect("valid");
        assert_eq!(config.listen, [addr("127.0.0.1:5353")]);
        assert_eq!(
            config.servers[0].target,
            ServerTarget::Addr(addr("8.8.8.8:53"))
        );
        assert_eq!(config.servers[1].domains, [name("x.local.")]);
    }

    #[test]
    fn an_unknown_flag_is_an_error_that_names_it() {
        let err = parse(&["--", "--cache-size=10", "--bogus-priv"]).expect_err("unknown flag");
        assert!(err.to_string().contains("--bogus-priv"), "{err}");
        let err = parse(&["-noSuchNannyFlag=1"]).expect_err("unknown flag");
        assert!(err.to_string().contains("noSuchNannyFlag"), "{err}");
    }

    #[test]
    fn conf_file_options_apply_and_the_command_line_wins() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("dnsmasq.conf");
        std::fs::write(
            &path,
            "# comment\nuser=root\ncache-size=42\nno-negcache\nserver=9.9.9.9\n",
        )
        .expect("write");
        let conf = format!("--conf-file={}", path.display());
        let args = parse(&["--", &conf, "--cache-size=7"]).expect("parses");
        assert_eq!(args.cache_size, 7);
        assert!(args.no_negcache);
        assert_eq!(args.user.as_deref(), Some("root"));
        assert_eq!(args.server.len(), 1);
    }

    #[test]
    fn server_values_parse_as_dnsmasq_spells_them() {
        let ok: &[(&str, &[&str], ServerTarget)] = &[
            ("8.8.8.8", &[], ServerTarget::Addr(addr("8.8.8.8:53"))),
            (
                "8.8.4.4#5353",
                &[],
                ServerTarget::Addr(addr("8.8.4.4:5353")),
            ),
            (
                "2001:db8::1",
                &[],
                ServerTarget::Addr(addr("[2001:db8::1]:53")),
            ),
            (
                "2001:db8::1#5353",
                &[],
                ServerTarget::Addr(addr("[2001:db8::1]:5353")),
            ),
            (
                "[2001:db8::1]#54",
                &[],
                ServerTarget::Addr(addr("[2001:db8::1]:54")),
            ),
            (
                "[2001:db8::1]:55",
                &[],
                ServerTarget::Addr(addr("[2001:db8::1]:55")),
            ),
            (
                "/cluster.local/127.0.0.1#10053",
                &["cluster.local."],
                ServerTarget::Addr(addr("127.0.0.1:10053")),
            ),
            (
                "/Acme.Local/v6.local/[2001:db8::1]#53",
                &["acme.local.", "v6.local."],
                ServerTarget::Addr(addr("[2001:db8::1]:53")),
            ),
            ("/local.lan/", &["local.lan."], ServerTarget::Local),
            ("/corp.example/#", &["corp.example."], ServerTarget::Default),
        ];
        for (text, domains, target) in ok {
            let spec: ServerSpec = text.parse().unwrap_or_else(|e| panic!("{text}: {e}"));
            let want: Vec<Name> = domains.iter().map(|d| name(d)).collect();
            assert_eq!((spec.domains, spec.target), (want, *target), "{text}");
        }
        // invalid
        for bad in [
            "",
            "ns.example.com",
            "1.2.3.4#0",
            "1.2.3.4#x",
            "/x.local",
            "//1.2.3.4",
            "1.2.3.4@eth0",
            "[2001:db8::1",
            "/a..b/1.2.3.4",
        ] {
            assert!(
                bad.parse::<ServerSpec>().is_err(),
                "{bad:?} should be rejected"
            );
        }
    }

    #[test]
    fn notify_sources_default_to_kubedns_and_can_be_set_or_turned_off() {
        let config = parse(&[
            "-kubednsServer=10.0.0.5:10053",
            "--",
            "--server=/example.org/10.0.0.7",
        ])
        .and_then(Args::into_config)
        .expect("valid");
        assert_eq!(
            config.notify,
            NotifyPolicy::From(vec!["10.0.0.5".parse().expect("ip")])
        );
        let config = parse(&[
            "-kubednsServer=10.0.0.5:10053",
            "--",
            "--server=/cluster.local/10.0.0.6#10053",
        ])
        .and_then(Args::into_config)
        .expect("valid");
        assert_eq!(
            config.notify,
            NotifyPolicy::From(vec![
                "10.0.0.5".parse().expect("ip"),
                "10.0.0.6".parse().expect("ip")
            ])
        );
        let config = parse(&["--notify-from=127.0.0.2,::1"])
            .and_then(Args::into_config)
            .expect("valid");
        assert_eq!(
            config.notify,
            NotifyPolicy::From(vec![
                "127.0.0.2".parse().expect("ip"),
                "::1".parse().expect("ip")
            ])
        );
        let config = parse(&["--no-notify"])
            .and_then(Args::into_config)
            .expect("valid");
        assert_eq!(config.notify, NotifyPolicy::Disabled);
    }

    #[test]
    fn the_forward_max_default_is_far_above_dnsmasqs_150() {
        let config = parse(&[]).and_then(Args::into_config).expect("valid");
        assert!(config.dns_forward_max >= 150, "{}", config.dns_forward_max);
        let config = parse(&["--", "--dns-forward-max=20"])
            .and_then(Args::into_config)
            .expect("valid");
        assert_eq!(config.dns_forward_max, 20);
        assert!(
            parse(&["--dns-forward-max=0"])
                .and_then(Args::into_config)
                .is_err()
        );
    }
}
