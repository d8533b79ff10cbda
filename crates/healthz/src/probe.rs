//! Native DNS probes: the kube-dns sidecar's `--probe` syntax, and one probe exchange.
//!
//! `<label>,<server>[:port],<name>[,<interval>][,<type>][,<transport>]`
//!
//! - `label`: `[A-Za-z0-9_]+`; names the endpoints and metrics.
//! - `server`: an IP address or host name, with `:port` (IPv6 in brackets: `[::1]:53`); port 53
//!   when absent.
//! - `name`: the name to ask for; a trailing dot is added.
//! - `interval`: seconds (`5`, the sidecar's form) or a Go duration (`1500ms`); default 5 s.
//! - `type`: `A`, `AAAA`, `SRV` or `ANY`; default `ANY`, as the sidecar. The legacy kubedns
//!   refused ANY, which is why every manifest names a type.
//! - `transport`: `udp` (default) or `tcp`. This field is an extension; the sidecar only spoke
//!   UDP.
//!
//! An empty optional field takes its default, so `l,127.0.0.1,n,,,tcp` is valid.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;
use std::time::Duration;

use hickory_proto::op::Message;
use hickory_proto::rr::{Name, RecordType};
use kdns_daemon::parse_duration;
use tokio::time::Instant;

/// The sidecar's default probe interval.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(5);

/// The longest interval accepted: a check less often than daily checks nothing.
pub const MAX_INTERVAL: Duration = Duration::from_secs(24 * 3600);

/// The DNS port used when `server` names none.
pub const DEFAULT_PORT: u16 = 53;

/// How a probe reaches its server.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Transport {
    /// UDP, retried over TCP if the reply is truncated.
    #[default]
    Udp,
    /// TCP only.
    Tcp,
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Udp => "udp",
            Self::Tcp => "tcp",
        })
    }
}

/// A probe server's host: an address, or a name resolved before every probe.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Host {
    /// An IP address.
    Ip(IpAddr),
    /// A host name (`localhost`), resolved with the system resolver.
    Name(String),
}

impl FromStr for Host {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bare = s
            .strip_prefix('[')
            .and_then(|rest| rest.strip_suffix(']'))
            .unwrap_or(s);
        if let Ok(ip) = bare.parse::<IpAddr>() {
            return Ok(Self::Ip(ip));
        }
        let valid = !s.is_empty()
            && s.len() <= 253
            && s.split('.').all(|label| {
                !label.is_empty()
                    && label.len() <= 63
                    && label
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            });
        if valid {
            Ok(Self::Name(s.to_owned()))
        } else {
            Err(format!("{s:?} is neither an IP address nor a host name"))
        }
    }
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Ip(ip) => ip.fmt(f),
            Self::Name(name) => f.write_str(name),
        }
    }
}

/// Where a probe sends its query.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerAddr {
    /// Address or name.
    pub host: Host,
    /// UDP/TCP port.
    pub port: u16,
}

impl ServerAddr {
    /// An address that needs no resolving.
    pub fn from_socket_addr(addr: SocketAddr) -> Self {
        Self {
            host: Host::Ip(addr.ip()),
            port: addr.port(),
        }
    }

    /// The socket address to query: the IP itself, or the first address the name resolves to.
    pub async fn resolve(&self) -> Result<SocketAddr, String> {
        match &self.host {
            Host::Ip(ip) => Ok(SocketAddr::new(*ip, self.port)),
            Host::Name(name) => tokio::net::lookup_host((name.as_str(), self.port))
                .await
                .map_err(|e| format!("cannot resolve {name}: {e}"))?
                .next()
                .ok_or_else(|| format!("{name} resolves to no address")),
        }
    }
}

