//! Bytes on the wire: vetting request bytes, fitting responses to a transport, TCP framing.
//!
//! Everything here except the framing helpers is synchronous and socket-free, so the hostile
//! input rules can be tested (and fuzzed) without a server.

use std::io;
use std::net::SocketAddr;

use hickory_proto::op::{
    Edns, Header, Message, MessageType, Metadata, OpCode, Query, ResponseCode,
};
use hickory_proto::rr::{DNSClass, RecordType};
use hickory_proto::serialize::binary::{BinDecodable, BinDecoder};
use tokio::io::{AsyncRead, AsyncReadExt};

use crate::Protocol;

/// Length of the fixed DNS header; anything shorter is not DNS.
pub(crate) const HEADER_LEN: usize = 12;

/// RFC 1035's UDP limit, for clients that did not send EDNS.
pub(crate) const PLAIN_UDP_LIMIT: usize = 512;

/// The TC bit in the third header byte.
const TC: u8 = 0b0000_0010;

/// What to do with bytes that arrived as a request.
#[derive(Debug)]
pub(crate) enum Verdict {
    /// Not worth a reply (replying to junk or to responses feeds reflection loops).
    Drop(&'static str),
    /// Answer without consulting the handler: FORMERR, NOTIMP or BADVERS.
    Reject(Message),
    /// A valid request for the handler.
    Handle(Message),
}

/// Applies the hostile-input rules to one request.
///
/// Order matters: the header is read first so that the question count is checked before the
/// body is decoded (the decoder reserves room for every announced question).
///
/// Trailing bytes after the last announced record are ignored, as the decoder does; they carry
/// nothing the handler would see.
pub(crate) fn vet(bytes: &[u8], max_udp_payload: u16) -> Verdict {
    if bytes.len() < HEADER_LEN {
        return Verdict::Drop("shorter than a DNS header");
    }
    let Ok(header) = Header::read(&mut BinDecoder::new(bytes)) else {
        return Verdict::Drop("unreadable header");
    };
    if header.metadata.message_type == MessageType::Response {
        return Verdict::Drop("response sent as a query");
    }

    let op_code = header.metadata.op_code;
    if !matches!(op_code, OpCode::Query | OpCode::Notify) {
        let mut reply = reject(&header.metadata, ResponseCode::NotImp);
        // Echo the question when it is cheap and well formed, so the client can match the reply.
        if header.counts.queries == 1
            && let Ok(message) = Message::from_vec(bytes)
        {
            reply.queries = message.queries;
            if message.edns.is_some() {
                reply.edns = Some(server_edns(max_udp_payload));
            }
        }
        return Verdict::Reject(reply);
    }

    if header.counts.queries != 1 {
        return Verdict::Reject(reject(&header.metadata, ResponseCode::FormErr));
    }

    // The decoder bounds names to 255 octets and labels to 63, only follows pointers backwards
    // (so loops are impossible) and rejects a second OPT record.
    let message = match Message::from_vec(bytes) {
        Ok(message) => message,
        Err(_) => return Verdict::Reject(reject(&header.metadata, ResponseCode::FormErr)),
    };

    // NOTIFY may carry the new SOA in its answer section; a QUERY carries only a question.
    if op_code == OpCode::Query && (header.counts.answers != 0 || header.counts.authorities != 0) {
        return Verdict::Reject(reject_parsed(
            &message,
            ResponseCode::FormErr,
            max_udp_payload,
        ));
    }

    if let Some(edns) = &message.edns
        && edns.version() > 0
    {
        // RFC 6891 section 6.1.3: BADVERS is an extended rcode, so the OPT is mandatory.
        let mut reply = reject_parsed(&message, ResponseCode::BADVERS, max_udp_payload);
        reply.edns = Some(server_edns(max_udp_payload));
        return Verdict::Reject(reply);
    }

    Verdict::Handle(message)
}

/// A query in the shape nearly every client sends, read from its bytes without building a
/// [`Message`]: QR clear, opcode QUERY, one question of class IN with an uncompressed name, no
/// answer or authority records, and at most one additional record, an EDNS version 0 OPT with
/// the root as owner and no options. Handlers that keep answers encoded look them up from
/// this; see [`Handler::handle_wire`](crate::Handler::handle_wire).
///
/// Whatever [`WireQuery::read`] accepts, [`vet`] accepts too and hands over with the same
/// fields; everything else (another opcode or class, compression, EDNS options, more records)
/// is read by the full decoder instead.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WireQuery<'a> {
    /// The request's ID.
    pub id: u16,
    /// The RD bit.
    pub recursion_desired: bool,
    /// The CD bit.
    pub checking_disabled: bool,
    /// The question's name in wire form (length-prefixed labels, then the root's zero octet),
    /// as the client spelled it.
    pub name: &'a [u8],
    /// The question's type.
    pub qtype: RecordType,
    /// The client's OPT record; `None` for a plain request.
    pub edns: Option<WireEdns>,
    /// Where it came from.
    pub src: SocketAddr,
    /// How it came.
    pub protocol: Protocol,
}

