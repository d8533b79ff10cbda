//! The keys of the `kube-system/kube-dns` ConfigMap.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;

use tracing::debug;

use crate::error::ConfigError;
use crate::names::{check_label, normalize_domain};
use crate::nameserver::{Nameserver, parse_nameserver};

/// The key holding a JSON array of upstream nameservers.
pub const UPSTREAM_NAMESERVERS_KEY: &str = "upstreamNameservers";
/// The key holding a JSON object of stub domains to their servers.
pub const STUB_DOMAINS_KEY: &str = "stubDomains";
/// The key holding `name=domain[,name=domain]` federations.
pub const FEDERATIONS_KEY: &str = "federations";
/// The most upstream nameservers kube-dns accepts.
pub const MAX_UPSTREAM_NAMESERVERS: usize = 3;

/// The validated ConfigMap. [`Default`] is what a missing or empty ConfigMap means: forward to
/// the nameservers of `resolv.conf`, no stub domains.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DnsConfig {
    /// Replaces the `resolv.conf` nameservers for names outside the cluster and stub domains.
    pub upstream_nameservers: Vec<SocketAddr>,
    /// Domains forwarded to their own servers, sorted by domain.
    pub stub_domains: Vec<StubDomain>,
    /// `(name, domain)` pairs, sorted by name. Validated as kube-dns did, otherwise unused.
    pub federations: Vec<(String, String)>,
}

/// A domain whose queries go to its own servers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StubDomain {
    /// Lowercase, without a trailing dot.
    pub domain: String,
    /// In the order given; may be empty, as kube-dns allowed.
    pub servers: Vec<Nameserver>,
}

/// `domain=server,server`, for logs.
impl fmt::Display for StubDomain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}=", self.domain)?;
        for (i, server) in self.servers.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            server.fmt(f)?;
        }
        Ok(())
    }
}

impl DnsConfig {
    /// Parses and validates the ConfigMap's data, key to value. Every key is optional and
    /// unknown keys are ignored; a key that does not parse or validate makes the whole
    /// configuration invalid.
    pub fn from_files(files: &BTreeMap<String, String>) -> Result<DnsConfig, ConfigError> {
        let mut config = DnsConfig::default();
        for (key, value) in files {
            match key.as_str() {
                UPSTREAM_NAMESERVERS_KEY => {
                    config.upstream_nameservers = parse_upstream_nameservers(value)?;
                }
                STUB_DOMAINS_KEY => config.stub_domains = parse_stub_domains(value)?,
                FEDERATIONS_KEY => config.federations = parse_federations(value)?,
                _ => debug!(key = %key, "ignoring unknown ConfigMap key"),
            }
        }
        Ok(config)
    }
}

fn parse_upstream_nameservers(value: &str) -> Result<Vec<SocketAddr>, ConfigError> {
    const KEY: &str = UPSTREAM_NAMESERVERS_KEY;
    let servers: Vec<String> = serde_json::from_str(value)
        .map_err(|error| ConfigError::InvalidJson { key: KEY, error })?;
    if servers.len() > MAX_UPSTREAM_NAMESERVERS {
        return Err(ConfigError::TooManyUpstreams {
            count: servers.len(),
        });
    }
    servers
        .iter()
        .map(|s| parse_nameserver(s).map_err(|e| ConfigError::nameserver(KEY, e)))
        .collect()
}

fn parse_stub_domains(value: &str) -> Result<Vec<StubDomain>, ConfigError> {
    const KEY: &str = STUB_DOMAINS_KEY;
    let stubs: BTreeMap<String, Vec<String>> = serde_json::from_str(value)
        .map_err(|error| ConfigError::InvalidJson { key: KEY, error })?;
    let mut out: BTreeMap<String, StubDomain> = BTreeMap::new();
    for (domain, servers) in stubs {
        let normalized =
            normalize_domain(&domain).map_err(|reason| ConfigError::InvalidDomain {
                key: KEY,
                value: domain.clone(),
                reason,
            })?;
        let servers = servers
            .iter()
            .map(|s| s.parse().map_err(|e| ConfigError::nameserver(KEY, e)))
            .collect::<Result<Vec<Nameserver>, _>>()?;
        if out.contains_key(normalized) {
            return Err(ConfigError::DuplicateDomain {
                key: KEY,
                value: normalized.to_owned(),
            });
        }
        out.insert(
            normalized.to_owned(),
            StubDomain {
                domain: normalized.to_owned(),
                servers,
            },
        );
    }
    Ok(out.into_values().collect())
}