impl FromStr for ServerAddr {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Ok(addr) = s.parse::<SocketAddr>() {
            if addr.port() == 0 {
                return Err(format!("port 0 in {s:?} cannot be probed"));
            }
            return Ok(Self::from_socket_addr(addr));
        }
        // A bare IPv6 address has colons but no port.
        let bare = s
            .strip_prefix('[')
            .and_then(|rest| rest.strip_suffix(']'))
            .unwrap_or(s);
        if let Ok(ip) = bare.parse::<IpAddr>() {
            return Ok(Self {
                host: Host::Ip(ip),
                port: DEFAULT_PORT,
            });
        }
        let (host, port) = match s.rsplit_once(':') {
            Some((host, _)) if host.contains(':') => {
                return Err(format!(
                    "{s:?} is not host[:port] (IPv6 goes in brackets: [::1]:53)"
                ));
            }
            Some((host, port)) => {
                let port = port
                    .parse::<u16>()
                    .ok()
                    .filter(|p| *p != 0)
                    .ok_or_else(|| format!("invalid port {port:?} in {s:?}"))?;
                (host, port)
            }
            None => (s, DEFAULT_PORT),
        };
        if host.is_empty() {
            return Err(format!("{s:?} has no host"));
        }
        Ok(Self {
            host: host.parse()?,
            port,
        })
    }
}

impl fmt::Display for ServerAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.host {
            Host::Ip(IpAddr::V6(ip)) => write!(f, "[{ip}]:{}", self.port),
            host => write!(f, "{host}:{}", self.port),
        }
    }
}

/// One `--probe`: what to ask, whom, how often, and how.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProbeSpec {
    /// Names the probe's endpoints (`/healthz-<label>`, `/healthcheck/<label>`) and metrics.
    pub label: String,
    /// The server to query.
    pub server: ServerAddr,
    /// The name asked for, fully qualified.
    pub name: Name,
    /// Time between the starts of two probes.
    pub interval: Duration,
    /// The query type.
    pub qtype: RecordType,
    /// UDP or TCP.
    pub transport: Transport,
}

/// Why a `--probe` value was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProbeSpecError {
    /// Not 3 to 6 comma-separated fields.
    #[error(
        "expected <label>,<server>[:port],<name>[,<interval>][,<type>][,<udp|tcp>], got {given} fields"
    )]
    FieldCount {
        /// How many fields were given.
        given: usize,
    },
    /// The label is not `[A-Za-z0-9_]+`.
    #[error("invalid label {0:?}: only letters, digits and '_' are allowed")]
    Label(String),
    /// The server is not `host[:port]`.
    #[error("invalid server: {0}")]
    Server(String),
    /// The name is not a domain name.
    #[error("invalid name {name:?}: {reason}")]
    Name {
        /// The rejected name.
        name: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The interval is not a positive number of seconds or a Go duration.
    #[error(
        "invalid interval {0:?}: expected whole seconds (5) or a duration (1500ms), above zero"
    )]
    Interval(String),
    /// The type is not one the sidecar accepted.
    #[error("invalid type {0:?}: expected A, AAAA, SRV or ANY")]
    Type(String),
    /// Neither `udp` nor `tcp`.
    #[error("invalid transport {0:?}: expected udp or tcp")]
    Transport(String),
}

impl FromStr for ProbeSpec {
    type Err = ProbeSpecError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let fields: Vec<&str> = s.split(',').collect();
        if !(3..=6).contains(&fields.len()) {
            return Err(ProbeSpecError::FieldCount {
                given: fields.len(),
            });
        }
        let optional = |i: usize| fields.get(i).copied().filter(|f| !f.is_empty());

        let label = fields[0];
        if label.is_empty()
            || !label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_')
        {
            return Err(ProbeSpecError::Label(label.to_owned()));
        }
        let server = fields[1].parse().map_err(ProbeSpecError::Server)?;
        let name = parse_name(fields[2])?;
        let interval = optional(3).map_or(Ok(DEFAULT_INTERVAL), parse_interval)?;
        let qtype = optional(4).map_or(Ok(RecordType::ANY), parse_type)?;
        let transport = match optional(5).map(str::to_ascii_lowercase).as_deref() {
            None | Some("udp") => Transport::Udp,
            Some("tcp") => Transport::Tcp,
            Some(_) => return Err(ProbeSpecError::Transport(fields[5].to_owned())),
        };
        Ok(Self {
            label: label.to_owned(),
            server,
            name,
            interval,
            qtype,
            transport,
        })
    }
}