/// What a [`WireQuery`]'s OPT record says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WireEdns {
    /// The UDP payload size the client advertised, as sent (below 512 counts as 512).
    pub max_payload: u16,
    /// The DO bit.
    pub dnssec_ok: bool,
}

/// The longest name in wire form (RFC 1035 section 3.1), root octet included.
pub const MAX_WIRE_NAME: usize = 255;

const QR_AND_OPCODE: u16 = 0xF800;
const RD: u16 = 0x0100;
const CD: u16 = 0x0010;
const DO: u32 = 0x8000;
const OPT_TYPE: u16 = 41;

impl<'a> WireQuery<'a> {
    /// Reads `bytes` if they hold a query of the common shape; `None` otherwise, which says
    /// nothing about whether they are valid.
    pub fn read(bytes: &'a [u8], src: SocketAddr, protocol: Protocol) -> Option<Self> {
        let word = |at: usize| Some(u16::from_be_bytes([*bytes.get(at)?, *bytes.get(at + 1)?]));
        let flags = word(2)?;
        let additionals = word(10)?;
        if flags & QR_AND_OPCODE != 0
            || word(4)? != 1
            || word(6)? != 0
            || word(8)? != 0
            || additionals > 1
        {
            return None;
        }
        let name_end = HEADER_LEN + wire_name_len(bytes.get(HEADER_LEN..)?)?;
        if word(name_end + 2)? != u16::from(DNSClass::IN) {
            return None;
        }
        let edns = match additionals {
            0 => None,
            _ => Some(read_bare_opt(bytes.get(name_end + 4..)?)?),
        };
        Some(Self {
            id: word(0)?,
            recursion_desired: flags & RD != 0,
            checking_disabled: flags & CD != 0,
            name: &bytes[HEADER_LEN..name_end],
            qtype: RecordType::from(word(name_end)?),
            edns,
            src,
            protocol,
        })
    }

    /// The most bytes a response may take on this query's transport (see [`udp_limit`]).
    pub(crate) fn limit(&self, max_udp_payload: u16) -> usize {
        match self.protocol {
            Protocol::Udp => udp_limit_for(self.edns.map(|edns| edns.max_payload), max_udp_payload),
            Protocol::Tcp => usize::from(u16::MAX),
        }
    }
}

/// The length of the uncompressed name `bytes` start with, root octet included: labels of 1
/// to 63 octets and [`MAX_WIRE_NAME`] octets in all. `None` for a compression pointer, another
/// label type, a name too long, or one cut short.
fn wire_name_len(bytes: &[u8]) -> Option<usize> {
    let mut at = 0;
    loop {
        let len = usize::from(*bytes.get(at)?);
        at += 1;
        if len == 0 {
            return Some(at);
        }
        // 64 and above are pointers and extended label types.
        if len > 63 || at + len >= MAX_WIRE_NAME {
            return None;
        }
        at += len;
    }
}

/// An OPT record at the start of `bytes` with the root as owner, EDNS version 0 and no options.
fn read_bare_opt(bytes: &[u8]) -> Option<WireEdns> {
    let fixed: &[u8; 11] = bytes.get(..11)?.try_into().ok()?;
    let [0, type_hi, type_lo, size_hi, size_lo, ttl @ .., 0, 0] = *fixed else {
        return None;
    };
    let ttl = u32::from_be_bytes(ttl);
    // The TTL holds the extended rcode, the version (second octet) and the flags.
    if u16::from_be_bytes([type_hi, type_lo]) != OPT_TYPE || ttl & 0x00FF_0000 != 0 {
        return None;
    }
    Some(WireEdns {
        max_payload: u16::from_be_bytes([size_hi, size_lo]),
        dnssec_ok: ttl & DO != 0,
    })
}

