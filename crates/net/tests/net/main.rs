//! Server and client behaviour over real sockets on 127.0.0.1.
//!
//! Timeouts in these tests only guard against hangs; outcomes (replies, closed connections,
//! counters) decide pass or fail.

mod client;
mod connections;
mod flood;
mod malformed;
mod shutdown;
mod support;
mod tcp;
mod udp;
mod upstream;