impl fmt::Display for ProbeSpec {
    /// The canonical `--probe` form, which parses back to the same spec.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let interval = self.interval;
        // The name's ASCII form: `Name`'s Display turns IDNA (`xn--`) labels into Unicode,
        // which does not parse back.
        write!(
            f,
            "{},{},{},",
            self.label,
            self.server,
            self.name.to_ascii()
        )?;
        if interval.subsec_nanos() == 0 {
            write!(f, "{}", interval.as_secs())?;
        } else if interval.subsec_nanos().is_multiple_of(1_000_000) {
            write!(f, "{}ms", interval.as_millis())?;
        } else {
            // Whole nanoseconds are what the parser keeps, so nothing is rounded away.
            write!(f, "{}ns", interval.as_nanos())?;
        }
        write!(f, ",{},{}", self.qtype, self.transport)
    }
}

fn parse_name(text: &str) -> Result<Name, ProbeSpecError> {
    let invalid = |reason: String| ProbeSpecError::Name {
        name: text.to_owned(),
        reason,
    };
    if text.is_empty() {
        return Err(invalid("empty".into()));
    }
    let mut name = Name::from_ascii(text).map_err(|e| invalid(e.to_string()))?;
    name.set_fqdn(true);
    Ok(name)
}

fn parse_interval(text: &str) -> Result<Duration, ProbeSpecError> {
    let parsed = match text.parse::<u64>() {
        Ok(seconds) => Ok(Duration::from_secs(seconds)),
        Err(_) => parse_duration(text),
    };
    parsed
        .ok()
        .filter(|d| !d.is_zero() && *d <= MAX_INTERVAL)
        .ok_or_else(|| ProbeSpecError::Interval(text.to_owned()))
}

fn parse_type(text: &str) -> Result<RecordType, ProbeSpecError> {
    match text.to_ascii_uppercase().as_str() {
        "A" => Ok(RecordType::A),
        "AAAA" => Ok(RecordType::AAAA),
        "SRV" => Ok(RecordType::SRV),
        "ANY" => Ok(RecordType::ANY),
        _ => Err(ProbeSpecError::Type(text.to_owned())),
    }
}

/// Sends one probe query and judges the reply.
///
/// It passes when a reply with the query's ID and question arrives within `timeout` and carries
/// at least one answer record, as the sidecar required; the rcode is not judged on its own. The
/// error says what went wrong.
pub async fn probe(spec: &ProbeSpec, timeout: Duration) -> Result<(), String> {
    let deadline = deadline(timeout);
    let server = tokio::time::timeout_at(deadline, spec.server.resolve())
        .await
        .map_err(|_| {
            format!(
                "resolving {} took longer than {timeout:?}",
                spec.server.host
            )
        })??;
    let query =
        kdns_net::query_message(&spec.name.to_ascii(), spec.qtype).map_err(|e| e.to_string())?;
    let remaining = deadline.saturating_duration_since(Instant::now());
    let reply = match spec.transport {
        Transport::Udp => kdns_net::exchange(server, &query, remaining).await,
        Transport::Tcp => kdns_net::exchange_tcp(server, &query, remaining).await,
    }
    .map_err(|e| format!("{} query to {server}: {e}", spec.transport))?;
    judge(spec, &reply)
}

/// `timeout` from now, or a year if that overflows the clock.
pub(crate) fn deadline(timeout: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(timeout)
        .unwrap_or_else(|| now + Duration::from_secs(365 * 24 * 3600))
}