/// An error reply with no question section: the body was not trusted.
fn reject(request: &Metadata, code: ResponseCode) -> Message {
    let mut reply = Message::response(request.id, request.op_code);
    reply.metadata = Metadata::response_from_request(request);
    reply.metadata.response_code = code;
    reply
}

/// An error reply for a request that decoded: question echoed, OPT iff the request had one.
fn reject_parsed(request: &Message, code: ResponseCode, max_udp_payload: u16) -> Message {
    let mut reply = reject(&request.metadata, code);
    reply.queries.clone_from(&request.queries);
    if request.edns.is_some() {
        reply.edns = Some(server_edns(max_udp_payload));
    }
    reply
}

/// The OPT record this server sends: EDNS version 0 advertising our UDP payload limit.
pub(crate) fn server_edns(max_udp_payload: u16) -> Edns {
    let mut edns = Edns::new();
    edns.set_max_payload(max_udp_payload);
    edns
}

/// A response ready for the socket.
#[derive(Debug)]
pub(crate) enum Fitted {
    /// Sent as the handler built it (apart from the OPT rules).
    Whole(Vec<u8>),
    /// Additional records dropped, answers cut, TC set.
    Truncated(Vec<u8>),
    /// Replaced by SERVFAIL: unencodable, or too large even for TCP.
    ServFail(Vec<u8>),
}

impl Fitted {
    /// The bytes to send, whatever happened to them.
    pub(crate) fn into_bytes(self) -> Vec<u8> {
        match self {
            Self::Whole(bytes) | Self::Truncated(bytes) | Self::ServFail(bytes) => bytes,
        }
    }
}

/// What the server remembers about a request in order to fit the handler's response to it.
///
/// The request itself moves into the handler, so the few fields needed afterwards are kept here.
#[derive(Debug)]
pub(crate) struct Fitting {
    protocol: Protocol,
    max_udp_payload: u16,
    had_edns: bool,
    udp_limit: usize,
    metadata: Metadata,
    queries: Vec<Query>,
}

impl Fitting {
    /// Records what `request` allows: its transport, and on UDP its payload size; and its
    /// question, for a SERVFAIL in place of an unencodable response.
    pub(crate) fn new(request: &Message, protocol: Protocol, max_udp_payload: u16) -> Self {
        Self {
            protocol,
            max_udp_payload,
            had_edns: request.edns.is_some(),
            udp_limit: udp_limit(request, max_udp_payload),
            metadata: request.metadata,
            queries: request.queries.clone(),
        }
    }

    /// Encodes `response` for this request's transport. `None` only if not even a SERVFAIL
    /// can be encoded, which leaves nothing to send.
    pub(crate) fn fit(&self, mut response: Message) -> Option<Fitted> {
        // RFC 6891 section 7: an EDNS query gets an OPT back, a plain one must not.
        if !self.had_edns {
            response.edns = None;
        } else if response.edns.is_none() {
            response.edns = Some(server_edns(self.max_udp_payload));
        }
        let fitted = match self.protocol {
            Protocol::Udp => fit_udp(response, self.udp_limit),
            Protocol::Tcp => fit_tcp(response),
        };
        match fitted {
            Some(fitted) => Some(fitted),
            None => self.servfail().to_vec().ok().map(Fitted::ServFail),
        }
    }

    fn servfail(&self) -> Message {
        let mut reply = reject(&self.metadata, ResponseCode::ServFail);
        reply.queries.clone_from(&self.queries);
        if self.had_edns {
            reply.edns = Some(server_edns(self.max_udp_payload));
        }
        reply
    }
}

/// The largest UDP response `request` may receive: 512 without EDNS, otherwise the client's
/// advertised size (RFC 6891: values below 512 mean 512) capped by our own limit.
pub(crate) fn udp_limit(request: &Message, max_udp_payload: u16) -> usize {
    udp_limit_for(
        request.edns.as_ref().map(Edns::max_payload),
        max_udp_payload,
    )
}

/// [`udp_limit`] from the client's advertised size, `None` without EDNS.
fn udp_limit_for(client_payload: Option<u16>, max_udp_payload: u16) -> usize {
    match client_payload {
        None => PLAIN_UDP_LIMIT,
        Some(size) => {
            let client = usize::from(size).max(PLAIN_UDP_LIMIT);
            client.min(usize::from(max_udp_payload).max(PLAIN_UDP_LIMIT))
        }
    }
}

