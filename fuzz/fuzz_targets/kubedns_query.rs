//! A datagram to kubedns: through kdns-net's vetting, the zone's answer over the demo cluster,
//! and fitting to the client's UDP size, as `serve` does for each UDP packet.

#![no_main]

use kdns_fuzz::{answer_udp_and_check, demo_zone};
use kdns_net::ServerConfig;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // kubedns serves with the defaults.
    answer_udp_and_check(demo_zone(), ServerConfig::default(), data);
});
