//! healthz's flags: the k8s-dns-sidecar's and exechealthz's, under their names and defaults,
//! and the validated [`Config`] they become.

use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use clap::{ArgAction, Parser};
use kdns_daemon::{LogFormat, parse_duration};

use crate::dnsmasq::PollConfig;
use crate::exec::ExecSpec;
use crate::http::{HEALTHCHECK_PREFIX, HEALTHZ};
use crate::probe::{Host, MAX_INTERVAL, ProbeSpec, ServerAddr};

/// exechealthz's port, used when only `--cmd`s are given.
pub const EXECHEALTHZ_PORT: u16 = 8080;

/// The sidecar's port, used otherwise.
pub const SIDECAR_PORT: u16 = 10054;

/// Health checks for the kube-dns pod: DNS probes, exechealthz commands, dnsmasq statistics.
#[derive(Clone, Debug, Parser)]
#[command(name = "healthz", version, about, long_about = None)]
pub struct Args {
    /// A DNS probe: `<label>,<server>[:port],<name>[,<interval>][,<type>][,<udp|tcp>]`
    /// (repeatable).
    #[arg(long = "probe", value_name = "SPEC")]
    pub probes: Vec<ProbeSpec>,

    /// How long a probe, or one dnsmasq statistics query, waits for its reply.
    #[arg(long, default_value = "2s", value_parser = parse_duration, value_name = "DURATION")]
    pub probe_timeout: Duration,

    /// exechealthz: a command run with `sh -c`, healthy when it exits 0 (repeatable, paired with
    /// `--url` by position).
    #[arg(long = "cmd", value_name = "COMMAND")]
    pub cmds: Vec<String>,

    /// exechealthz: the path answering for the `--cmd` in the same position (repeatable);
    /// `/healthz` when there is one `--cmd` and no `--url`.
    #[arg(long = "url", value_name = "PATH")]
    pub urls: Vec<String>,

    /// exechealthz: time between two runs of each command.
    #[arg(long, default_value = "2s", value_parser = parse_duration, value_name = "DURATION")]
    pub period: Duration,

    /// Maximum age of a result before it counts as failed; also how long a command may run.
    #[arg(long, default_value = "30s", value_parser = parse_duration, value_name = "DURATION")]
    pub latency: Duration,

    /// exechealthz: log only failures.
    #[arg(long, action = ArgAction::Set, num_args = 0..=1, require_equals = true,
          default_value_t = false, default_missing_value = "true")]
    pub quiet: bool,

    /// exechealthz: answer a passing command's url with its output instead of `ok`.
    #[arg(long, action = ArgAction::Set, num_args = 0..=1, require_equals = true,
          default_value_t = false, default_missing_value = "true")]
    pub output: bool,

    /// exechealthz: HTTP port (8080 when only `--cmd`s are given).
    #[arg(long, value_name = "PORT")]
    pub port: Option<u16>,

    /// Sidecar: HTTP port (10054 unless only `--cmd`s are given); same server as `--port`.
    #[arg(long, value_name = "PORT")]
    pub prometheus_port: Option<u16>,

    /// Address the HTTP server listens on.
    #[arg(long, default_value = "0.0.0.0", value_name = "IP")]
    pub prometheus_addr: IpAddr,

    /// Path of the metrics page.
    #[arg(long, default_value = "/metrics", value_name = "PATH")]
    pub prometheus_path: String,

    /// Prefix of the sidecar's metric names (`kubedns_dnsmasq_hits`); empty for none.
    #[arg(long, default_value = "kubedns", value_name = "NAME")]
    pub prometheus_namespace: String,

    /// dnsmasq's address, for its statistics.
    #[arg(long, default_value = "127.0.0.1", value_name = "HOST")]
    pub dnsmasq_addr: Host,

    /// dnsmasq's DNS port, for its statistics.
    #[arg(long, default_value_t = 53, value_name = "PORT")]
    pub dnsmasq_port: u16,

    /// Milliseconds between two polls of dnsmasq's statistics; 0 turns polling off.
    #[arg(long, default_value_t = 5000, value_name = "MS")]
    pub dnsmasq_poll_interval_ms: u64,

    /// klog verbosity: 0-2 info, 3 debug, 4 and above everything.
    #[arg(short = 'v', long = "v", default_value_t = 0, value_name = "LEVEL")]
    pub verbosity: u8,

    /// Log format: text or json.
    #[arg(long, default_value_t = LogFormat::Text, env = "HEALTHZ_LOG_FORMAT", value_name = "FORMAT")]
    pub log_format: LogFormat,
}