/// Shrinks `response` until it fits `limit` bytes, in the order RFC 2181 section 9 allows:
/// additional records first (no TC needed), then authority and answers with TC set.
/// `None` if the message cannot be encoded at all.
pub(crate) fn fit_udp(mut response: Message, limit: usize) -> Option<Fitted> {
    let bytes = response.to_vec().ok()?;
    if bytes.len() <= limit {
        return Some(Fitted::Whole(bytes));
    }

    // The OPT lives outside `additionals`, so it survives this.
    response.additionals.clear();
    response.signature = None;
    let bytes = response.to_vec().ok()?;
    if bytes.len() <= limit {
        return Some(Fitted::Whole(bytes));
    }
    let whole_len = bytes.len();

    response.metadata.truncation = true;
    response.authorities.clear();
    let answers = std::mem::take(&mut response.answers);
    let mut encode_prefix = |count: usize| -> Option<Vec<u8>> {
        response.answers = answers[..count].to_vec();
        response.to_vec().ok()
    };

    let Some(mut best) = encode_prefix(0).filter(|bytes| bytes.len() <= limit) else {
        // Even the question (or the handler's OPT options) is too big: send the bare header so
        // the client at least learns to retry over TCP.
        let mut bare = Message::response(response.metadata.id, response.metadata.op_code);
        bare.metadata = response.metadata;
        return bare.to_vec().ok().map(Fitted::Truncated);
    };
    // Encoded size grows with the number of records, so binary search for the longest prefix of
    // whole answer records that fits. Invariant: `low` fits, nothing above `high` does.
    let (mut low, mut high) = (0, answers.len());
    // Records of one answer encode to nearly the same size (names compress to pointers), so the
    // first probes go where the average record size puts the limit, and the one after it: a
    // large answer then takes two encodings instead of a binary search's seven or more.
    let per_record = whole_len
        .saturating_sub(best.len())
        .div_ceil(answers.len().max(1));
    let guess = (limit - best.len())
        .checked_div(per_record)
        .unwrap_or(0)
        .min(answers.len());
    let mut probes = [guess, guess + 1].into_iter();
    while low < high {
        let mid = probes
            .next()
            .filter(|&probe| low < probe && probe <= high)
            .unwrap_or_else(|| low + (high - low).div_ceil(2));
        match encode_prefix(mid) {
            Some(bytes) if bytes.len() <= limit => {
                low = mid;
                best = bytes;
            }
            Some(_) => high = mid - 1,
            None => return None,
        }
    }
    Some(Fitted::Truncated(best))
}

/// TCP carries whole messages, up to the 16-bit length prefix; beyond that the answer cannot be
/// delivered at all and SERVFAIL (from the caller) is the honest reply.
pub(crate) fn fit_tcp(response: Message) -> Option<Fitted> {
    let bytes = response.to_vec().ok()?;
    // The encoder stops at 65535 bytes by itself and sets TC on what it wrote; a TC the handler
    // did not ask for means records were lost.
    let cut = !response.metadata.truncation && bytes.get(2).is_some_and(|flags| flags & TC != 0);
    (!cut && bytes.len() <= usize::from(u16::MAX)).then_some(Fitted::Whole(bytes))
}

/// Reads one length-prefixed message. Never allocates more than the prefix allows (65535 bytes),
/// and refuses frames too short to hold a header.
pub(crate) async fn read_frame<R: AsyncRead + Unpin>(reader: &mut R) -> io::Result<Vec<u8>> {
    let mut prefix = [0u8; 2];
    reader.read_exact(&mut prefix).await?;
    let len = usize::from(u16::from_be_bytes(prefix));
    if len < HEADER_LEN {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "frame shorter than a DNS header",
        ));
    }
    let mut message = vec![0u8; len];
    reader.read_exact(&mut message).await?;
    Ok(message)
}

