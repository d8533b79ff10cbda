//! DNS over UDP and TCP, written once for the pod's three binaries.
//!
//! Owns everything that touches hostile bytes: parse limits, FORMERR/NOTIMP for malformed or
//! unsupported requests, truncation to the client's UDP payload size, TCP framing with idle
//! timeouts and a connection cap, and graceful shutdown. DNS logic lives behind [`Handler`].
//!
//! - [`serve`] runs a [`Handler`] on a UDP socket and/or a TCP listener until a cancellation
//!   token fires; [`bind`] binds both on one port. Limits are in [`ServerConfig`], counters in
//!   [`ServerStats`].
//! - [`exchange_udp`], [`exchange_tcp`] and [`exchange`] send one query and wait for the one
//!   reply that matches it; [`query_message`] and [`with_edns`] build queries.
//! - [`UpstreamPool`] asks an ordered list of [`Upstream`] servers with failover, skipping
//!   servers that recently failed, and counts queries and failures per server. An upstream may
//!   live in the same process: [`Upstream::in_process`] hands its queries to an [`Exchanger`]
//!   (any [`Handler`], through [`HandlerExchanger`]) instead of a socket.
//!
//! What the server does with a request, in order:
//!
//! | Input                                               | Outcome                          |
//! |-----------------------------------------------------|----------------------------------|
//! | fewer than 12 bytes, QR=1, datagram over 4096 bytes | dropped (TCP: connection closed) |
//! | opcode other than QUERY or NOTIFY                   | NOTIMP, question echoed if valid |
//! | QDCOUNT ≠ 1, undecodable body, two OPT records      | FORMERR, no question section     |
//! | QUERY with answer or authority records              | FORMERR                          |
//! | EDNS version above 0                                | BADVERS, with OPT                |
//! | anything else (any class; trailing bytes ignored)   | the handler                      |
//!
//! A plain query (one class IN question, no compression, at most a bare OPT) is first offered
//! to [`Handler::handle_wire`] straight from its bytes; it is decoded only when that declines.
//!
//! Responses to EDNS requests always carry an OPT; responses to plain requests never do.

mod batch;
mod client;
mod handler;
mod server;
mod upstream;
mod wire;

pub use client::{ClientError, exchange, exchange_tcp, exchange_udp, query_message, with_edns};
pub use handler::{Handler, Protocol, Request};
pub use server::{
    Limit, ResponseLimiter, RunningServer, ServerConfig, ServerStats, answer_message, bind, serve,
    serve_in_task, serve_on_thread, serve_stream,
};
pub use upstream::{
    Answer, Attempt, Exchanger, HandlerExchanger, PoolError, Upstream, UpstreamPool,
};
pub use wire::{MAX_WIRE_NAME, WireEdns, WireQuery};