/// Parses `federations`: `name=domain[,name=domain]`, where `name` is a DNS-1123 label and
/// `domain` a DNS-1123 subdomain (a trailing dot is stripped). Blanks around entries are
/// ignored and a blank value means none. Returns the pairs sorted by name; a name given twice is
/// an error.
pub fn parse_federations(value: &str) -> Result<Vec<(String, String)>, ConfigError> {
    let mut out = BTreeMap::new();
    if value.trim().is_empty() {
        return Ok(Vec::new());
    }
    for entry in value.split(',') {
        let entry = entry.trim();
        let invalid = |reason| ConfigError::InvalidFederation {
            value: entry.to_owned(),
            reason,
        };
        let Some((name, domain)) = entry.split_once('=') else {
            return Err(invalid("expected name=domain"));
        };
        check_label(name).map_err(|_| invalid("the name is not a DNS-1123 label"))?;
        let domain = normalize_domain(domain)
            .map_err(|_| invalid("the domain is not a DNS-1123 subdomain"))?;
        if out.insert(name.to_owned(), domain.to_owned()).is_some() {
            return Err(invalid("name given more than once"));
        }
    }
    Ok(out.into_iter().collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn parse(key: &str, value: &str) -> Result<DnsConfig, ConfigError> {
        DnsConfig::from_files(&files(&[(key, value)]))
    }

    fn addr(s: &str) -> SocketAddr {
        s.parse().expect("test address")
    }

    fn host(name: &str, port: u16) -> Nameserver {
        Nameserver::Host {
            name: name.to_owned(),
            port,
        }
    }

    #[test]
    fn no_keys_is_the_default_config() {
        assert_eq!(
            DnsConfig::from_files(&BTreeMap::new()).ok(),
            Some(DnsConfig::default())
        );
    }

    #[test]
    fn unknown_keys_are_ignored() {
        let config = DnsConfig::from_files(&files(&[
            ("Corefile", ".:53 { forward . /etc/resolv.conf }"),
            ("upstreamNameservers", r#"["1.1.1.1"]"#),
        ]));
        assert_eq!(
            config.ok().map(|c| c.upstream_nameservers),
            Some(vec![addr("1.1.1.1:53")])
        );
    }

    #[test]
    fn upstream_nameservers_are_a_json_array_of_at_most_three_addresses() {
        for (value, want) in [
            ("[]", vec![]),
            (r#"["8.8.8.8"]"#, vec!["8.8.8.8:53"]),
            (
                "[\"8.8.8.8\", \"8.8.4.4:5353\", \"[2001:db8::1]:54\"]\n",
                vec!["8.8.8.8:53", "8.8.4.4:5353", "[2001:db8::1]:54"],
            ),
            (r#"["2001:db8::1"]"#, vec!["[2001:db8::1]:53"]),
        ] {
            let want: Vec<SocketAddr> = want.into_iter().map(addr).collect();
            let got = parse(UPSTREAM_NAMESERVERS_KEY, value).map(|c| c.upstream_nameservers);
            assert_eq!(got.ok(), Some(want), "{value}");
        }
        // invalid
        for value in [
            "",
            "8.8.8.8",
            r#"{"a": "8.8.8.8"}"#,
            "[8]",
            r#"["8.8.8.8""#,
            "null",
        ] {
            let err = parse(UPSTREAM_NAMESERVERS_KEY, value).expect_err(value);
            assert!(
                matches!(
                    err,
                    ConfigError::InvalidJson {
                        key: UPSTREAM_NAMESERVERS_KEY,
                        ..
                    }
                ),
                "{value}: {err}"
            );
        }
        for value in [
            r#"["dns.google"]"#,
            r#"["8.8.8.8:0"]"#,
            r#"["8.8.8.8", ""]"#,
        ] {
            let err = parse(UPSTREAM_NAMESERVERS_KEY, value).expect_err(value);
            assert!(
                matches!(
                    err,
                    ConfigError::InvalidNameserver {
                        key: UPSTREAM_NAMESERVERS_KEY,
                        ..
                    }
                ),
                "{value}: {err}"
            );
        }
        let err = parse(
            UPSTREAM_NAMESERVERS_KEY,
            r#"["1.1.1.1","1.1.1.2","1.1.1.3","1.1.1.4"]"#,
        )
        .expect_err("four upstreams");
        assert!(
            matches!(err, ConfigError::TooManyUpstreams { count: 4 }),
            "{err}"
        );
    }

    #[test]
    fn stub_domains_map_domains_to_addresses_or_host_names_sorted_by_domain() {
        let value = r#"{
            "zeta.local.": ["10.0.0.1", "10.0.0.2:5353"],
            "acme.local": ["ns.acme.local", "[2001:db8::1]:54", "dns.kube-system.svc.cluster.local:53"],
            "empty.local": []
        }"#;
        let got = parse(STUB_DOMAINS_KEY, value).map(|c| c.stub_domains);
        let want = vec![
            StubDomain {
                domain: "acme.local".into(),
                servers: vec![
                    host("ns.acme.local", 53),
                    Nameserver::Addr(addr("[2001:db8::1]:54")),
                    host("dns.kube-system.svc.cluster.local", 53),
                ],
            },
            StubDomain {
                domain: "empty.local".into(),
                servers: vec![],
            },
            StubDomain {
                domain: "zeta.local".into(),
                servers: vec![
                    Nameserver::Addr(addr("10.0.0.1:53")),
                    Nameserver::Addr(addr("10.0.0.2:5353")),
                ],
            },
        ];
        assert_eq!(got.ok(), Some(want));
        assert_eq!(
            parse(STUB_DOMAINS_KEY, "{}").ok(),
            Some(DnsConfig::default())
        );

        // invalid
        for value in [
            "",
            "[]",
            r#"{"acme.local": "1.2.3.4"}"#,
            r#"{"acme.local": [1]}"#,
        ] {
            let err = parse(STUB_DOMAINS_KEY, value).expect_err(value);
            assert!(
                matches!(
                    err,
                    ConfigError::InvalidJson {
                        key: STUB_DOMAINS_KEY,
                        ..
                    }
                ),
                "{value}: {err}"
            );
        }
        for value in [
            r#"{"Acme.local": ["1.2.3.4"]}"#,
            r#"{"acme..local": ["1.2.3.4"]}"#,
            r#"{"": ["1.2.3.4"]}"#,
            r#"{".": ["1.2.3.4"]}"#,
            r#"{"acme_local": ["1.2.3.4"]}"#,
        ] {
            let err = parse(STUB_DOMAINS_KEY, value).expect_err(value);
            assert!(
                matches!(
                    err,
                    ConfigError::InvalidDomain {
                        key: STUB_DOMAINS_KEY,
                        ..
                    }
                ),
                "{value}: {err}"
            );
        }
        for value in [
            r#"{"acme.local": ["1.2.3.4:0"]}"#,
            r#"{"acme.local": ["NS.acme.local"]}"#,
            r#"{"acme.local": ["1.2.3.256"]}"#,
            r#"{"acme.local": [""]}"#,
        ] {
            let err = parse(STUB_DOMAINS_KEY, value).expect_err(value);
            assert!(
                matches!(
                    err,
                    ConfigError::InvalidNameserver {
                        key: STUB_DOMAINS_KEY,
                        ..
                    }
                ),
                "{value}: {err}"
            );
        }
        let err = parse(
            STUB_DOMAINS_KEY,
            r#"{"acme.local": ["1.2.3.4"], "acme.local.": []}"#,
        )
        .expect_err("duplicate");
        assert!(matches!(err, ConfigError::DuplicateDomain { .. }), "{err}");
    }

    #[test]
    fn federations_are_name_equals_domain_pairs() {
        let pair = |n: &str, d: &str| (n.to_owned(), d.to_owned());
        for (value, want) in [
            ("myfed=example.com", vec![pair("myfed", "example.com")]),
            (
                "b=b.example.com, a=a.example.com.\n",
                vec![pair("a", "a.example.com"), pair("b", "b.example.com")],
            ),
            ("", vec![]),
        ] {
            assert_eq!(
                parse(FEDERATIONS_KEY, value).ok().map(|c| c.federations),
                Some(want)
            );
        }
        // invalid
        for value in [
            "myfed",
            "myfed=",
            "=example.com",
            "my.fed=example.com",
            "MyFed=example.com",
            "myfed=example..com",
            "myfed=example.com=x",
            "a=example.com,",
            "a=example.com,a=example.org",
            r#"{"myfed": "example.com"}"#,
        ] {
            let err = parse(FEDERATIONS_KEY, value).expect_err(value);
            assert!(
                matches!(err, ConfigError::InvalidFederation { .. }),
                "{value}: {err}"
            );
        }
    }

    #[test]
    fn one_invalid_key_makes_the_whole_config_invalid() {
        let err = DnsConfig::from_files(&files(&[
            (UPSTREAM_NAMESERVERS_KEY, r#"["8.8.8.8"]"#),
            (STUB_DOMAINS_KEY, r#"{"acme.local": ["not an address"]}"#),
        ]))
        .expect_err("invalid stub domain");
        assert_eq!(
            err.to_string(),
            r#"stubDomains: invalid nameserver "not an address": neither an IP address nor a DNS-1123 host name"#
        );
    }

    #[test]
    fn stub_domains_display_as_domain_equals_servers() {
        let stub = StubDomain {
            domain: "acme.local".into(),
            servers: vec![
                Nameserver::Addr(addr("1.2.3.4:53")),
                host("ns.acme.local", 5353),
            ],
        };
        assert_eq!(stub.to_string(), "acme.local=1.2.3.4:53,ns.acme.local:5353");
    }
}