/// Prepends the 2-byte length prefix, so the frame goes out in one write.
/// `None` if `message` is too long to frame.
pub(crate) fn frame(message: &[u8]) -> Option<Vec<u8>> {
    let len = u16::try_from(message.len()).ok()?;
    let mut framed = Vec::with_capacity(message.len() + 2);
    framed.extend_from_slice(&len.to_be_bytes());
    framed.extend_from_slice(message);
    Some(framed)
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use hickory_proto::rr::rdata::A;
    use hickory_proto::rr::{Name, RData, Record, RecordType};
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    use super::*;

    fn query(edns: Option<u16>) -> Message {
        let mut message = Message::query();
        message.add_query(Query::query(
            Name::from_ascii("many.example.").expect("valid name"),
            RecordType::A,
        ));
        message.edns = edns.map(server_edns);
        message
    }

    fn a_record(i: usize) -> Record {
        let name = Name::from_ascii("many.example.").expect("valid name");
        let ip = Ipv4Addr::from(0x0a00_0000 + u32::try_from(i).expect("small index"));
        Record::from_rdata(name, 60, RData::A(A(ip)))
    }

    fn response(request: &Message, answers: usize, additionals: usize) -> Message {
        let mut response = Message::response(request.metadata.id, OpCode::Query);
        response.queries.clone_from(&request.queries);
        response.answers = (0..answers).map(a_record).collect();
        response.additionals = (0..additionals).map(a_record).collect();
        response
    }

    fn decoded(fitted: Option<Fitted>) -> (Message, usize, bool) {
        let (bytes, truncated) = match fitted.expect("fits") {
            Fitted::Whole(bytes) => (bytes, false),
            Fitted::Truncated(bytes) => (bytes, true),
            Fitted::ServFail(_) => panic!("unexpected SERVFAIL"),
        };
        let len = bytes.len();
        (Message::from_vec(&bytes).expect("decodes"), len, truncated)
    }

    #[test]
    fn udp_limit_is_512_without_edns_and_the_smaller_of_both_sizes_with_it() {
        assert_eq!(udp_limit(&query(None), 4096), 512);
        assert_eq!(udp_limit(&query(Some(1232)), 4096), 1232);
        assert_eq!(udp_limit(&query(Some(8192)), 4096), 4096);
        assert_eq!(udp_limit(&query(Some(100)), 4096), 512);
        assert_eq!(udp_limit(&query(Some(4096)), 100), 512);
    }

    #[test]
    fn a_response_that_fits_is_sent_unchanged() {
        let request = query(None);
        let (message, _, truncated) = decoded(fit_udp(response(&request, 3, 1), 512));
        assert!(!truncated && !message.metadata.truncation);
        assert_eq!((message.answers.len(), message.additionals.len()), (3, 1));
    }

    #[test]
    fn additional_records_go_before_any_answer_and_without_tc() {
        let request = query(None);
        let (message, len, truncated) = decoded(fit_udp(response(&request, 20, 40), 512));
        assert!(len <= 512);
        assert!(!truncated && !message.metadata.truncation);
        assert_eq!((message.answers.len(), message.additionals.len()), (20, 0));
    }

    #[test]
    fn answers_are_cut_to_the_longest_prefix_that_fits_and_tc_is_set() {
        let request = query(None);
        let (message, len, truncated) = decoded(fit_udp(response(&request, 200, 5), 512));
        assert!(truncated && message.metadata.truncation);
        assert!(len <= 512);
        assert!(message.additionals.is_empty() && message.authorities.is_empty());
        // One more record (16 bytes with a compressed name) would not have fitted.
        assert!(len + 16 > 512, "{len} bytes leaves room for another record");
        assert_eq!(
            message.answers[..],
            response(&request, message.answers.len(), 0).answers[..]
        );
    }

    #[test]
    fn answers_of_uneven_sizes_are_cut_to_the_longest_prefix_that_fits() {
        let request = query(None);
        let mut rng = StdRng::seed_from_u64(7);
        for round in 0..50 {
            // Names of random lengths, so the average record size misleads the first probe.
            let mut full = response(&request, 0, 0);
            full.answers = (0..rng.random_range(1..120))
                .map(|i| {
                    let label = "x".repeat(rng.random_range(1..40));
                    let name = Name::from_ascii(format!("{label}{i}.many.example.")).expect("name");
                    Record::from_rdata(name, 60, RData::A(A(Ipv4Addr::LOCALHOST)))
                })
                .collect();
            let longest = (0..=full.answers.len())
                .filter(|&count| {
                    let mut prefix = full.clone();
                    prefix.answers.truncate(count);
                    prefix.metadata.truncation = true;
                    prefix.to_vec().expect("encodes").len() <= 512
                })
                .max()
                .expect("the question alone fits");
            let (message, len, _) = decoded(fit_udp(full.clone(), 512));
            assert!(len <= 512, "round {round}");
            assert_eq!(message.answers.len(), longest, "round {round}");
        }
    }

    #[test]
    fn the_opt_record_survives_truncation() {
        let request = query(Some(1232));
        let fitting = Fitting::new(&request, Protocol::Udp, 4096);
        let (message, len, truncated) = decoded(fitting.fit(response(&request, 200, 5)));
        assert!(truncated && len <= 1232);
        assert!(message.edns.is_some());
    }

    #[test]
    fn edns_queries_get_an_opt_back_and_plain_queries_do_not() {
        let request = query(Some(1232));
        let fitting = Fitting::new(&request, Protocol::Udp, 4096);
        let (message, _, _) = decoded(fitting.fit(response(&request, 1, 0)));
        assert_eq!(message.edns.map(|edns| edns.max_payload()), Some(4096));

        let request = query(None);
        let fitting = Fitting::new(&request, Protocol::Udp, 4096);
        let mut with_opt = response(&request, 1, 0);
        with_opt.edns = Some(server_edns(4096));
        let (message, _, _) = decoded(fitting.fit(with_opt));
        assert!(message.edns.is_none());
    }

    #[test]
    fn tcp_sends_everything_up_to_64k_and_servfail_beyond() {
        let request = query(None);
        let fitting = Fitting::new(&request, Protocol::Tcp, 4096);
        let (message, _, truncated) = decoded(fitting.fit(response(&request, 200, 5)));
        assert!(!truncated);
        assert_eq!(message.answers.len(), 200);

        // 16 bytes per compressed A record: 5000 of them exceed the TCP frame.
        let Some(Fitted::ServFail(bytes)) = fitting.fit(response(&request, 5000, 0)) else {
            panic!("expected SERVFAIL");
        };
        let message = Message::from_vec(&bytes).expect("decodes");
        assert_eq!(message.metadata.response_code, ResponseCode::ServFail);
        assert_eq!(message.queries, request.queries);
        assert!(message.answers.is_empty());
    }

    const CLIENT: SocketAddr = SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::LOCALHOST), 5300);

    /// Whether `query` carries exactly what `vet` hands the handler for the same bytes.
    fn agrees_with_vet(query: &WireQuery<'_>, bytes: &[u8]) -> bool {
        let Verdict::Handle(message) = vet(bytes, 4096) else {
            return false;
        };
        let question = &message.queries[0];
        let name = Name::read(&mut BinDecoder::new(query.name)).expect("a name");
        query.id == message.metadata.id
            && query.recursion_desired == message.metadata.recursion_desired
            && query.checking_disabled == message.metadata.checking_disabled
            && name.eq_case(question.name())
            && query.qtype == question.query_type()
            && question.query_class() == DNSClass::IN
            && query.edns.map(|e| e.dnssec_ok) == message.edns.as_ref().map(|e| e.flags().dnssec_ok)
            && query.limit(4096) == udp_limit(&message, 4096)
    }

    fn plain_query(name: &str, edns: Option<(u16, bool)>) -> Message {
        let mut message = Message::query();
        message.metadata.id = 0x1234;
        message.metadata.recursion_desired = true;
        message.add_query(Query::query(
            Name::from_ascii(name).expect("name"),
            RecordType::AAAA,
        ));
        message.edns = edns.map(|(size, dnssec_ok)| {
            let mut edns = server_edns(size);
            edns.set_dnssec_ok(dnssec_ok);
            edns
        });
        message
    }

    #[test]
    fn plain_queries_are_read_from_their_bytes_as_vetting_reads_them() {
        for edns in [
            None,
            Some((1232, false)),
            Some((100, true)),
            Some((8192, true)),
        ] {
            for name in ["WwW.Example.COM.", ".", "a.b.c.d.e.f.g."] {
                let mut message = plain_query(name, edns);
                message.metadata.checking_disabled = edns.is_some();
                let bytes = message.to_vec().expect("encodes");
                let query = WireQuery::read(&bytes, CLIENT, Protocol::Udp).expect("plain");
                assert!(agrees_with_vet(&query, &bytes), "{name} {edns:?}");
                // As sent, though the encoder raised 100 to 512.
                assert_eq!(
                    query.edns.map(|e| e.max_payload),
                    edns.map(|(size, _)| size.max(512))
                );
            }
        }
        // The longest name there is: 255 octets in wire form.
        let longest = format!("{0}.{0}.{0}.{1}.", "x".repeat(63), "x".repeat(61));
        let bytes = plain_query(&longest, None).to_vec().expect("encodes");
        let query = WireQuery::read(&bytes, CLIENT, Protocol::Udp).expect("plain");
        assert_eq!(query.name.len(), MAX_WIRE_NAME);
        assert!(agrees_with_vet(&query, &bytes));
    }

    #[test]
    fn anything_but_a_plain_query_is_left_to_the_decoder() {
        let plain = plain_query("www.example.", Some((1232, false)))
            .to_vec()
            .expect("encodes");
        let not_plain = |bytes: &[u8]| WireQuery::read(bytes, CLIENT, Protocol::Udp).is_none();
        assert!(!not_plain(&plain));
        let edited = |edit: &dyn Fn(&mut Vec<u8>)| {
            let mut bytes = plain.clone();
            edit(&mut bytes);
            bytes
        };
        let question_end = plain.len() - 11;
        let cases: [(&str, Vec<u8>); 11] = [
            ("a response", edited(&|b| b[2] |= 0x80)),
            ("NOTIFY", edited(&|b| b[2] |= 4 << 3)),
            ("two questions", edited(&|b| b[5] = 2)),
            ("an answer record", edited(&|b| b[7] = 1)),
            ("two additional records", edited(&|b| b[11] = 2)),
            ("class CH", edited(&|b| b[question_end - 1] = 3)),
            ("EDNS version 1", edited(&|b| b[question_end + 6] = 1)),
            ("an OPT owned by a name", edited(&|b| b[question_end] = 1)),
            (
                "EDNS options",
                edited(&|b| {
                    b.splice(plain.len() - 2.., [0, 4, 0, 10, 0, 0])
                        .for_each(drop)
                }),
            ),
            (
                "a pointer in the name",
                edited(&|b| b.splice(12..12, [0xC0, 12]).for_each(drop)),
            ),
            ("a name cut short", plain[..16].to_vec()),
        ];
        for (what, bytes) in cases {
            assert!(not_plain(&bytes), "{what}");
        }
        // One octet over the longest name (the encoder refuses to write it).
        let mut bytes = plain_query("x.", None).to_vec().expect("encodes");
        let label = |len: u8| std::iter::once(len).chain(std::iter::repeat_n(b'x', len.into()));
        let long = label(63).chain(label(63)).chain(label(63)).chain(label(62));
        bytes.splice(12..14, long.chain([0]));
        assert!(not_plain(&bytes));
        assert!(matches!(vet(&bytes, 4096), Verdict::Reject(_)));
    }

    #[test]
    fn whatever_is_read_as_a_plain_query_vets_to_the_same_request() {
        let mut rng = StdRng::seed_from_u64(0x7769_7265);
        let seeds = [
            plain_query("www.example.", None),
            plain_query("WWW.example.", Some((1232, true))),
        ];
        let mut read = 0;
        for _ in 0..50_000 {
            let mut bytes = seeds[rng.random_range(0..seeds.len())]
                .to_vec()
                .expect("encodes");
            for _ in 0..rng.random_range(1..4) {
                let at = rng.random_range(0..bytes.len());
                bytes[at] = rng.random();
            }
            bytes.truncate(rng.random_range(HEADER_LEN..=bytes.len() + 1));
            if let Some(query) = WireQuery::read(&bytes, CLIENT, Protocol::Udp) {
                read += 1;
                assert!(agrees_with_vet(&query, &bytes), "{bytes:02x?}");
            }
        }
        // The mutations must leave enough plain queries for the comparison to mean something.
        assert!(read > 1_000, "only {read} mutated queries were plain");
    }

    #[test]
    fn vetting_never_panics_on_mutated_queries() {
        let mut request = query(Some(1232));
        request.add_additional(a_record(1));
        let valid = request.to_vec().expect("encodes");
        let mut rng = StdRng::seed_from_u64(0x6b64_6e73);
        for _ in 0..20_000 {
            let mut bytes = valid.clone();
            for _ in 0..rng.random_range(1..8) {
                let at = rng.random_range(0..bytes.len());
                bytes[at] = rng.random();
            }
            bytes.truncate(rng.random_range(0..=bytes.len()));
            if let Verdict::Reject(reply) | Verdict::Handle(reply) = vet(&bytes, 4096) {
                // Whatever came through must re-encode for the reply path.
                let _ = reply.to_vec();
            }
        }
    }
}
