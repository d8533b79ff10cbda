//! Answers from `/etc/hosts` and `--addn-hosts` files, as dnsmasq gives them: A and AAAA for the
//! names, PTR for the addresses, TTL 0, authoritative.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use foldhash::quality::RandomState;
use hickory_proto::rr::rdata::{A, AAAA, PTR};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use kdns_net::MAX_WIRE_NAME;
use tracing::{debug, warn};

use crate::cache::push_wire_name;

/// The TTL of local answers (dnsmasq's `--local-ttl` default).
const LOCAL_TTL: u32 = 0;

/// Names and addresses read from hosts files.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Hosts {
    /// Lowercase name → addresses, in file order.
    by_name: HashMap<Name, Vec<IpAddr>>,
    /// Reverse name (`4.3.2.1.in-addr.arpa.`) → names, in file order.
    by_addr: HashMap<Name, Vec<Name>>,
    /// Every key of both maps, lowercase in wire form, for [`Hosts::mentions_wire`].
    wire_names: HashSet<Box<[u8]>, RandomState>,
}

/// What the hosts files say about a question.
#[derive(Debug, PartialEq, Eq)]
pub enum HostsAnswer {
    /// These records (never empty).
    Records(Vec<Record>),
    /// The hosts files know nothing about the name.
    Unknown,
}

impl Hosts {
    /// Reads the files in order; a missing or unreadable file is logged and skipped.
    pub fn read(paths: &[PathBuf]) -> Self {
        let mut hosts = Self::default();
        for path in paths {
            match std::fs::read(path) {
                Ok(bytes) => hosts.add(&String::from_utf8_lossy(&bytes), path),
                Err(error) => {
                    warn!(path = %path.display(), %error, "cannot read hosts file; skipping")
                }
            }
        }
        hosts
    }

    /// Parses hosts-file text: `address name [alias...]` per line, `#` comments.
    pub fn parse(text: &str) -> Self {
        let mut hosts = Self::default();
        hosts.add(text, Path::new("-"));
        hosts
    }

    fn add(&mut self, text: &str, path: &Path) {
        for line in text.lines() {
            let line = line.split('#').next().unwrap_or_default();
            let mut words = line.split_whitespace();
            let Some(addr) = words.next() else {
                continue;
            };
            let Ok(ip) = addr.split('%').next().unwrap_or_default().parse::<IpAddr>() else {
                debug!(path = %path.display(), line, "skipping hosts line without an address");
                continue;
            };
            for word in words {
                let Ok(mut name) = Name::from_ascii(word) else {
                    debug!(path = %path.display(), name = word, "skipping invalid host name");
                    continue;
                };
                name.set_fqdn(true);
                let name = name.to_lowercase();
                let addrs = self.by_name.entry(name.clone()).or_default();
                if !addrs.contains(&ip) {
                    addrs.push(ip);
                }
                let reverse = Name::from(ip);
                for key in [&name, &reverse] {
                    let mut wire = Vec::new();
                    push_wire_name(key, &mut wire);
                    wire.make_ascii_lowercase();
                    self.wire_names.insert(wire.into_boxed_slice());
                }
                let names = self.by_addr.entry(reverse).or_default();
                if !names.contains(&name) {
                    names.push(name);
                }
            }
        }
    }

