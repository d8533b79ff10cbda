//! The one seam between the network and DNS logic.

use std::future::Future;
use std::net::SocketAddr;

use hickory_proto::op::Message;

use crate::WireQuery;

/// The transport a request arrived on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Protocol {
    /// DNS over UDP: responses are cut to the client's payload size.
    Udp,
    /// DNS over TCP: responses are sent whole.
    Tcp,
}

/// A parsed, validated DNS request: exactly one question, opcode QUERY or NOTIFY, QR clear.
#[derive(Clone, Debug)]
pub struct Request {
    /// The decoded message as the client sent it.
    pub message: Message,
    /// Where it came from.
    pub src: SocketAddr,
    /// How it came.
    pub protocol: Protocol,
}

/// Answers one request. Implemented by kubedns's zone and dnsmasq-rs's forwarder; tests call it
/// directly without sockets.
///
/// The returned message is the complete response (ID, flags, question, sections, OPT). The server
/// only fits it to the transport: on UDP it drops additional records and then answer records until
/// the message fits the client's size, setting TC.
pub trait Handler: Send + Sync + 'static {
    /// Whether this handler implements [`handle_wire`](Self::handle_wire). The server reads
    /// plain queries from their bytes only for handlers that do, so the others pay nothing.
    const ANSWERS_WIRE: bool = false;

    /// Builds the response to `request`.
    fn handle(&self, request: Request) -> impl Future<Output = Message> + Send;

    /// The response to a query of the common shape, already in wire form, for answers kept
    /// encoded (a cache): the server tries this before decoding the request into a
    /// [`Message`], so a hit costs neither a decode nor an encode. `limit` is the most bytes
    /// the transport takes. The response is written to `reply`, which comes empty (a buffer
    /// the server reuses, so a hit allocates nothing).
    ///
    /// The bytes are sent as they are, so they must be what [`handle`](Self::handle) would have
    /// produced for the same request after fitting: the request's ID and question, and an OPT
    /// record exactly when the request had one. `false`, the default, has the request decoded
    /// and [`handle`](Self::handle) called, whatever was written; return it too when the answer
    /// would not fit, so the server can truncate it.
    fn handle_wire(&self, query: &WireQuery<'_>, limit: usize, reply: &mut Vec<u8>) -> bool {
        let _ = (query, limit, reply);
        false
    }
}