/// Flags that parse but do not fit together.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// `--cmd` and `--url` counts differ.
    #[error("{cmds} --cmd but {urls} --url: each --cmd needs the --url in the same position")]
    CmdUrlMismatch {
        /// `--cmd`s given.
        cmds: usize,
        /// `--url`s given.
        urls: usize,
    },
    /// A `--url` or `--prometheus-path` that is not a usable path.
    #[error("invalid path {path:?} for {flag}: {reason}")]
    InvalidPath {
        /// The flag.
        flag: &'static str,
        /// The value.
        path: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// Two checks with one label.
    #[error("two checks are labelled {0:?}; labels name endpoints and metrics and must differ")]
    DuplicateLabel(String),
    /// Two endpoints on one path.
    #[error("two endpoints would answer on {0:?}")]
    DuplicatePath(String),
    /// `--port` and `--prometheus-port` name different ports.
    #[error(
        "--port {port} and --prometheus-port {prometheus_port} differ; there is one HTTP server"
    )]
    ConflictingPorts {
        /// `--port`.
        port: u16,
        /// `--prometheus-port`.
        prometheus_port: u16,
    },
    /// A namespace that cannot start a metric name.
    #[error(
        "invalid --prometheus-namespace {0:?}: letters, digits and '_', not starting with a digit"
    )]
    Namespace(String),
    /// A duration flag that must not be zero.
    #[error("{0} must be above zero")]
    ZeroDuration(&'static str),
    /// A duration flag above a day.
    #[error("{0} must be at most 24h")]
    TooLong(&'static str),
}

/// Everything healthz runs, validated.
#[derive(Clone, Debug)]
pub struct Config {
    /// Where the HTTP server listens (port 0 picks one).
    pub listen: SocketAddr,
    /// Native DNS probes.
    pub probes: Vec<ProbeSpec>,
    /// How long one probe (or dnsmasq query) may take.
    pub probe_timeout: Duration,
    /// exechealthz commands.
    pub execs: Vec<ExecSpec>,
    /// Time between two runs of a command.
    pub exec_period: Duration,
    /// Maximum age of a result, and the time a command may run.
    pub latency: Duration,
    /// Log only failures.
    pub quiet: bool,
    /// Answer passing command urls with the command's output.
    pub output: bool,
    /// Path of the metrics page.
    pub metrics_path: String,
    /// Prefix of the sidecar's metric names.
    pub namespace: String,
    /// dnsmasq statistics polling, unless turned off.
    pub dnsmasq: Option<PollConfig>,
}

impl Config {
    /// Checks that the flags fit together and applies the defaults that depend on each other.
    pub fn from_args(args: Args) -> Result<Self, ConfigError> {
        for (flag, value) in [
            ("--probe-timeout", args.probe_timeout),
            ("--period", args.period),
            ("--latency", args.latency),
            (
                "--dnsmasq-poll-interval-ms",
                Duration::from_millis(args.dnsmasq_poll_interval_ms.max(1)),
            ),
        ] {
            if value.is_zero() {
                return Err(ConfigError::ZeroDuration(flag));
            }
            if value > MAX_INTERVAL {
                return Err(ConfigError::TooLong(flag));
            }
        }

        let urls = match (args.cmds.len(), args.urls.len()) {
            // exechealthz's defaults: one command answers on /healthz.
            (1, 0) => vec![HEALTHZ.to_owned()],
            (cmds, urls) if cmds != urls => return Err(ConfigError::CmdUrlMismatch { cmds, urls }),
            _ => args.urls,
        };
        let execs: Vec<ExecSpec> = args
            .cmds
            .into_iter()
            .zip(urls)
            .map(|(command, url)| ExecSpec { url, command })
            .collect();

        check_path("--prometheus-path", &args.prometheus_path)?;
        if args.prometheus_path == HEALTHZ {
            return Err(ConfigError::DuplicatePath(args.prometheus_path));
        }
        let mut labels = HashSet::new();
        let mut paths = HashSet::from([HEALTHZ.to_owned(), args.prometheus_path.clone()]);
        for spec in &args.probes {
            if !labels.insert(spec.label.clone()) {
                return Err(ConfigError::DuplicateLabel(spec.label.clone()));
            }
            let path = format!("/healthz-{}", spec.label);
            if !paths.insert(path.clone()) {
                return Err(ConfigError::DuplicatePath(path));
            }
        }
        for exec in &execs {
            check_path("--url", &exec.url)?;
            if !labels.insert(exec.label()) {
                return Err(ConfigError::DuplicateLabel(exec.label()));
            }
            if exec.url != HEALTHZ && !paths.insert(exec.url.clone()) {
                return Err(ConfigError::DuplicatePath(exec.url.clone()));
            }
        }

        let ns = &args.prometheus_namespace;
        let valid_ns = ns.is_empty()
            || (ns.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
                && !ns.starts_with(|c: char| c.is_ascii_digit()));
        if !valid_ns {
            return Err(ConfigError::Namespace(ns.clone()));
        }

        let default_port = if args.probes.is_empty() && !execs.is_empty() {
            EXECHEALTHZ_PORT
        } else {
            SIDECAR_PORT
        };
        let port = match (args.port, args.prometheus_port) {
            (Some(port), Some(prometheus_port)) if port != prometheus_port => {
                return Err(ConfigError::ConflictingPorts {
                    port,
                    prometheus_port,
                });
            }
            (Some(port), _) | (None, Some(port)) => port,
            (None, None) => default_port,
        };

        let dnsmasq = (args.dnsmasq_poll_interval_ms > 0).then(|| PollConfig {
            server: ServerAddr {
                host: args.dnsmasq_addr,
                port: args.dnsmasq_port,
            },
            interval: Duration::from_millis(args.dnsmasq_poll_interval_ms),
            timeout: args.probe_timeout,
        });

        Ok(Self {
            listen: SocketAddr::new(args.prometheus_addr, port),
            probes: args.probes,
            probe_timeout: args.probe_timeout,
            execs,
            exec_period: args.period,
            latency: args.latency,
            quiet: args.quiet,
            output: args.output,
            metrics_path: args.prometheus_path,
            namespace: args.prometheus_namespace,
            dnsmasq,
        })
    }

    /// How old a probe's result may be: `--latency`, but never less than two intervals plus the
    /// timeout, so that a slow schedule does not read as a dead server.
    pub fn max_age(&self, spec: &ProbeSpec) -> Duration {
        self.latency.max(
            spec.interval
                .saturating_mul(2)
                .saturating_add(self.probe_timeout),
        )
    }
}

fn check_path(flag: &'static str, path: &str) -> Result<(), ConfigError> {
    let invalid = |reason| ConfigError::InvalidPath {
        flag,
        path: path.to_owned(),
        reason,
    };
    if !path.starts_with('/') {
        return Err(invalid("must start with '/'"));
    }
    if path.contains(['?', '#']) || path.chars().any(char::is_whitespace) {
        return Err(invalid("must be a plain path"));
    }
    if path.starts_with(HEALTHCHECK_PREFIX) {
        return Err(invalid(
            "/healthcheck/ is reserved for the sidecar's endpoints",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Config, String> {
        let argv = std::iter::once("healthz")
            .chain(args.iter().copied())
            .map(String::from);
        let (argv, _) = kdns_daemon::normalize_args(argv, &[]);
        let args = Args::try_parse_from(argv).map_err(|e| e.to_string())?;
        Config::from_args(args).map_err(|e| e.to_string())
    }

    fn pairs(config: &Config) -> Vec<(&str, &str)> {
        config
            .execs
            .iter()
            .map(|e| (e.url.as_str(), e.command.as_str()))
            .collect()
    }

    #[test]
    fn the_sidecar_manifest_parses() {
        let config = parse(&[
            "--v=2",
            "--logtostderr",
            "--probe=kubedns,127.0.0.1:10053,kubernetes.default.svc.cluster.local,5,SRV",
            "--probe=dnsmasq,127.0.0.1:53,kubernetes.default.svc.cluster.local,5,SRV",
        ])
        .expect("valid");
        assert_eq!(
            config.listen,
            "0.0.0.0:10054".parse().expect("valid address")
        );
        assert_eq!(config.probes.len(), 2);
        assert!(config.execs.is_empty());
        assert_eq!(config.metrics_path, "/metrics");
        assert_eq!(config.namespace, "kubedns");
        let dnsmasq = config.dnsmasq.expect("polled by default");
        assert_eq!(dnsmasq.server.to_string(), "127.0.0.1:53");
        assert_eq!(dnsmasq.interval, Duration::from_secs(5));
    }

    #[test]
    fn the_exechealthz_manifest_parses() {
        let config = parse(&[
            "--cmd=nslookup kubernetes.default.svc.cluster.local 127.0.0.1 >/dev/null",
            "--url=/healthz-dnsmasq",
            "--cmd=nslookup kubernetes.default.svc.cluster.local 127.0.0.1:10053 >/dev/null",
            "--url=/healthz-kubedns",
            "--port=8080",
            "--quiet",
        ])
        .expect("valid");
        assert_eq!(config.listen.port(), 8080);
        assert!(config.quiet);
        assert_eq!(
            pairs(&config),
            [
                (
                    "/healthz-dnsmasq",
                    "nslookup kubernetes.default.svc.cluster.local 127.0.0.1 >/dev/null"
                ),
                (
                    "/healthz-kubedns",
                    "nslookup kubernetes.default.svc.cluster.local 127.0.0.1:10053 >/dev/null"
                ),
            ]
        );
    }

    #[test]
    fn exechealthz_pairs_match_by_position() {
        // flags, (url, command) pairs, port
        type Case<'a> = (&'a [&'a str], &'a [(&'a str, &'a str)], u16);
        let cases: &[Case<'_>] = &[
            (&[], &[], SIDECAR_PORT),
            // The oldest manifests: one command, no url, Go single-dash flags.
            (
                &["-cmd=nslookup x 127.0.0.1", "-port=8080"],
                &[("/healthz", "nslookup x 127.0.0.1")],
                8080,
            ),
            (
                &["--cmd", "true"],
                &[("/healthz", "true")],
                EXECHEALTHZ_PORT,
            ),
            (
                &["--cmd=a", "--url=/a", "--cmd=b", "--url=/b"],
                &[("/a", "a"), ("/b", "b")],
                EXECHEALTHZ_PORT,
            ),
            (
                &["--url=/a", "--cmd=a", "--url=/b", "--cmd=b"],
                &[("/a", "a"), ("/b", "b")],
                EXECHEALTHZ_PORT,
            ),
            (
                &["--cmd=a", "--url=/a", "--prometheus-port=9000"],
                &[("/a", "a")],
                9000,
            ),
            (
                &[
                    "--cmd=a",
                    "--url=/a",
                    "--port=9000",
                    "--prometheus-port=9000",
                ],
                &[("/a", "a")],
                9000,
            ),
            // Native probes next to commands: the sidecar's port.
            (
                &["--cmd=a", "--url=/a", "--probe=p,127.0.0.1,x"],
                &[("/a", "a")],
                SIDECAR_PORT,
            ),
        ];
        for (args, want, port) in cases {
            let config = parse(args).unwrap_or_else(|e| panic!("{args:?}: {e}"));
            assert_eq!(pairs(&config), *want, "{args:?}");
            assert_eq!(config.listen.port(), *port, "{args:?}");
        }

        // invalid
        let invalid: &[(&[&str], &str)] = &[
            (&["--cmd=a", "--cmd=b"], "2 --cmd but 0 --url"),
            (&["--cmd=a", "--cmd=b", "--url=/a"], "2 --cmd but 1 --url"),
            (&["--url=/a"], "0 --cmd but 1 --url"),
            (&["--cmd=a", "--url=a"], "must start with '/'"),
            (&["--cmd=a", "--url=/a?b"], "plain path"),
            (&["--cmd=a", "--url=/healthcheck/a"], "reserved"),
            (
                &["--cmd=a", "--url=/metrics"],
                "two endpoints would answer on \"/metrics\"",
            ),
            (
                &["--cmd=a", "--url=/x", "--cmd=b", "--url=/x"],
                "labelled \"x\"",
            ),
            (
                &["--cmd=a", "--url=/healthz-p", "--probe=p,127.0.0.1,x"],
                "labelled \"p\"",
            ),
            (
                &["--probe=p,127.0.0.1,x", "--probe=p,127.0.0.2,y"],
                "labelled \"p\"",
            ),
            (&["--port=1", "--prometheus-port=2"], "differ"),
            (&["--prometheus-path=metrics"], "must start with '/'"),
            (&["--prometheus-path=/healthz"], "two endpoints"),
            (
                &["--prometheus-namespace=kube-dns"],
                "invalid --prometheus-namespace",
            ),
            (
                &["--prometheus-namespace=1x"],
                "invalid --prometheus-namespace",
            ),
            (&["--period=0s"], "--period must be above zero"),
            (&["--latency=0"], "--latency must be above zero"),
            (
                &["--probe-timeout=25h"],
                "--probe-timeout must be at most 24h",
            ),
            (&["--dnsmasq-poll-interval-ms=86400001"], "at most 24h"),
            (&["--probe=kubedns,127.0.0.1:10053,x,5,MX"], "invalid type"),
            (&["--probe=kubedns"], "fields"),
            (&["--period=2"], "needs a unit"),
            (&["--port=http"], "invalid"),
            (&["--quiet", "yes"], "unexpected argument"),
            (&["--no-such-flag"], "unexpected argument"),
        ];
        for (args, want) in invalid {
            let error = parse(args).expect_err(&format!("{args:?} should be rejected"));
            assert!(error.contains(want), "{args:?}: {error}");
        }
    }

    #[test]
    fn go_style_boolean_flags_take_an_optional_value() {
        assert!(parse(&["--quiet=true"]).expect("valid").quiet);
        assert!(!parse(&["--quiet=false"]).expect("valid").quiet);
        assert!(parse(&["-output"]).expect("valid").output);
    }

    #[test]
    fn a_zero_poll_interval_turns_dnsmasq_polling_off() {
        let config = parse(&["--dnsmasq-poll-interval-ms=0"]).expect("valid");
        assert!(config.dnsmasq.is_none());
        let config = parse(&["--dnsmasq-addr=localhost", "--dnsmasq-port=5353"]).expect("valid");
        let dnsmasq = config.dnsmasq.expect("polled");
        assert_eq!(dnsmasq.server.to_string(), "localhost:5353");
    }

    #[test]
    fn a_probe_result_lives_at_least_two_intervals_plus_the_timeout() {
        let config =
            parse(&["--probe=p,127.0.0.1,x,60", "--probe=q,127.0.0.1,x,5"]).expect("valid");
        assert_eq!(config.max_age(&config.probes[0]), Duration::from_secs(122));
        assert_eq!(config.max_age(&config.probes[1]), Duration::from_secs(30));
    }
}
