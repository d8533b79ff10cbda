//! A small DNS client: one query, one reply, over UDP or TCP.
//!
//! Used by the forwarder for upstream queries, by the health prober, and by tests. Replies are
//! only accepted when they come from the queried address and carry the query's ID and question,
//! which is what stands between a forwarder's cache and an off-path spoofer.

use std::cell::RefCell;
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use hickory_proto::ProtoError;
use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{Name, RecordType};
use hickory_proto::serialize::binary::DecodeError;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpStream, UdpSocket};
use tokio::time::Instant;
use tracing::debug;

use crate::wire;

/// Why an exchange produced no usable reply.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// No acceptable reply before the deadline. `ignored` counts datagrams that arrived but
    /// were discarded (wrong source, ID or question, or undecodable): a high count hints at
    /// spoofing or a confused upstream.
    #[error("no matching reply within {timeout:?} ({ignored} other datagrams ignored)")]
    Timeout {
        /// The deadline that passed.
        timeout: Duration,
        /// Datagrams received and discarded meanwhile.
        ignored: usize,
    },
    /// The socket failed: connection refused, reset, unreachable network, ...
    #[error("network error: {0}")]
    Io(#[from] io::Error),
    /// The query could not be encoded (or is too large to frame for TCP).
    #[error("cannot encode query: {0}")]
    Encode(#[source] ProtoError),
    /// The TCP reply could not be decoded.
    #[error("malformed reply: {0}")]
    Malformed(#[from] DecodeError),
    /// The TCP reply decoded but answers something else (ID or question differ).
    #[error("reply does not match the query")]
    Mismatch,
    /// [`query_message`] was given something that is not a domain name.
    #[error("invalid domain name {name:?}: {source}")]
    InvalidName {
        /// The rejected input.
        name: String,
        /// What is wrong with it.
        #[source]
        source: ProtoError,
    },
}

/// Builds a recursive query (RD set) for `name` and `rtype`, class IN, with a random ID.
/// `name` is taken as fully qualified whether or not it ends in a dot.
pub fn query_message(name: &str, rtype: RecordType) -> Result<Message, ClientError> {
    let mut qname = Name::from_ascii(name).map_err(|source| ClientError::InvalidName {
        name: name.to_owned(),
        source,
    })?;
    qname.set_fqdn(true);
    let mut message = Message::new(rand::random(), MessageType::Query, OpCode::Query);
    message.metadata.recursion_desired = true;
    message.add_query(Query::query(qname, rtype));
    Ok(message)
}

/// Adds (or replaces) an EDNS(0) OPT record advertising `payload` bytes for UDP replies.
pub fn with_edns(mut message: Message, payload: u16) -> Message {
    let mut edns = Edns::new();
    edns.set_max_payload(payload);
    message.edns = Some(edns);
    message
}

/// Sends `query` over UDP from a fresh ephemeral port and waits up to `timeout` for the reply.
///
/// Datagrams from any address other than exactly `server`, or with another ID or question,
/// are ignored rather than failing the exchange, so a spoofer cannot cut it short.
pub async fn exchange_udp(
    server: SocketAddr,
    query: &Message,
    timeout: Duration,
) -> Result<Message, ClientError> {
    let deadline = Instant::now() + timeout;
    let timed_out = |ignored| ClientError::Timeout { timeout, ignored };
    let bytes = query.to_vec().map_err(ClientError::Encode)?;

    // A fresh socket per query means a fresh random source port (RFC 5452).
    let local: SocketAddr = if server.is_ipv4() {
        (Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let socket = UdpSocket::bind(local).await?;
    tokio::time::timeout_at(deadline, socket.send_to(&bytes, server))
        .await
        .map_err(|_| timed_out(0))??;

    let mut ignored = 0;
    loop {
        tokio::time::timeout_at(deadline, socket.readable())
            .await
            .map_err(|_| timed_out(ignored))??;
        let (from, reply) = match recv_reply(&socket) {
            Ok(received) => received,
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => continue,
            Err(error) => return Err(error.into()),
        };
        if from != server {
            debug!(%from, %server, "ignored datagram from unexpected address");
            ignored += 1;
            continue;
        }
        match reply {
            Ok(reply) if is_reply_to(query, &reply) => return Ok(reply),
            _ => {
                debug!(%server, "ignored datagram that does not answer the query");
                ignored += 1;
            }
        }
    }
}

/// Receives one datagram from `socket` and decodes it, without blocking.
///
/// The datagram lands in a buffer kept per thread, large enough for any datagram so an
/// oversized reply is not silently cut by the kernel: allocating 64 KiB per query made the
/// allocator grow and trim the heap over and over, a visible share of a forwarded query's CPU.
/// It is received into spare capacity, so only the pages replies reach are ever touched.
fn recv_reply(socket: &UdpSocket) -> io::Result<(SocketAddr, Result<Message, DecodeError>)> {
    thread_local! {
        static BUFFER: RefCell<Vec<u8>> = RefCell::new(Vec::with_capacity(usize::from(u16::MAX)));
    }
    BUFFER.with_borrow_mut(|buffer| {
        buffer.clear();
        let (len, from) = socket.try_recv_buf_from(buffer)?;
        Ok((from, Message::from_vec(&buffer[..len])))
    })
}

/// Sends `query` over a new TCP connection and reads one framed reply, all within `timeout`.
pub async fn exchange_tcp(
    server: SocketAddr,
    query: &Message,
    timeout: Duration,
) -> Result<Message, ClientError> {
    let bytes = query.to_vec().map_err(ClientError::Encode)?;
    let framed = wire::frame(&bytes)
        .ok_or_else(|| ClientError::Encode(ProtoError::from("query exceeds 65535 bytes")))?;
    let exchange = async {
        let mut stream = TcpStream::connect(server).await?;
        stream.write_all(&framed).await?;
        let reply = match wire::read_frame(&mut stream).await {
            Ok(reply) => reply,
            Err(error) if error.kind() == io::ErrorKind::InvalidData => {
                return Err(ClientError::Malformed(DecodeError::InsufficientBytes));
            }
            Err(error) => return Err(error.into()),
        };
        let reply = Message::from_vec(&reply)?;
        // The connection is ours alone, so a mismatch is an error rather than noise to skip.
        if is_reply_to(query, &reply) {
            Ok(reply)
        } else {
            Err(ClientError::Mismatch)
        }
    };
    tokio::time::timeout(timeout, exchange)
        .await
        .unwrap_or(Err(ClientError::Timeout {
            timeout,
            ignored: 0,
        }))
}

/// Queries over UDP and, if the reply is truncated (TC), asks again over TCP.
/// Each attempt gets the full `timeout`.
pub async fn exchange(
    server: SocketAddr,
    query: &Message,
    timeout: Duration,
) -> Result<Message, ClientError> {
    let reply = exchange_udp(server, query, timeout).await?;
    if reply.metadata.truncation {
        debug!(%server, "reply truncated, retrying over TCP");
        return exchange_tcp(server, query, timeout).await;
    }
    Ok(reply)
}

/// Whether `reply` answers `query`: a response with the same ID and the same question
/// (names compared case-insensitively, as servers may change case).
///
/// A FORMERR or NOTIMP without a question is accepted too: a server that could not parse the
/// question cannot echo it, and waiting out the timeout would gain nothing.
fn is_reply_to(query: &Message, reply: &Message) -> bool {
    if reply.metadata.message_type != MessageType::Response
        || reply.metadata.id != query.metadata.id
    {
        return false;
    }
    if reply.queries.is_empty() {
        return matches!(
            reply.metadata.response_code,
            ResponseCode::FormErr | ResponseCode::NotImp
        );
    }
    reply.queries.len() == query.queries.len()
        && query
            .queries
            .iter()
            .zip(&reply.queries)
            .all(|(asked, echoed)| same_question(asked, echoed))
}

fn same_question(asked: &Query, echoed: &Query) -> bool {
    asked.query_type() == echoed.query_type()
        && asked.query_class() == echoed.query_class()
        && asked.name().eq_ignore_root(echoed.name())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_message_asks_for_recursion_with_one_fully_qualified_question() {
        let query = query_message("Kubernetes.default.svc.cluster.local", RecordType::A)
            .expect("valid name");
        assert!(query.metadata.recursion_desired);
        assert_eq!(query.metadata.message_type, MessageType::Query);
        assert_eq!(query.queries.len(), 1);
        assert!(query.queries[0].name().is_fqdn());
        assert!(query.edns.is_none());
        assert_eq!(with_edns(query, 1232).max_payload(), 1232);
    }

    #[test]
    fn query_message_rejects_names_that_are_not_names() {
        let too_long = "a".repeat(64);
        assert!(matches!(
            query_message(&too_long, RecordType::A),
            Err(ClientError::InvalidName { .. })
        ));
    }

    #[test]
    fn a_reply_matches_on_id_and_question_ignoring_case() {
        let query = query_message("svc.example", RecordType::A).expect("valid name");
        let mut reply = query.clone().into_response();
        assert!(is_reply_to(&query, &reply));

        reply.queries[0].set_name(Name::from_ascii("SVC.Example.").expect("valid name"));
        assert!(is_reply_to(&query, &reply));

        reply.metadata.id = query.metadata.id.wrapping_add(1);
        assert!(!is_reply_to(&query, &reply));

        let mut other = query.clone().into_response();
        other.queries[0].set_query_type(RecordType::AAAA);
        assert!(!is_reply_to(&query, &other));

        assert!(!is_reply_to(&query, &query), "a query is not a reply");
    }

    #[test]
    fn a_question_less_reply_matches_only_as_formerr_or_notimp() {
        let query = query_message("svc.example", RecordType::A).expect("valid name");
        let mut reply = Message::response(query.metadata.id, OpCode::Query);
        assert!(!is_reply_to(&query, &reply));
        reply.metadata.response_code = ResponseCode::FormErr;
        assert!(is_reply_to(&query, &reply));
    }
}
