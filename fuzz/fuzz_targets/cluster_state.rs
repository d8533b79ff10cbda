//! kubedns's `--cluster-state` parser on arbitrary text, and whatever it accepts turned into
//! records and asked for: each Service's names must answer with a reply that decodes.

#![no_main]

use std::path::Path;
use std::sync::Arc;

use hickory_proto::rr::RecordType;
use kdns_fuzz::{CLIENT, check_reply, runtime, zone_over};
use kdns_net::{Protocol, ServerConfig, answer_message, query_message, with_edns};
use kubedns::source::file;
use kubedns::store::Object;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(state) = file::parse(text, Path::new("fuzz.yaml")) else {
        return;
    };
    let names: Vec<String> = state
        .objects
        .iter()
        .filter_map(|(_, object)| match object {
            Object::Service(svc) => Some(format!(
                "{}.{}.svc.cluster.local.",
                svc.key.name, svc.key.namespace
            )),
            Object::Slice(_) | Object::Pod(_) => None,
        })
        .take(8)
        .collect();
    let zone = Arc::new(zone_over(state, Vec::new()));
    runtime().block_on(async {
        for name in &names {
            for qtype in [RecordType::A, RecordType::SRV, RecordType::ANY] {
                let Ok(query) = query_message(name, qtype) else {
                    continue;
                };
                let request = with_edns(query, 4096).to_vec().expect("a query encodes");
                let reply = answer_message(
                    zone.clone(),
                    ServerConfig::default(),
                    &request,
                    CLIENT,
                    Protocol::Udp,
                )
                .await
                .expect("a reply to a valid query");
                check_reply(&request, &reply, Some(4096));
            }
        }
    });
});