    /// Whether no name is known.
    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }

    /// Whether the files mention `name` (in wire form, any case) as a host name or as an
    /// address's reverse name: whenever [`answer`](Self::answer) has records for a name, this
    /// holds. Allocates nothing.
    pub fn mentions_wire(&self, name: &[u8]) -> bool {
        if self.wire_names.is_empty() {
            return false;
        }
        let mut lower = [0; MAX_WIRE_NAME];
        let Some(lower) = lower.get_mut(..name.len()) else {
            return false;
        };
        lower.copy_from_slice(name);
        // Length octets are at most 63, below b'A', so only label bytes change.
        lower.make_ascii_lowercase();
        self.wire_names.contains(&*lower)
    }

    /// The answer to `qname`/`qtype` (class IN): A and AAAA for known names, PTR for known
    /// addresses. Anything else, including the address family a known name lacks, is not
    /// answered here (dnsmasq forwards those too).
    pub fn answer(&self, qname: &Name, qtype: RecordType) -> HostsAnswer {
        if self.by_name.is_empty() {
            return HostsAnswer::Unknown;
        }
        match qtype {
            RecordType::A | RecordType::AAAA => {
                let Some(addrs) = self.by_name.get(qname) else {
                    return HostsAnswer::Unknown;
                };
                let records = addrs
                    .iter()
                    .filter_map(|ip| match (ip, qtype) {
                        (IpAddr::V4(v4), RecordType::A) => Some(RData::A(A(*v4))),
                        (IpAddr::V6(v6), RecordType::AAAA) => Some(RData::AAAA(AAAA(*v6))),
                        _ => None,
                    })
                    .map(|data| Record::from_rdata(qname.clone(), LOCAL_TTL, data))
                    .collect::<Vec<_>>();
                // As dnsmasq: a name known only in the other family is asked upstream.
                if records.is_empty() {
                    HostsAnswer::Unknown
                } else {
                    HostsAnswer::Records(records)
                }
            }
            RecordType::PTR => match self.by_addr.get(qname) {
                Some(names) => HostsAnswer::Records(
                    names
                        .iter()
                        .map(|n| {
                            Record::from_rdata(qname.clone(), LOCAL_TTL, RData::PTR(PTR(n.clone())))
                        })
                        .collect(),
                ),
                None => HostsAnswer::Unknown,
            },
            _ => HostsAnswer::Unknown,
        }
    }
}

#[cfg(test)]
mod tests {
    use test_support::assert_records_eq;

    use super::*;

    const HOSTS: &str = "\
# The pod's /etc/hosts
127.0.0.1\tlocalhost
::1\tlocalhost ip6-localhost
10.244.1.7\tweb-0.web.shop.svc.cluster.local\tweb-0
bogus line
";

    fn name(s: &str) -> Name {
        Name::from_ascii(s).expect("name")
    }

    fn records(answer: HostsAnswer) -> Vec<Record> {
        match answer {
            HostsAnswer::Records(records) => records,
            HostsAnswer::Unknown => panic!("expected an answer"),
        }
    }

    #[test]
    fn names_get_their_addresses_and_addresses_their_names() {
        let hosts = Hosts::parse(HOSTS);
        assert_records_eq(
            &records(hosts.answer(&name("localhost."), RecordType::A)),
            &["localhost. 0 IN A 127.0.0.1"],
        );
        assert_records_eq(
            &records(hosts.answer(&name("localhost."), RecordType::AAAA)),
            &["localhost. 0 IN AAAA ::1"],
        );
        assert_records_eq(
            &records(hosts.answer(&name("web-0."), RecordType::A)),
            &["web-0. 0 IN A 10.244.1.7"],
        );
        assert_records_eq(
            &records(hosts.answer(&name("7.1.244.10.in-addr.arpa."), RecordType::PTR)),
            &[
                "7.1.244.10.in-addr.arpa. 0 IN PTR web-0.web.shop.svc.cluster.local.",
                "7.1.244.10.in-addr.arpa. 0 IN PTR web-0.",
            ],
        );
    }

    #[test]
    fn names_and_reverse_names_are_mentioned_in_any_case_in_wire_form() {
        let hosts = Hosts::parse(HOSTS);
        let wire = |s: &str| {
            let mut bytes = Vec::new();
            push_wire_name(&name(s), &mut bytes);
            bytes
        };
        for mentioned in [
            "localhost.",
            "LocalHost.",
            "WEB-0.",
            "7.1.244.10.in-addr.arpa.",
        ] {
            assert!(hosts.mentions_wire(&wire(mentioned)), "{mentioned}");
        }
        for unknown in [
            "web-1.",
            "www.example.com.",
            "8.1.244.10.in-addr.arpa.",
            ".",
        ] {
            assert!(!hosts.mentions_wire(&wire(unknown)), "{unknown}");
        }
        assert!(!Hosts::default().mentions_wire(&wire("localhost.")));
    }

    #[test]
    fn a_known_name_without_the_asked_family_and_other_types_pass_through() {
        let hosts = Hosts::parse(HOSTS);
        assert_eq!(
            hosts.answer(&name("web-0."), RecordType::AAAA),
            HostsAnswer::Unknown
        );
        assert_eq!(
            hosts.answer(&name("web-0."), RecordType::MX),
            HostsAnswer::Unknown
        );
        assert_eq!(
            hosts.answer(&name("www.example.com."), RecordType::A),
            HostsAnswer::Unknown
        );
    }
}
