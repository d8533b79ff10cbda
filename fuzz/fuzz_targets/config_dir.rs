//! The kube-dns ConfigMap's values and resolv.conf on arbitrary text. The input is split at NUL
//! bytes into `stubDomains`, `upstreamNameservers`, `federations` and resolv.conf text; whatever
//! is accepted must meet the documented promises.

#![no_main]

use std::collections::BTreeMap;

use kdns_config::{
    DnsConfig, FEDERATIONS_KEY, MAX_UPSTREAM_NAMESERVERS, STUB_DOMAINS_KEY,
    UPSTREAM_NAMESERVERS_KEY, parse_nameserver_list, parse_resolv_conf,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut parts = text.split('\0');
    let keys = [STUB_DOMAINS_KEY, UPSTREAM_NAMESERVERS_KEY, FEDERATIONS_KEY];
    let mut files = BTreeMap::new();
    for key in keys {
        if let Some(value) = parts.next().filter(|v| !v.is_empty()) {
            files.insert(key.to_owned(), value.to_owned());
        }
    }
    let resolv = parts.next().unwrap_or_default();

    if let Ok(config) = DnsConfig::from_files(&files) {
        assert!(config.upstream_nameservers.len() <= MAX_UPSTREAM_NAMESERVERS);
        for pair in config.stub_domains.windows(2) {
            assert!(
                pair[0].domain < pair[1].domain,
                "stub domains sorted, unique"
            );
        }
        for stub in &config.stub_domains {
            assert!(
                !stub.domain.ends_with('.'),
                "{:?} keeps its dot",
                stub.domain
            );
            assert_eq!(stub.domain, stub.domain.to_lowercase());
        }
        for pair in config.federations.windows(2) {
            assert!(pair[0].0 < pair[1].0, "federations sorted, unique");
        }
    }
    if let Some(list) = files.get(UPSTREAM_NAMESERVERS_KEY) {
        let _ = parse_nameserver_list(list);
    }

    let conf = parse_resolv_conf(resolv);
    assert!(
        conf.ndots.is_none_or(|n| n <= 15),
        "ndots above glibc's cap"
    );
    assert!(conf.nameservers.iter().all(|ns| ns.port() == 53));
    for domain in &conf.search {
        assert!(
            !domain.is_empty() && !domain.ends_with('.'),
            "search {domain:?}"
        );
    }
});
