//! CHAOS-class TXT statistics under `bind.`, answered as dnsmasq 2.90 answers them, because the
//! kube-dns sidecar and dashboards read them: one TXT record with one decimal string each (TTL 0,
//! class CH, AA set), `servers.bind` with one string per upstream, and NOTIMP for other names
//! at or under `bind.` and `server.` and for types other than TXT and ANY.

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::rdata::TXT;
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};

/// What the statistics are read from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChaosStats {
    /// `cachesize.bind`: the configured bound.
    pub cache_size: u64,
    /// `insertions.bind`.
    pub insertions: u64,
    /// `evictions.bind`.
    pub evictions: u64,
    /// `misses.bind`.
    pub misses: u64,
    /// `hits.bind`.
    pub hits: u64,
    /// `servers.bind`: `<ip>#<port> <queries> <failed>` per upstream.
    pub servers: Vec<String>,
}

/// The reply to a CHAOS-class question, when `qname` is under `bind.`; `None` otherwise (the
/// question is routed like any other, as dnsmasq does).
pub fn answer(
    qname: &Name,
    qtype: RecordType,
    stats: impl FnOnce() -> ChaosStats,
) -> Option<Result<Record, ResponseCode>> {
    let labels: Vec<Vec<u8>> = qname.iter().map(<[u8]>::to_ascii_lowercase).collect();
    // dnsmasq never forwards CHAOS names at or under `bind.` and `server.`.
    match labels.last().map(Vec::as_slice) {
        Some(b"bind" | b"server") => {}
        _ => return None,
    }
    let [label, zone] = labels.as_slice() else {
        return Some(Err(ResponseCode::NotImp));
    };
    if zone != b"bind" || !matches!(qtype, RecordType::TXT | RecordType::ANY) {
        return Some(Err(ResponseCode::NotImp));
    }
    let stats = stats();
    let strings = match label.as_slice() {
        b"cachesize" => vec![stats.cache_size.to_string()],
        b"insertions" => vec![stats.insertions.to_string()],
        b"evictions" => vec![stats.evictions.to_string()],
        b"misses" => vec![stats.misses.to_string()],
        b"hits" => vec![stats.hits.to_string()],
        b"servers" => stats.servers,
        b"version" => vec![format!("dnsmasq-rs-{}", env!("CARGO_PKG_VERSION"))],
        _ => return Some(Err(ResponseCode::NotImp)),
    };
    let mut record = Record::from_rdata(qname.clone(), 0, RData::TXT(TXT::new(strings)));
    record.dns_class = DNSClass::CH;
    Some(Ok(record))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(s: &str) -> Name {
        Name::from_ascii(s).expect("name")
    }

    fn stats() -> ChaosStats {
        ChaosStats {
            cache_size: 1000,
            insertions: 3,
            evictions: 0,
            misses: 2,
            hits: 9,
            servers: vec!["127.0.0.1#10053 2 0".into(), "8.8.8.8#53 1 1".into()],
        }
    }

    /// The strings, each quoted, space-separated; the TTL; the class.
    fn txt(result: Option<Result<Record, ResponseCode>>) -> (String, u32, DNSClass) {
        let record = result.expect("under bind.").expect("answered");
        let RData::TXT(txt) = &record.data else {
            panic!("expected TXT, got {record}");
        };
        let strings: Vec<String> = txt
            .txt_data
            .iter()
            .map(|s| format!("\"{}\"", String::from_utf8_lossy(s)))
            .collect();
        (strings.join(" "), record.ttl, record.dns_class)
    }

    #[test]
    fn statistics_are_one_txt_string_with_ttl_zero_in_class_ch() {
        assert_eq!(
            txt(answer(&name("cachesize.bind."), RecordType::TXT, stats)),
            ("\"1000\"".into(), 0, DNSClass::CH)
        );
        assert_eq!(
            txt(answer(&name("HITS.bind."), RecordType::TXT, stats)).0,
            "\"9\""
        );
        assert_eq!(
            txt(answer(&name("misses.bind."), RecordType::TXT, stats)).0,
            "\"2\""
        );
        assert_eq!(
            txt(answer(&name("insertions.bind."), RecordType::TXT, stats)).0,
            "\"3\""
        );
        assert_eq!(
            txt(answer(&name("evictions.bind."), RecordType::TXT, stats)).0,
            "\"0\""
        );
        assert_eq!(
            txt(answer(&name("servers.bind."), RecordType::TXT, stats)).0,
            "\"127.0.0.1#10053 2 0\" \"8.8.8.8#53 1 1\""
        );
    }

    #[test]
    fn other_bind_names_and_other_types_are_notimp_and_other_names_pass() {
        assert_eq!(
            answer(&name("id.bind."), RecordType::TXT, stats),
            Some(Err(ResponseCode::NotImp))
        );
        assert_eq!(
            answer(&name("hits.bind."), RecordType::A, stats),
            Some(Err(ResponseCode::NotImp))
        );
        assert_eq!(
            answer(&name("a.b.bind."), RecordType::TXT, stats),
            Some(Err(ResponseCode::NotImp))
        );
        assert_eq!(
            answer(&name("id.server."), RecordType::TXT, stats),
            Some(Err(ResponseCode::NotImp))
        );
        assert_eq!(
            answer(&name("bind."), RecordType::TXT, stats),
            Some(Err(ResponseCode::NotImp))
        );
        assert_eq!(answer(&name("hits.foo."), RecordType::TXT, stats), None);
        assert!(matches!(
            answer(&name("hits.bind."), RecordType::ANY, stats),
            Some(Ok(_))
        ));
    }
}
