//! Bailiwick scrubbing of upstream answers before they are cached or relayed.
//!
//! A server is asked about a name because of the route that name takes: the servers of
//! `--server=/example.com/...` are trusted for `example.com.` and below, the default servers for
//! everything. An answer that also carries records about other names (the classic way to poison
//! a cache) must not get them into the cache, nor to clients from it. The answer section is
//! checked by the cache itself (records outside the question's CNAME chain make an answer
//! uncacheable); this module trims the other two sections:
//!
//! - authority: kept only inside the bailiwick, and only SOA and NS records of the question's
//!   name or one of its parents (the zone that answered), plus DNSSEC proofs (NSEC, NSEC3,
//!   RRSIG);
//! - additional: kept only inside the bailiwick, and only for names that a kept answer or
//!   authority record points at (the targets of NS, MX, SRV and CNAME records: glue).
//!
//! Everything else is dropped and counted (`dnsmasq_out_of_bailiwick_records_total`).

use hickory_proto::op::Message;
use hickory_proto::rr::{Name, RData, Record, RecordType};

/// Drops the authority and additional records of `response` (an answer about `qname` from a
/// server trusted for `bailiwick`) that it has no business carrying. Returns how many.
pub fn scrub(qname: &Name, bailiwick: &Name, response: &mut Message) -> usize {
    let before = response.authorities.len() + response.additionals.len();
    response
        .authorities
        .retain(|record| authority_fits(qname, bailiwick, record));
    let targets: Vec<&Name> = response
        .answers
        .iter()
        .chain(&response.authorities)
        .filter_map(target)
        .collect();
    response.additionals.retain(|record| {
        bailiwick.zone_of(&record.name) && targets.iter().any(|t| t.eq_ignore_root(&record.name))
    });
    before - response.authorities.len() - response.additionals.len()
}

fn authority_fits(qname: &Name, bailiwick: &Name, record: &Record) -> bool {
    if !bailiwick.zone_of(&record.name) {
        return false;
    }
    match record.record_type() {
        RecordType::SOA | RecordType::NS => record.name.zone_of(qname),
        RecordType::NSEC | RecordType::NSEC3 | RecordType::RRSIG => true,
        _ => false,
    }
}

/// The name a record points at, whose addresses may ride along as glue.
fn target(record: &Record) -> Option<&Name> {
    match &record.data {
        RData::NS(ns) => Some(&ns.0),
        RData::CNAME(cname) => Some(&cname.0),
        RData::MX(mx) => Some(&mx.exchange),
        RData::SRV(srv) => Some(&srv.target),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use hickory_proto::op::{MessageType, OpCode, Query};
    use test_support::{assert_records_eq, rr};

    use super::*;

    fn name(s: &str) -> Name {
        Name::from_ascii(s).expect("valid name")
    }

    fn message(answers: &[&str], authorities: &[&str], additionals: &[&str]) -> Message {
        let mut message = Message::new(1, MessageType::Response, OpCode::Query);
        message.add_query(Query::query(name("www.example.com."), RecordType::A));
        message.answers = answers.iter().map(|l| rr(l)).collect();
        message.authorities = authorities.iter().map(|l| rr(l)).collect();
        message.additionals = additionals.iter().map(|l| rr(l)).collect();
        message
    }

    #[test]
    fn records_about_other_names_are_dropped_and_glue_for_the_zone_kept() {
        let mut response = message(
            &["www.example.com. 60 IN A 192.0.2.1"],
            &[
                "example.com. 60 IN NS ns1.example.com.",
                "example.com. 60 IN NS ns.bank.test.",
                "bank.test. 60 IN NS ns.evil.test.",
                "other.example.com. 60 IN A 6.6.6.6",
            ],
            &[
                "ns1.example.com. 60 IN A 192.0.2.53",
                "ns.bank.test. 60 IN A 6.6.6.6",
                "kubernetes.default.svc.cluster.local. 60 IN A 6.6.6.6",
                "unrelated.example.com. 60 IN A 6.6.6.6",
            ],
        );
        let dropped = scrub(
            &name("www.example.com."),
            &name("example.com."),
            &mut response,
        );
        assert_eq!(dropped, 5);
        assert_records_eq(
            &response.authorities,
            &[
                "example.com. 60 IN NS ns1.example.com.",
                "example.com. 60 IN NS ns.bank.test.",
            ],
        );
        assert_records_eq(
            &response.additionals,
            &["ns1.example.com. 60 IN A 192.0.2.53"],
        );
    }

    #[test]
    fn the_default_servers_are_trusted_for_any_name_but_only_about_the_question() {
        let mut response = message(
            &["www.example.com. 60 IN CNAME edge.cdn.test."],
            &["example.com. 300 IN SOA ns.example.com. h.example.com. 1 2 3 4 30"],
            &[
                "edge.cdn.test. 60 IN A 192.0.2.7",
                "bank.test. 60 IN A 6.6.6.6",
            ],
        );
        let dropped = scrub(&name("www.example.com."), &Name::root(), &mut response);
        assert_eq!(dropped, 1);
        assert_records_eq(&response.additionals, &["edge.cdn.test. 60 IN A 192.0.2.7"]);
        assert_eq!(response.authorities.len(), 1);
    }
}
