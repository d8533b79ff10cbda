//! dnsmasq-rs over real sockets: fake upstreams on 127.0.0.1:0, an in-process kubedns, and
//! Debian's dnsmasq as a peer.
//!
//! Timeouts in these tests only guard against hangs; answers and counters decide pass or fail.

mod cli;
mod config_dir;
mod differential;
mod encoded_hits;
mod forwarding;
mod notify;
mod poisoning;
mod rate_limit;
mod shutdown;
mod support;
mod upstream_faults;
