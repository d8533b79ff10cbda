//! DNS records written as zone-file lines, and comparison of record sets.

use hickory_proto::rr::{Name, Record};
use hickory_proto::serialize::txt::Parser;

/// Parses one zone-file line, e.g. `"svc1.ns.svc.cluster.local. 30 IN A 10.0.0.1"`.
///
/// The TTL is required. Names without a trailing dot are taken relative to the root.
/// Any record type hickory's zone parser knows is accepted (A, AAAA, SRV, PTR,
/// CNAME, TXT, SOA, ...).
///
/// # Panics
/// If the text does not parse or holds other than exactly one record.
#[track_caller]
pub fn rr(text: &str) -> Record {
    let parsed = Parser::new(text, None, Some(Name::root())).parse();
    let (_origin, sets) = match parsed {
        Ok(parsed) => parsed,
        Err(err) => panic!("not a zone-file record: {text:?}: {err}"),
    };
    let mut records: Vec<Record> = sets
        .values()
        .flat_map(|set| set.records_without_rrsigs().cloned())
        .collect();
    match records.len() {
        1 => records.remove(0),
        n => panic!("expected exactly one record in {text:?}, found {n}"),
    }
}

/// Parses each line with [`rr`].
#[track_caller]
pub fn rrs(lines: &[&str]) -> Vec<Record> {
    lines.iter().map(|line| rr(line)).collect()
}

/// Asserts that `got` holds exactly the records in `want`, in any order.
///
/// Both sides are compared as sorted lists of their zone-file text (TTL included),
/// so duplicates count. On failure the panic lists what is missing and what is
/// unexpected, then both full lists.
#[track_caller]
pub fn assert_records_eq(got: &[Record], want: &[&str]) {
    let mut got_text: Vec<String> = got.iter().map(Record::to_string).collect();
    // Round-trip through the parser so spelling differences (case of IN, spacing,
    // TTL units) don't count as differences.
    let mut want_text: Vec<String> = want.iter().map(|line| rr(line).to_string()).collect();
    got_text.sort();
    want_text.sort();
    if got_text == want_text {
        return;
    }

    let missing = multiset_difference(&want_text, &got_text);
    let unexpected = multiset_difference(&got_text, &want_text);
    let mut report = String::from("DNS records differ\n");
    for line in &missing {
        report.push_str(&format!("  missing:    {line}\n"));
    }
    for line in &unexpected {
        report.push_str(&format!("  unexpected: {line}\n"));
    }
    report.push_str("got:\n");
    for line in &got_text {
        report.push_str(&format!("  {line}\n"));
    }
    report.push_str("want:\n");
    for line in &want_text {
        report.push_str(&format!("  {line}\n"));
    }
    panic!("{report}");
}

/// Lines of sorted `a` not matched one-for-one by lines of sorted `b`.
fn multiset_difference(a: &[String], b: &[String]) -> Vec<String> {
    let mut remaining = b.to_vec();
    let mut out = Vec::new();
    for line in a {
        match remaining.iter().position(|other| other == line) {
            Some(index) => {
                remaining.swap_remove(index);
            }
            None => out.push(line.clone()),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::rr::RecordType;

    #[test]
    fn parses_common_types() {
        let cases = [
            ("svc1.ns.svc.cluster.local. 30 IN A 10.0.0.1", RecordType::A),
            (
                "svc1.ns.svc.cluster.local. 30 IN AAAA fd00::1",
                RecordType::AAAA,
            ),
            (
                "_http._tcp.svc1.ns.svc.cluster.local. 30 IN SRV 0 100 80 svc1.ns.svc.cluster.local.",
                RecordType::SRV,
            ),
            (
                "1.0.0.10.in-addr.arpa. 30 IN PTR svc1.ns.svc.cluster.local.",
                RecordType::PTR,
            ),
            (
                "ext.ns.svc.cluster.local. 30 IN CNAME x.example.com.",
                RecordType::CNAME,
            ),
            (
                "dns-version.cluster.local. 30 IN TXT \"1.1.0\"",
                RecordType::TXT,
            ),
            (
                "cluster.local. 30 IN SOA ns.dns.cluster.local. hostmaster.cluster.local. 1 7200 1800 86400 30",
                RecordType::SOA,
            ),
        ];
        for (text, record_type) in cases {
            let record = rr(text);
            assert_eq!(record.record_type(), record_type, "{text}");
            assert_eq!(record.ttl, 30, "{text}");
            // Display gives zone-file text that parses back to the same record.
            let again = rr(&record.to_string());
            assert_eq!(again.to_string(), record.to_string());
        }
    }

    #[test]
    fn relative_names_are_rooted() {
        assert_eq!(rr("a.b 5 IN A 1.2.3.4").name.to_string(), "a.b.");
    }

    #[test]
    fn equal_sets_in_any_order() {
        let got = rrs(&["a. 5 IN A 1.1.1.1", "a. 5 IN A 2.2.2.2"]);
        assert_records_eq(&got, &["a. 5 in a 2.2.2.2", "a.  5  IN  A  1.1.1.1"]);
    }

    #[test]
    fn difference_is_reported() {
        let got = rrs(&["a. 5 IN A 1.1.1.1", "a. 5 IN A 3.3.3.3"]);
        let failure = std::panic::catch_unwind(|| {
            assert_records_eq(&got, &["a. 5 IN A 1.1.1.1", "a. 5 IN A 2.2.2.2"]);
        })
        .expect_err("sets differ");
        let message = failure.downcast_ref::<String>().expect("formatted panic");
        assert!(
            message.contains("missing:    a. 5 IN A 2.2.2.2"),
            "{message}"
        );
        assert!(
            message.contains("unexpected: a. 5 IN A 3.3.3.3"),
            "{message}"
        );
    }

    #[test]
    fn ttl_counts() {
        let got = rrs(&["a. 5 IN A 1.1.1.1"]);
        assert!(
            std::panic::catch_unwind(|| assert_records_eq(&got, &["a. 6 IN A 1.1.1.1"])).is_err()
        );
    }

    #[test]
    #[should_panic(expected = "not a zone-file record")]
    fn garbage_panics() {
        rr("a. 5 IN A not-an-address");
    }
}
