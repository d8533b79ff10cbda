//! A datagram to kubedns: through kdns-net's vetting, the zone's answer over the demo cluster,
//! and fitting to the client's UDP size, as `serve` does for each UDP packet.

#![no_main]

use kdns_fuzz::{CLIENT, check_reply, demo_zone, may_drop, runtime, udp_limit};
use kdns_net::{Protocol, ServerConfig, answer_message};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // kubedns serves with the defaults.
    let config = ServerConfig::default();
    let max_udp_payload = config.max_udp_payload;
    let reply = runtime().block_on(answer_message(
        demo_zone(),
        config,
        data,
        CLIENT,
        Protocol::Udp,
    ));
    match reply {
        Some(reply) => {
            check_reply(data, &reply, Some(udp_limit(data, max_udp_payload)));
        }
        None => assert!(may_drop(data, true), "no reply to a request worth one"),
    }
});
