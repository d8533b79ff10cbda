//! Nameserver addresses: `ip[:port]` for upstreams and flags, and stub-domain servers that may
//! also be host names.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::str::FromStr;

use crate::error::NameserverError;
use crate::names::normalize_domain;

/// The port a nameserver gets when none is given.
pub const DNS_PORT: u16 = 53;

/// A stub-domain server: an address, or a host name the caller resolves.
///
/// Host names stay unresolved here because how to resolve them depends on the caller
/// (dnsmasq-rs sends names inside the cluster domain to kubedns).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Nameserver {
    /// An IP address and port.
    Addr(SocketAddr),
    /// A DNS-1123 host name (lowercase, no trailing dot) and port.
    Host {
        /// The host name.
        name: String,
        /// The port to send queries to.
        port: u16,
    },
}

impl Nameserver {
    /// The port queries go to.
    pub fn port(&self) -> u16 {
        match self {
            Nameserver::Addr(addr) => addr.port(),
            Nameserver::Host { port, .. } => *port,
        }
    }
}

/// The canonical text, always with the port: `1.2.3.4:53`, `[2001:db8::1]:53`, `ns.local:5353`.
impl fmt::Display for Nameserver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Nameserver::Addr(addr) => addr.fmt(f),
            Nameserver::Host { name, port } => write!(f, "{name}:{port}"),
        }
    }
}

/// Accepts what [`parse_nameserver`] accepts, and also `host` and `host:port` where `host` is a
/// DNS-1123 subdomain (a trailing dot is accepted and stripped) whose last label is not all
/// digits (so a mistyped IPv4 address such as `1.2.3.256` is not taken for a name).
impl FromStr for Nameserver {
    type Err = NameserverError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = |reason| NameserverError {
            value: s.to_owned(),
            reason,
        };
        if s.starts_with('[') || s.parse::<IpAddr>().is_ok() {
            return parse_nameserver(s).map(Nameserver::Addr);
        }
        let (host, port) = match s.rsplit_once(':') {
            Some((host, port)) => (host, parse_port(port).map_err(err)?),
            None => (s, DNS_PORT),
        };
        if host.contains(':') {
            return Err(err(IPV6_WITH_PORT));
        }
        if let Ok(ip) = host.parse::<Ipv4Addr>() {
            return Ok(Nameserver::Addr(SocketAddr::new(ip.into(), port)));
        }
        let name = normalize_domain(host)
            .map_err(|_| err("neither an IP address nor a DNS-1123 host name"))?;
        let last = name.rsplit('.').next().unwrap_or(name);
        if last.bytes().all(|b| b.is_ascii_digit()) {
            return Err(err(
                "not an IP address, and not a host name (numeric last label)",
            ));
        }
        Ok(Nameserver::Host {
            name: name.to_owned(),
            port,
        })
    }
}

const IPV6_WITH_PORT: &str = "an IPv6 address with a port must be written [address]:port";

/// Parses one nameserver address: `IPv4`, `IPv4:port`, `IPv6`, `[IPv6]` or `[IPv6]:port`. The port
/// defaults to 53 and must not be 0.
///
/// A bare IPv6 address is never split into address and port: `2001:db8::1:53` is the address
/// `2001:db8::1:53` on port 53.
pub fn parse_nameserver(s: &str) -> Result<SocketAddr, NameserverError> {
    let err = |reason| NameserverError {
        value: s.to_owned(),
        reason,
    };
    if s.is_empty() {
        return Err(err("empty"));
    }
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Ok(SocketAddr::new(ip, DNS_PORT));
    }
    if let Some(rest) = s.strip_prefix('[') {
        let (inner, after) = rest.split_once(']').ok_or_else(|| err("missing ']'"))?;
        let ip: Ipv6Addr = inner
            .parse()
            .map_err(|_| err("not an IPv6 address inside [ ]"))?;
        let port = match after {
            "" => DNS_PORT,
            _ => {
                let port = after
                    .strip_prefix(':')
                    .ok_or_else(|| err("expected ':port' after ']'"))?;
                parse_port(port).map_err(err)?
            }
        };
        return Ok(SocketAddr::new(ip.into(), port));
    }
    let Some((host, port)) = s.rsplit_once(':') else {
        return Err(err("not an IP address"));
    };
    if host.contains(':') {
        return Err(err(IPV6_WITH_PORT));
    }
    let ip: Ipv4Addr = host.parse().map_err(|_| err("not an IP address"))?;
    Ok(SocketAddr::new(ip.into(), parse_port(port).map_err(err)?))
}

/// Parses the comma-separated flag form, `1.2.3.4,5.6.7.8:5353`. Blanks around entries are
/// ignored; an empty or blank string is an empty list, but an empty entry in a list is an error.
pub fn parse_nameserver_list(s: &str) -> Result<Vec<SocketAddr>, NameserverError> {
    if s.trim().is_empty() {
        return Ok(Vec::new());
    }
    s.split(',')
        .map(|entry| parse_nameserver(entry.trim()))
        .collect()
}