fn judge(spec: &ProbeSpec, reply: &Message) -> Result<(), String> {
    if reply.answers.is_empty() {
        return Err(format!(
            "no answer records for {} {} (rcode {})",
            spec.name, spec.qtype, reply.metadata.response_code
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(
        label: &str,
        server: &str,
        name: &str,
        interval: u64,
        qtype: RecordType,
        transport: Transport,
    ) -> ProbeSpec {
        ProbeSpec {
            label: label.into(),
            server: server.parse().expect("valid server in test table"),
            name: Name::from_ascii(name).expect("valid name in test table"),
            interval: Duration::from_secs(interval),
            qtype,
            transport,
        }
    }

    #[test]
    fn probe_specs_parse_as_the_sidecar_parsed_them() {
        use RecordType::{A, AAAA, ANY, SRV};
        use Transport::{Tcp, Udp};
        let k8s = "kubernetes.default.svc.cluster.local.";
        let cases = [
            (
                "kubedns,127.0.0.1:10053,kubernetes.default.svc.cluster.local,5,SRV",
                spec("kubedns", "127.0.0.1:10053", k8s, 5, SRV, Udp),
            ),
            (
                "dnsmasq,127.0.0.1:53,kubernetes.default.svc.cluster.local,5,SRV",
                spec("dnsmasq", "127.0.0.1:53", k8s, 5, SRV, Udp),
            ),
            // 1.14.x manifests probed A.
            (
                "kubedns,127.0.0.1:10053,kubernetes.default.svc.cluster.local,5,A",
                spec("kubedns", "127.0.0.1:10053", k8s, 5, A, Udp),
            ),
            // Port 53, interval 5 and type ANY by default; a trailing dot is added.
            (
                "a_1,127.0.0.1,example.com",
                spec("a_1", "127.0.0.1:53", "example.com.", 5, ANY, Udp),
            ),
            (
                "x,10.0.0.1,example.com.,10",
                spec("x", "10.0.0.1:53", "example.com.", 10, ANY, Udp),
            ),
            (
                "x,[::1]:5353,example.com,1,AAAA",
                spec("x", "[::1]:5353", "example.com.", 1, AAAA, Udp),
            ),
            (
                "x,::1,example.com,1,aaaa",
                spec("x", "[::1]:53", "example.com.", 1, AAAA, Udp),
            ),
            (
                "x,[::1],example.com",
                spec("x", "[::1]:53", "example.com.", 5, ANY, Udp),
            ),
            (
                "x,localhost:10053,example.com,5,SRV,tcp",
                spec("x", "localhost:10053", "example.com.", 5, SRV, Tcp),
            ),
            (
                "x,127.0.0.1,example.com,,,TCP",
                spec("x", "127.0.0.1:53", "example.com.", 5, ANY, Tcp),
            ),
            (
                "x,127.0.0.1,example.com,5,srv,udp",
                spec("x", "127.0.0.1:53", "example.com.", 5, SRV, Udp),
            ),
        ];
        for (input, want) in cases {
            assert_eq!(input.parse::<ProbeSpec>(), Ok(want), "{input}");
        }
        let with_duration: ProbeSpec = "x,127.0.0.1,example.com,1500ms".parse().expect("valid");
        assert_eq!(with_duration.interval, Duration::from_millis(1500));

        // invalid
        let invalid = [
            "",
            "kubedns",
            "kubedns,127.0.0.1:10053",
            "a,b,c,5,A,udp,extra",
            ",127.0.0.1,example.com",
            "kube-dns,127.0.0.1,example.com",
            "kube dns,127.0.0.1,example.com",
            "x,,example.com",
            "x,127.0.0.1:,example.com",
            "x,:53,example.com",
            "x,127.0.0.1:0,example.com",
            "x,127.0.0.1:65536,example.com",
            "x,127.0.0.1:dns,example.com",
            "x,::1:53:,example.com",
            "x,bad host,example.com",
            "x,127.0.0.1,",
            "x,127.0.0.1,a..b",
            &format!("x,127.0.0.1,{}.com", "a".repeat(64)),
            "x,127.0.0.1,example.com,0",
            "x,127.0.0.1,example.com,-5",
            "x,127.0.0.1,example.com,five",
            "x,127.0.0.1,example.com,0s",
            "x,127.0.0.1,example.com,86401",
            "x,127.0.0.1,example.com,18446744073709551615",
            "x,127.0.0.1,example.com,5,MX",
            "x,127.0.0.1,example.com,5,TXT",
            "x,127.0.0.1,example.com,5,A,quic",
        ];
        for input in invalid {
            assert!(
                input.parse::<ProbeSpec>().is_err(),
                "{input:?} should be rejected"
            );
        }
    }

    #[test]
    fn errors_name_the_field_that_is_wrong() {
        let cases = [
            ("x,127.0.0.1,example.com,5,MX", "invalid type \"MX\""),
            ("x-y,127.0.0.1,example.com", "invalid label \"x-y\""),
            ("x,127.0.0.1:abc,example.com", "invalid port \"abc\""),
            ("x,127.0.0.1", "got 2 fields"),
            ("x,127.0.0.1,e.com,0", "invalid interval \"0\""),
        ];
        for (input, want) in cases {
            let error = input.parse::<ProbeSpec>().expect_err("invalid").to_string();
            assert!(error.contains(want), "{input}: {error}");
        }
    }

    #[test]
    fn a_spec_displays_in_a_form_that_parses_back_to_itself() {
        for input in [
            "kubedns,127.0.0.1:10053,kubernetes.default.svc.cluster.local,5,SRV",
            "x,[::1]:53,example.com,1500ms,A,tcp",
            "x,localhost,example.com",
        ] {
            let spec: ProbeSpec = input.parse().expect("valid");
            let again: ProbeSpec = spec.to_string().parse().expect("display parses");
            assert_eq!(again, spec, "{input} -> {spec}");
        }
        let spec: ProbeSpec = "x,::1,example.com".parse().expect("valid");
        assert_eq!(spec.to_string(), "x,[::1]:53,example.com.,5,ANY,udp");
    }

    #[test]
    fn idna_names_and_sub_millisecond_intervals_display_in_a_form_that_parses_back() {
        // Found by fuzzing (healthz_probe): the first displayed its name in Unicode, the
        // others an interval cut to whole milliseconds ("0ms", which is refused).
        for (input, shown) in [
            (
                "dmaq,s127asq,1s27.0.0.1127.xn--h1ubRV",
                "dmaq,s127asq:53,1s27.0.0.1127.xn--h1ubRV.,5,ANY,udp",
            ),
            (
                "x,127.0.0.1,xn--bcher-kva.example,1us",
                "x,127.0.0.1:53,xn--bcher-kva.example.,1000ns,ANY,udp",
            ),
            (
                "x,127.0.0.1,n,1500us",
                "x,127.0.0.1:53,n.,1500000ns,ANY,udp",
            ),
            ("x,127.0.0.1,n,2.5s", "x,127.0.0.1:53,n.,2500ms,ANY,udp"),
        ] {
            let spec: ProbeSpec = input.parse().expect("valid");
            assert_eq!(spec.to_string(), shown);
            let again: ProbeSpec = shown.parse().expect("display parses");
            assert_eq!(again, spec, "{input} -> {shown}");
        }
    }

    #[test]
    fn an_empty_answer_fails_whatever_the_rcode() {
        let spec: ProbeSpec = "x,127.0.0.1,example.com,5,A".parse().expect("valid");
        let query = kdns_net::query_message("example.com.", RecordType::A).expect("valid");
        let reply = query.into_response();
        let error = judge(&spec, &reply).expect_err("no answers");
        assert!(
            error.contains("no answer records for example.com. A (rcode No Error)"),
            "{error}"
        );
    }
}
