//! kubedns's flags: those of kube-dns 1.26 under the same names and defaults (but the DNS port,
//! see `--dns-port`), and the new ones this implementation adds.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use hickory_proto::rr::Name;
use kdns_daemon::{LogFormat, parse_duration};

use crate::records::PodRecords;
use crate::source::kube::EndpointsSource;

/// The cluster's DNS records, served from memory, fed by the Kubernetes API.
#[derive(Clone, Debug, Parser)]
#[command(name = "kubedns", version, about, long_about = None)]
pub struct Args {
    /// Domain the cluster's records live in.
    #[arg(long, default_value = "cluster.local.", value_parser = parse_domain, env = "KUBEDNS_DOMAIN")]
    pub domain: Name,

    /// Address to serve DNS on (UDP and TCP).
    #[arg(long, default_value = "0.0.0.0")]
    pub dns_bind_address: IpAddr,

    /// Port to serve DNS on. kube-dns defaulted to 53 and every manifest passed 10053; the
    /// default here is the pod's 10053, so that kubedns and the port-53 cache never collide.
    #[arg(long, default_value_t = 10053)]
    pub dns_port: u16,

    /// Port for /readiness and /cache (all addresses, as kube-dns).
    #[arg(long, default_value_t = 8081)]
    pub healthz_port: u16,

    /// Address for the /readiness, /cache and metrics HTTP servers.
    #[arg(long, default_value = "0.0.0.0")]
    pub http_bind_address: IpAddr,

    /// Port for Prometheus /metrics; `off` (or an empty PROMETHEUS_PORT, as kube-dns) turns
    /// metrics off.
    #[arg(long, env = "PROMETHEUS_PORT", default_value = "10055", value_parser = parse_optional_port)]
    pub metrics_port: OptionalPort,

    /// Upstream nameservers `ip[:port]`, comma-separated, used when the configuration (config dir
    /// or ConfigMap) names no `upstreamNameservers`; resolv.conf's when this is empty too.
    #[arg(long, default_value = "")]
    pub nameservers: String,

    /// resolv.conf to take upstream nameservers from when nothing else names them.
    #[arg(long, default_value = "/etc/resolv.conf")]
    pub resolv_conf: PathBuf,

    /// Timeout for one query to one upstream nameserver.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    pub upstream_timeout: Duration,

    /// Kubeconfig file for the API server (in-cluster config when absent).
    #[arg(long)]
    pub kubecfg_file: Option<PathBuf>,

    /// URL of the API server (overrides the kubeconfig's).
    #[arg(long)]
    pub kube_master_url: Option<String>,

    /// Read Kubernetes objects from this YAML/JSON file instead of the API (re-read on change).
    #[arg(long, conflicts_with_all = ["kubecfg_file", "kube_master_url"])]
    pub cluster_state: Option<PathBuf>,

    /// How often the cluster-state file is checked for changes.
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    pub cluster_state_period: Duration,

    /// Which endpoint objects to watch.
    #[arg(long, value_enum, default_value_t = EndpointsSource::Auto)]
    pub endpoints_source: EndpointsSource,

    /// How `<ip>.<ns>.pod.<zone>` names are answered.
    #[arg(long, value_enum, default_value_t = PodRecords::Insecure)]
    pub pod_records: PodRecords,

    /// TTL of every record, in seconds.
    #[arg(long, default_value_t = 30)]
    pub ttl: u32,

    /// Directory holding the mounted kube-dns ConfigMap (upstreamNameservers, stubDomains).
    #[arg(long, conflicts_with = "config_map")]
    pub config_dir: Option<PathBuf>,

    /// Read the configuration from this ConfigMap through the API (legacy; prefer --config-dir).
    #[arg(long, default_value = "")]
    pub config_map: String,

    /// Namespace of --config-map.
    #[arg(long, default_value = "kube-system")]
    pub config_map_namespace: String,

    /// How often the config dir is read.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub config_period: Duration,

    /// After this long without a full sync, warn (kube-dns exited; this stays unready and keeps
    /// trying).
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub initial_sync_timeout: Duration,

    /// Send DNS NOTIFY for changed names to these caches (`ip:port`, comma-separated), so they
    /// drop stale answers at once.
    #[arg(long, value_delimiter = ',', value_parser = parse_socket_addr)]
    pub notify: Vec<SocketAddr>,