fn parse_port(s: &str) -> Result<u16, &'static str> {
    if s.is_empty() {
        return Err("empty port");
    }
    // `u16::from_str` would also take a leading '+'.
    if !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err("port is not a number");
    }
    match s.parse::<u16>() {
        Ok(0) => Err("port 0 is not allowed"),
        Ok(port) => Ok(port),
        Err(_) => Err("port out of range"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().expect("test address")
    }

    #[test]
    fn nameservers_accept_ip_and_ip_port_with_port_53_by_default() {
        for (input, want) in [
            ("1.2.3.4", "1.2.3.4:53"),
            ("1.2.3.4:5353", "1.2.3.4:5353"),
            ("::1", "[::1]:53"),
            ("2001:db8::1", "[2001:db8::1]:53"),
            ("[2001:db8::1]", "[2001:db8::1]:53"),
            ("[2001:db8::1]:5353", "[2001:db8::1]:5353"),
            ("2001:db8::1:53", "[2001:db8::1:53]:53"),
            ("8.8.8.8:65535", "8.8.8.8:65535"),
        ] {
            assert_eq!(parse_nameserver(input), Ok(addr(want)), "{input}");
        }
        // invalid
        for input in [
            "",
            "1.2.3",
            "1.2.3.256",
            "01.2.3.4",
            "1.2.3.4:",
            "1.2.3.4:0",
            "1.2.3.4:+53",
            "1.2.3.4:65536",
            "1.2.3.4:dns",
            "[2001:db8::1",
            "[2001:db8::1]53",
            "[1.2.3.4]:53",
            "[fe80::1%eth0]:53",
            "dns.google",
            "dns.google:53",
            " 1.2.3.4",
        ] {
            let err = parse_nameserver(input).expect_err(input);
            assert_eq!(err.value, input);
        }
    }

    #[test]
    fn the_flag_form_is_a_comma_separated_list() {
        assert_eq!(
            parse_nameserver_list("1.2.3.4,5.6.7.8:5353"),
            Ok(vec![addr("1.2.3.4:53"), addr("5.6.7.8:5353")])
        );
        assert_eq!(
            parse_nameserver_list(" 1.2.3.4 , [::1]:54 "),
            Ok(vec![addr("1.2.3.4:53"), addr("[::1]:54")])
        );
        assert_eq!(parse_nameserver_list(""), Ok(vec![]));
        assert_eq!(parse_nameserver_list("  "), Ok(vec![]));
        // invalid
        for input in [
            "1.2.3.4,",
            ",1.2.3.4",
            "1.2.3.4,,5.6.7.8",
            "1.2.3.4;5.6.7.8",
            "x",
        ] {
            assert!(parse_nameserver_list(input).is_err(), "{input}");
        }
    }

    #[test]
    fn stub_servers_may_be_host_names_kept_unresolved() {
        let host = |name: &str, port| Nameserver::Host {
            name: name.to_owned(),
            port,
        };
        for (input, want) in [
            ("1.2.3.4", Nameserver::Addr(addr("1.2.3.4:53"))),
            ("1.2.3.4:54", Nameserver::Addr(addr("1.2.3.4:54"))),
            ("[::1]:54", Nameserver::Addr(addr("[::1]:54"))),
            ("::1", Nameserver::Addr(addr("[::1]:53"))),
            ("ns.acme.local", host("ns.acme.local", 53)),
            ("ns.acme.local.", host("ns.acme.local", 53)),
            ("ns.acme.local:5353", host("ns.acme.local", 5353)),
            ("dns", host("dns", 53)),
            (
                "kube-dns.kube-system.svc.cluster.local:53",
                host("kube-dns.kube-system.svc.cluster.local", 53),
            ),
        ] {
            assert_eq!(input.parse::<Nameserver>(), Ok(want), "{input}");
        }
        // invalid
        for input in [
            "",
            "NS.acme.local",
            "ns_1.acme.local",
            "ns..acme",
            "ns.acme.local:0",
            "ns.acme.local:x",
            "ns.acme.local:",
            "1.2.3.256",
            "1.2.3",
            "ns.10",
            "2001:db8::zz:53",
            "[::1]:x",
            "ns.acme.local.:53:53",
            "http://ns.acme.local",
        ] {
            let err = input.parse::<Nameserver>().expect_err(input);
            assert_eq!(err.value, input);
        }
    }

    #[test]
    fn nameservers_display_canonically_with_the_port() {
        for (input, want) in [
            ("1.2.3.4", "1.2.3.4:53"),
            ("[2001:db8::1]", "[2001:db8::1]:53"),
            ("ns.acme.local.", "ns.acme.local:53"),
            ("ns.acme.local:5353", "ns.acme.local:5353"),
        ] {
            let ns: Nameserver = input.parse().expect("valid");
            assert_eq!(ns.to_string(), want);
            // The canonical text parses back to the same value.
            assert_eq!(want.parse::<Nameserver>(), Ok(ns));
        }
    }
}