    /// Deprecated federation domains: accepted and ignored.
    #[arg(long, hide = true, default_value = "")]
    pub federations: String,

    /// Accepted for compatibility; profiling endpoints are not served.
    #[arg(long)]
    pub profiling: bool,

    /// klog verbosity: 0-2 info, 3 debug, 4 and above everything.
    #[arg(short = 'v', long = "v", default_value_t = 0)]
    pub verbosity: u8,

    /// Log format: text or json.
    #[arg(long, default_value_t = LogFormat::Text, env = "KUBEDNS_LOG_FORMAT")]
    pub log_format: LogFormat,
}

/// Parses `--domain` as kube-dns did: every label a lowercase DNS-1123 label, made absolute.
pub fn parse_domain(text: &str) -> Result<Name, String> {
    let trimmed = text.trim_end_matches('.');
    if trimmed.is_empty() {
        return Err("the domain must not be empty".into());
    }
    for label in trimmed.split('.') {
        let ok = !label.is_empty()
            && label.len() <= 63
            && label
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !label.starts_with('-')
            && !label.ends_with('-');
        if !ok {
            return Err(format!(
                "{label:?} is not a DNS-1123 label (lowercase letters, digits and '-')"
            ));
        }
    }
    let mut name = Name::from_ascii(trimmed).map_err(|e| e.to_string())?;
    name.set_fqdn(true);
    Ok(name)
}

/// A port, or none (`off`, or empty).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OptionalPort(pub Option<u16>);

fn parse_optional_port(text: &str) -> Result<OptionalPort, String> {
    match text.trim() {
        "" | "off" => Ok(OptionalPort(None)),
        port => port
            .parse()
            .map(|p| OptionalPort(Some(p)))
            .map_err(|_| format!("{port:?} is not a port")),
    }
}

fn parse_socket_addr(text: &str) -> Result<SocketAddr, String> {
    kdns_config::parse_nameserver(text).map_err(|e| e.to_string())
}

impl Args {
    /// The DNS address.
    pub fn dns_addr(&self) -> SocketAddr {
        SocketAddr::new(self.dns_bind_address, self.dns_port)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Args, clap::Error> {
        let argv = std::iter::once("kubedns".to_owned()).chain(args.iter().map(|s| s.to_string()));
        let (argv, _) = kdns_daemon::normalize_args(argv, &[]);
        Args::try_parse_from(argv)
    }

    #[test]
    fn the_stock_manifest_arguments_parse() {
        let args = parse(&[
            "--domain=cluster.local.",
            "--dns-port=10053",
            "--config-dir=/kube-dns-config",
            "--v=2",
        ])
        .unwrap();
        assert_eq!(args.domain.to_ascii(), "cluster.local.");
        assert_eq!(args.dns_port, 10053);
        assert_eq!(args.verbosity, 2);
    }

    #[test]
    fn legacy_spellings_and_klog_flags_are_accepted() {
        let args = parse(&[
            "--dns_port=5353",
            "--healthz_port=9000",
            "--logtostderr",
            "--alsologtostderr=true",
            "--log-dir=/tmp",
            "--stderrthreshold=2",
            "--vmodule=x=2",
            "--log-flush-frequency=5s",
            "-v=4",
            "--federations=abc=def.com",
            "--config-period=1m30s",
        ])
        .unwrap();
        assert_eq!(args.dns_port, 5353);
        assert_eq!(args.healthz_port, 9000);
        assert_eq!(args.verbosity, 4);
        assert_eq!(args.config_period, Duration::from_secs(90));
    }

    #[test]
    fn domains_follow_dns_1123() {
        for ok in ["cluster.local", "cluster.local.", "k8s-1.example"] {
            assert!(parse_domain(ok).is_ok(), "{ok}");
        }
        // invalid
        for bad in ["", ".", "Cluster.local", "cluster_local", "-a.b", "a..b"] {
            assert!(parse_domain(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn config_dir_and_config_map_exclude_each_other() {
        assert!(parse(&["--config-dir=/x", "--config-map=kube-dns"]).is_err());
    }

    #[test]
    fn unknown_flags_are_errors() {
        let err = parse(&["--no-such-flag"]).unwrap_err();
        assert!(err.to_string().contains("--no-such-flag"), "{err}");
    }
}
