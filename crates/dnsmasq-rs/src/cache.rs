//! The response cache: whole upstream responses keyed by question, with TTLs that count down.
//!
//! Every method that needs the time takes `now`, so tests drive the clock.
//!
//! What is cached (see [`Cacheability`]):
//! - NOERROR answers whose records all belong to the question's name or its CNAME chain, for the
//!   smallest TTL in the answer, clamped by `--min-cache-ttl` and `--max-cache-ttl`;
//! - NXDOMAIN and NODATA (RFC 2308) for the SOA's `min(TTL, MINIMUM)`, capped by `--neg-ttl`;
//!   without an SOA only when `--neg-ttl` is given; never with `--no-negcache`.
//!
//! Never cached: SERVFAIL and every other rcode, truncated responses, responses whose question
//! differs from the key, answers with records outside the question's chain, and anything whose
//! TTL comes to 0. Authority and additional records outside the upstream's bailiwick are
//! scrubbed before an answer gets here ([`crate::bailiwick`]).
//!
//! The bound is in records, as dnsmasq's `--cache-size` is: a cached answer weighs as many
//! records as it holds (a negative one weighs 1, plus 1 for its SOA), and the least recently
//! used entries go first. The insertion and eviction counts use the same unit, so the CHAOS
//! statistics read like dnsmasq's.

use std::borrow::Borrow;
use std::collections::VecDeque;
use std::time::Duration;

use foldhash::quality::RandomState;
use hickory_proto::op::{Header, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};
use hickory_proto::serialize::binary::{BinDecodable, BinDecoder};
use kdns_net::{MAX_WIRE_NAME, WireQuery};
use lru::LruCache;
use tokio::time::Instant;

/// dnsmasq caps `--min-cache-ttl` at one hour; so do we.
pub const MAX_MIN_CACHE_TTL: u32 = 3600;

/// How many recent invalidations are remembered to stop stale in-flight answers from being
/// cached; an answer that started before the oldest remembered one is not cached at all.
const INVALIDATION_LOG: usize = 256;

/// What a cached response is keyed by. Names compare case-sensitively, so a client using
/// 0x20 case randomisation gets back exactly the case it asked with; the DO and CD bits are
/// part of the key because they change what an upstream puts in the answer.
///
/// Held as bytes: the DO and CD bits, the type and the class, then the name in wire form. A
/// plain query's bytes hold the same name, so a lookup ([`WireKey`]) needs no decoding.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct CacheKey(Box<[u8]>);

/// The bytes before the name in a key.
const KEY_PREFIX: usize = 5;
const KEY_DO: u8 = 1;
const KEY_CD: u8 = 2;

impl CacheKey {
    /// The key for a request's first question and DO/CD bits; `None` without a question.
    pub fn for_request(request: &Message) -> Option<Self> {
        let query = request.queries.first()?;
        Some(Self::new(
            query,
            request.edns.as_ref().is_some_and(|e| e.flags().dnssec_ok),
            request.metadata.checking_disabled,
        ))
    }

    /// The key for `query` with the given DO and CD bits.
    pub fn new(query: &Query, dnssec_ok: bool, checking_disabled: bool) -> Self {
        let mut bytes = Vec::with_capacity(KEY_PREFIX + query.name().len() + 1);
        bytes.extend_from_slice(&key_prefix(
            query.query_type(),
            query.query_class(),
            dnssec_ok,
            checking_disabled,
        ));
        push_wire_name(query.name(), &mut bytes);
        Self(bytes.into_boxed_slice())
    }

    /// The question's name, in the case it was asked.
    pub fn name(&self) -> Name {
        // Written from a valid name by `new`, so it reads back.
        Name::read(&mut BinDecoder::new(&self.0[KEY_PREFIX..])).unwrap_or_else(|_| Name::root())
    }

    /// The question's type.
    pub fn qtype(&self) -> RecordType {
        RecordType::from(u16::from_be_bytes([self.0[1], self.0[2]]))
    }

    fn qclass(&self) -> DNSClass {
        DNSClass::from(u16::from_be_bytes([self.0[3], self.0[4]]))
    }
}

impl Borrow<[u8]> for CacheKey {
    fn borrow(&self) -> &[u8] {
        &self.0
    }
}

impl AsRef<[u8]> for CacheKey {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

/// A [`CacheKey`] for looking up a plain query, built on the stack from its bytes.
#[derive(Clone, Debug)]
pub struct WireKey {
    bytes: [u8; KEY_PREFIX + MAX_WIRE_NAME],
    len: usize,
}

impl WireKey {
    /// The key for `query`'s question (class IN) and DO/CD bits.
    pub fn new(query: &WireQuery<'_>) -> Self {
        let mut bytes = [0; KEY_PREFIX + MAX_WIRE_NAME];
        let dnssec_ok = query.edns.is_some_and(|edns| edns.dnssec_ok);
        bytes[..KEY_PREFIX].copy_from_slice(&key_prefix(
            query.qtype,
            DNSClass::IN,
            dnssec_ok,
            query.checking_disabled,
        ));
        let len = KEY_PREFIX + query.name.len();
        // A `WireQuery`'s name is at most `MAX_WIRE_NAME` octets.
        bytes[KEY_PREFIX..len].copy_from_slice(query.name);
        Self { bytes, len }
    }
}

impl AsRef<[u8]> for WireKey {
    fn as_ref(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

/// Appends `name` in wire form, uncompressed and in its own case.
pub(crate) fn push_wire_name(name: &Name, out: &mut Vec<u8>) {
    for label in name.iter() {
        // Labels are at most 63 octets long.
        out.push(label.len() as u8);
        out.extend_from_slice(label);
    }
    out.push(0);
}

fn key_prefix(
    qtype: RecordType,
    qclass: DNSClass,
    dnssec_ok: bool,
    checking_disabled: bool,
) -> [u8; KEY_PREFIX] {
    let [type_hi, type_lo] = u16::from(qtype).to_be_bytes();
    let [class_hi, class_lo] = u16::from(qclass).to_be_bytes();
    let flags = if dnssec_ok { KEY_DO } else { 0 } | if checking_disabled { KEY_CD } else { 0 };
    [flags, type_hi, type_lo, class_hi, class_lo]
}

/// TTL limits and policies, from the dnsmasq flags of the same names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CachePolicy {
    /// `--cache-size`: the bound, in records. 0 turns caching off.
    pub capacity: usize,
    /// `--min-cache-ttl`: shorter TTLs are raised to this (at most [`MAX_MIN_CACHE_TTL`]).
    pub min_ttl: u32,
    /// `--max-cache-ttl`: longer TTLs are cut to this.
    pub max_ttl: Option<u32>,
    /// Cache NXDOMAIN and NODATA (off with `--no-negcache`).
    pub negative: bool,
    /// `--neg-ttl`: caps negative TTLs, and is the TTL of negative answers without an SOA.
    pub neg_ttl: Option<u32>,
}

impl Default for CachePolicy {
    /// dnsmasq's defaults: 150 records, negative caching on, no clamps.
    fn default() -> Self {
        Self {
            capacity: 150,
            min_ttl: 0,
            max_ttl: None,
            negative: true,
            neg_ttl: None,
        }
    }
}

/// Whether and how long a response may be cached.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cacheability {
    /// A positive answer, for this many seconds.
    Positive(u32),
    /// NXDOMAIN or NODATA, for this many seconds.
    Negative(u32),
    /// Not cacheable, for the reason given.
    No(&'static str),
}

impl CachePolicy {
    /// Decides whether `response` to `query` may be cached, and for how long.
    pub fn cacheability(&self, query: &Query, response: &Message) -> Cacheability {
        if self.capacity == 0 {
            return Cacheability::No("cache disabled");
        }
        if response.metadata.truncation {
            return Cacheability::No("truncated");
        }
        match response.queries.as_slice() {
            [echoed]
                if echoed.query_type() == query.query_type()
                    && echoed.query_class() == query.query_class()
                    && echoed.name().eq_ignore_root(query.name()) => {}
            _ => return Cacheability::No("question differs"),
        }
        let rcode = response.metadata.response_code;
        let negative = match rcode {
            ResponseCode::NXDomain => true,
            ResponseCode::NoError => response.answers.is_empty(),
            _ => return Cacheability::No("rcode"),
        };
        if negative {
            if !self.negative {
                return Cacheability::No("negative caching off");
            }
            let ttl = match soa_negative_ttl(query.name(), response) {
                Some(ttl) => self.neg_ttl.map_or(ttl, |cap| ttl.min(cap)),
                None => match self.neg_ttl {
                    Some(ttl) => ttl,
                    None => return Cacheability::No("negative answer without SOA"),
                },
            };
            return match self.clamp(ttl) {
                0 => Cacheability::No("zero TTL"),
                ttl => Cacheability::Negative(ttl),
            };
        }
        if !answers_follow_question(query, &response.answers) {
            return Cacheability::No("answer outside the question's chain");
        }
        let Some(ttl) = response.answers.iter().map(|r| self.clamp(r.ttl)).min() else {
            return Cacheability::No("no answers");
        };
        match ttl {
            0 => Cacheability::No("zero TTL"),
            ttl => Cacheability::Positive(ttl),
        }
    }

    fn clamp(&self, ttl: u32) -> u32 {
        let ttl = ttl.max(self.min_ttl.min(MAX_MIN_CACHE_TTL));
        self.max_ttl.map_or(ttl, |max| ttl.min(max))
    }
}

/// RFC 2308 section 5: a negative answer lives for the SOA's TTL or its MINIMUM, whichever is
/// less. Only an SOA of a zone the name is in counts.
fn soa_negative_ttl(qname: &Name, response: &Message) -> Option<u32> {
    response
        .authorities
        .iter()
        .find_map(|record| match &record.data {
            RData::SOA(soa) if record.name.zone_of(qname) => Some(record.ttl.min(soa.minimum)),
            _ => None,
        })
}

/// Whether every answer record is owned by the question's name or by a name its CNAMEs lead
/// to, and is of the asked type, a CNAME or a signature. Anything else is an upstream putting
/// records about other names into the answer, which must not reach the cache.
fn answers_follow_question(query: &Query, answers: &[Record]) -> bool {
    let mut owners: Vec<&Name> = vec![query.name()];
    for record in answers {
        if !owners
            .iter()
            .any(|owner| owner.eq_ignore_root(&record.name))
        {
            return false;
        }
        match (&record.data, record.record_type()) {
            (RData::CNAME(target), _) => owners.push(&target.0),
            (_, RecordType::RRSIG) => {}
            (_, rtype) if rtype == query.query_type() || query.query_type() == RecordType::ANY => {}
            _ => return false,
        }
    }
    true
}

struct Entry {
    /// The response as received, TTLs already clamped, OPT and signature removed, encoded.
    encoded: Encoded,
    inserted: Instant,
    expires: Instant,
    /// Records counted against the bound.
    weight: usize,
}

/// A cached response in wire form, so that a hit is a copy and a few patched fields instead of
/// a decoded message cloned and encoded again.
///
/// The header is a response's with ID 0, AA clear (a cache is not the authority), RA set, and
/// RD and CD clear: the client's request supplies the ID, RD and CD. There is no OPT record;
/// the client's EDNS decides that. TTLs are patched in on the way out.
struct Encoded {
    bytes: Box<[u8]>,
    ttls: Box<[TtlSlot]>,
}

/// Where one record's TTL sits in [`Encoded::bytes`], and its value when stored.
#[derive(Clone, Copy)]
struct TtlSlot {
    offset: u16,
    ttl: u32,
    /// The SOA of a negative answer: it says how long the whole answer may be kept, so it
    /// counts down to the entry's expiry (RFC 2308 section 5).
    negative_soa: bool,
}

impl Encoded {
    /// Encodes `response` and finds its TTL fields by decoding the result.
    fn new(response: &Message, negative: bool) -> Option<Self> {
        let bytes = response.to_vec().ok()?;
        let mut decoder = BinDecoder::new(&bytes);
        let header = Header::read(&mut decoder).ok()?;
        for _ in 0..header.counts.queries {
            Query::read(&mut decoder).ok()?;
        }
        let sections = [
            (header.counts.answers, false),
            (header.counts.authorities, negative),
            (header.counts.additionals, false),
        ];
        let mut ttls = Vec::new();
        for (count, negative_section) in sections {
            for _ in 0..count {
                Name::read(&mut decoder).ok()?;
                let rtype = RecordType::from(decoder.read_u16().ok()?.unverified());
                decoder.read_u16().ok()?;
                let offset = u16::try_from(decoder.index()).ok()?;
                let ttl = decoder.read_u32().ok()?.unverified();
                let rdata_len = decoder.read_u16().ok()?.unverified();
                decoder.read_slice(usize::from(rdata_len)).ok()?;
                ttls.push(TtlSlot {
                    offset,
                    ttl,
                    negative_soa: negative_section && rtype == RecordType::SOA,
                });
            }
        }
        // Copied into allocations of their exact size: shrinking the encoder's larger buffer
        // in place left a hole behind every entry that the next entry's buffer did not fit,
        // doubling the memory a full cache took.
        Some(Self {
            bytes: Box::from(bytes.as_slice()),
            ttls: Box::from(ttls.as_slice()),
        })
    }
}

/// What a hit from [`ResponseCache::get_encoded`] holds, read from its header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EncodedHit {
    /// The cached rcode (NOERROR or NXDOMAIN).
    pub rcode: ResponseCode,
    /// Records in the answer section.
    pub answers: u16,
}

/// What one insertion did, for the statistics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Inserted {
    /// Records inserted (0 when the response was not cached).
    pub records: usize,
    /// Records of unexpired entries evicted to make room.
    pub evicted: usize,
}

/// The cache. Not synchronised: the forwarder wraps it in a mutex.
pub struct ResponseCache {
    policy: CachePolicy,
    /// Keyed by a randomly seeded hash: the names come from clients, who must not be able to
    /// pick names that collide.
    entries: LruCache<CacheKey, Entry, RandomState>,
    /// Records held, the sum of the entries' weights.
    records: usize,
    /// Bumped by every invalidation; see [`ResponseCache::generation`].
    generation: u64,
    /// Recent invalidations, newest last: the generation they created and the name they
    /// covered.
    invalidations: VecDeque<(u64, Name)>,
}

impl std::fmt::Debug for ResponseCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseCache")
            .field("policy", &self.policy)
            .field("entries", &self.entries.len())
            .field("records", &self.records)
            .finish_non_exhaustive()
    }
}

impl ResponseCache {
    /// An empty cache.
    pub fn new(policy: CachePolicy) -> Self {
        Self {
            policy,
            entries: LruCache::unbounded_with_hasher(RandomState::default()),
            records: 0,
            generation: 0,
            invalidations: VecDeque::new(),
        }
    }

    /// The policy in force.
    pub fn policy(&self) -> &CachePolicy {
        &self.policy
    }

    /// Records held (never more than the capacity).
    pub fn records(&self) -> usize {
        self.records
    }

    /// Cached responses held.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// A copy of the cached response for `key` with its TTLs counted down to `now`, and AA
    /// cleared (a cache is not the authority). `None` on a miss or an expired entry, which is
    /// then dropped.
    pub fn get(&mut self, key: &impl AsRef<[u8]>, now: Instant) -> Option<Message> {
        let mut bytes = Vec::new();
        self.get_encoded(key, now, &mut bytes)?;
        Message::from_vec(&bytes).ok()
    }

    /// [`get`](Self::get) in wire form, appended to `out`: ID 0, RD and CD clear and no OPT
    /// record, for the caller to fill in from the request.
    pub fn get_encoded(
        &mut self,
        key: &impl AsRef<[u8]>,
        now: Instant,
        out: &mut Vec<u8>,
    ) -> Option<EncodedHit> {
        let key = key.as_ref();
        let entry = self.entries.get(key)?;
        if entry.expires <= now {
            self.remove(key);
            return None;
        }
        let elapsed =
            u32::try_from(now.duration_since(entry.inserted).as_secs()).unwrap_or(u32::MAX);
        let remaining =
            u32::try_from(entry.expires.duration_since(now).as_secs()).unwrap_or(u32::MAX);
        let start = out.len();
        out.extend_from_slice(&entry.encoded.bytes);
        let message = &mut out[start..];
        for slot in &entry.encoded.ttls {
            let ttl = if slot.negative_soa {
                remaining
            } else {
                slot.ttl.saturating_sub(elapsed)
            };
            let at = usize::from(slot.offset);
            if let Some(field) = message.get_mut(at..at + 4) {
                field.copy_from_slice(&ttl.to_be_bytes());
            }
        }
        Some(EncodedHit {
            rcode: ResponseCode::from_low(message[3] & 0x0F),
            answers: u16::from_be_bytes([message[6], message[7]]),
        })
    }

    /// Caches `response` to `key` if the policy allows; see the module docs. Returns what was
    /// inserted and evicted.
    pub fn insert(&mut self, key: CacheKey, response: &Message, now: Instant) -> Inserted {
        let name = key.name();
        let mut query = Query::query(name.clone(), key.qtype());
        query.set_query_class(key.qclass());
        let (ttl, negative) = match self.policy.cacheability(&query, response) {
            Cacheability::Positive(ttl) => (ttl, false),
            Cacheability::Negative(ttl) => (ttl, true),
            Cacheability::No(_) => return Inserted::default(),
        };
        let weight = if negative {
            1 + usize::from(soa_negative_ttl(&name, response).is_some())
        } else {
            response.answers.len().max(1)
        };
        if weight > self.policy.capacity {
            return Inserted::default();
        }
        let mut stored = response.clone();
        stored.metadata.id = 0;
        stored.metadata.message_type = MessageType::Response;
        stored.metadata.op_code = OpCode::Query;
        stored.metadata.authoritative = false;
        stored.metadata.recursion_desired = false;
        stored.metadata.recursion_available = true;
        stored.metadata.checking_disabled = false;
        // The question as the key has it: the client's case, which its request repeats.
        stored.queries = vec![query];
        stored.edns = None;
        stored.signature = None;
        for record in stored
            .answers
            .iter_mut()
            .chain(&mut stored.authorities)
            .chain(&mut stored.additionals)
        {
            record.ttl = self.policy.clamp(record.ttl);
        }
        let Some(encoded) = Encoded::new(&stored, negative) else {
            return Inserted::default();
        };
        self.remove(key.as_ref());
        let mut evicted = 0;
        while self.records + weight > self.policy.capacity {
            let Some((_, old)) = self.entries.pop_lru() else {
                break;
            };
            self.records -= old.weight;
            if old.expires > now {
                evicted += old.weight;
            }
        }
        self.records += weight;
        self.entries.put(
            key,
            Entry {
                encoded,
                inserted: now,
                expires: now + Duration::from_secs(u64::from(ttl)),
                weight,
            },
        );
        Inserted {
            records: weight,
            evicted,
        }
    }

    /// Like [`insert`](Self::insert), but only if nothing covering the key's name was
    /// invalidated since `generation` was read: an answer fetched before a NOTIFY is stale.
    pub fn insert_unless_invalidated(
        &mut self,
        key: CacheKey,
        response: &Message,
        now: Instant,
        generation: u64,
    ) -> Inserted {
        if generation != self.generation {
            let oldest_known = self
                .invalidations
                .front()
                .map_or(self.generation, |(g, _)| *g);
            if generation + 1 < oldest_known {
                return Inserted::default();
            }
            let name = key.name();
            let stale = self
                .invalidations
                .iter()
                .any(|(g, covering)| *g > generation && covering.zone_of(&name));
            if stale {
                return Inserted::default();
            }
        }
        self.insert(key, response, now)
    }

    /// The invalidation generation; pass it to
    /// [`insert_unless_invalidated`](Self::insert_unless_invalidated) after the fetch.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Drops every entry whose name is `name` or below it, in any case. Returns how many
    /// entries were dropped.
    pub fn invalidate(&mut self, name: &Name) -> usize {
        self.log_invalidation(name.clone());
        self.remove_where(|key| name.zone_of(&key.name()))
    }

    /// Drops every entry for which `stale` holds, logging `covering` as invalidated (so
    /// in-flight answers below it are not cached). Returns how many entries were dropped.
    pub fn invalidate_where(
        &mut self,
        covering: &[Name],
        stale: impl Fn(&CacheKey) -> bool,
    ) -> usize {
        for name in covering {
            self.log_invalidation(name.clone());
        }
        self.remove_where(stale)
    }

    fn log_invalidation(&mut self, name: Name) {
        self.generation += 1;
        self.invalidations.push_back((self.generation, name));
        while self.invalidations.len() > INVALIDATION_LOG {
            self.invalidations.pop_front();
        }
    }

    fn remove_where(&mut self, stale: impl Fn(&CacheKey) -> bool) -> usize {
        let keys: Vec<CacheKey> = self
            .entries
            .iter()
            .filter(|(key, _)| stale(key))
            .map(|(key, _)| key.clone())
            .collect();
        for key in &keys {
            self.remove(key.as_ref());
        }
        keys.len()
    }

    fn remove(&mut self, key: &[u8]) {
        if let Some(old) = self.entries.pop(key) {
            self.records -= old.weight;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use hickory_proto::op::{Edns, MessageType, OpCode};
    use test_support::{assert_records_eq, rr};

    use super::*;

    fn query(name: &str, rtype: RecordType) -> Query {
        Query::query(Name::from_ascii(name).expect("valid name"), rtype)
    }

    fn key(name: &str, rtype: RecordType) -> CacheKey {
        CacheKey::new(&query(name, rtype), false, false)
    }

    fn response(
        name: &str,
        rtype: RecordType,
        rcode: ResponseCode,
        answers: &[&str],
        authority: &[&str],
    ) -> Message {
        let mut message = Message::new(7, MessageType::Response, OpCode::Query);
        message.metadata.response_code = rcode;
        message.metadata.authoritative = true;
        message.add_query(query(name, rtype));
        message.answers = answers.iter().map(|line| rr(line)).collect();
        message.authorities = authority.iter().map(|line| rr(line)).collect();
        message
    }

    fn a(name: &str, ttl: u32) -> Message {
        let line = format!("{name} {ttl} IN A 192.0.2.1");
        response(name, RecordType::A, ResponseCode::NoError, &[&line], &[])
    }

    const SOA: &str = "example.com. 300 IN SOA ns.example.com. h.example.com. 1 2 3 4 30";

    fn cache(capacity: usize) -> ResponseCache {
        ResponseCache::new(CachePolicy {
            capacity,
            ..CachePolicy::default()
        })
    }

    #[tokio::test(start_paused = true)]
    async fn ttl_counts_down_on_hits_and_the_entry_expires_with_it() {
        let mut cache = cache(10);
        let t0 = Instant::now();
        cache.insert(
            key("www.example.com.", RecordType::A),
            &a("www.example.com.", 60),
            t0,
        );

        let hit = cache
            .get(
                &key("www.example.com.", RecordType::A),
                t0 + Duration::from_secs(16),
            )
            .expect("cached");
        assert_records_eq(&hit.answers, &["www.example.com. 44 IN A 192.0.2.1"]);
        assert!(
            !hit.metadata.authoritative,
            "cache hits are not authoritative"
        );

        assert!(
            cache
                .get(
                    &key("www.example.com.", RecordType::A),
                    t0 + Duration::from_secs(60)
                )
                .is_none()
        );
        assert_eq!(cache.records(), 0, "the expired entry is dropped");
    }

    #[tokio::test(start_paused = true)]
    async fn min_and_max_cache_ttl_clamp_what_is_stored() {
        let mut cache = ResponseCache::new(CachePolicy {
            capacity: 10,
            min_ttl: 30,
            max_ttl: Some(100),
            ..CachePolicy::default()
        });
        let t0 = Instant::now();
        cache.insert(
            key("short.example.", RecordType::A),
            &a("short.example.", 5),
            t0,
        );
        cache.insert(
            key("long.example.", RecordType::A),
            &a("long.example.", 86400),
            t0,
        );
        let short = cache
            .get(
                &key("short.example.", RecordType::A),
                t0 + Duration::from_secs(20),
            )
            .expect("kept for min-cache-ttl");
        assert_records_eq(&short.answers, &["short.example. 10 IN A 192.0.2.1"]);
        let long = cache
            .get(&key("long.example.", RecordType::A), t0)
            .expect("cached");
        assert_records_eq(&long.answers, &["long.example. 100 IN A 192.0.2.1"]);
        assert!(
            cache
                .get(
                    &key("long.example.", RecordType::A),
                    t0 + Duration::from_secs(100)
                )
                .is_none()
        );
    }

    #[tokio::test(start_paused = true)]
    async fn min_cache_ttl_is_capped_at_one_hour_as_in_dnsmasq() {
        let policy = CachePolicy {
            min_ttl: 7200,
            ..CachePolicy::default()
        };
        assert_eq!(
            policy.cacheability(&query("x.example.", RecordType::A), &a("x.example.", 1)),
            Cacheability::Positive(3600)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn nxdomain_is_cached_for_the_soa_minimum_and_the_soa_ttl_follows_the_entry() {
        let mut cache = cache(10);
        let t0 = Instant::now();
        let nx = response(
            "nx.example.com.",
            RecordType::A,
            ResponseCode::NXDomain,
            &[],
            &[SOA],
        );
        let inserted = cache.insert(key("nx.example.com.", RecordType::A), &nx, t0);
        assert_eq!(
            inserted.records, 2,
            "the negative entry and its SOA, as dnsmasq counts"
        );
        let hit = cache
            .get(
                &key("nx.example.com.", RecordType::A),
                t0 + Duration::from_secs(10),
            )
            .expect("cached");
        assert_eq!(hit.metadata.response_code, ResponseCode::NXDomain);
        assert_records_eq(
            &hit.authorities,
            &["example.com. 20 IN SOA ns.example.com. h.example.com. 1 2 3 4 30"],
        );
        assert!(
            cache
                .get(
                    &key("nx.example.com.", RecordType::A),
                    t0 + Duration::from_secs(30)
                )
                .is_none()
        );
    }

    #[tokio::test(start_paused = true)]
    async fn neg_ttl_caps_negative_answers_and_covers_those_without_an_soa() {
        let capped = CachePolicy {
            neg_ttl: Some(5),
            ..CachePolicy::default()
        };
        let nodata = response(
            "www.example.com.",
            RecordType::AAAA,
            ResponseCode::NoError,
            &[],
            &[SOA],
        );
        let q = query("www.example.com.", RecordType::AAAA);
        assert_eq!(capped.cacheability(&q, &nodata), Cacheability::Negative(5));
        let bare = response(
            "www.example.com.",
            RecordType::AAAA,
            ResponseCode::NXDomain,
            &[],
            &[],
        );
        assert_eq!(capped.cacheability(&q, &bare), Cacheability::Negative(5));
        assert!(matches!(
            CachePolicy::default().cacheability(&q, &bare),
            Cacheability::No(_)
        ));
    }

    #[tokio::test(start_paused = true)]
    async fn no_negcache_caches_no_negative_answer() {
        let policy = CachePolicy {
            negative: false,
            ..CachePolicy::default()
        };
        let nx = response(
            "nx.example.com.",
            RecordType::A,
            ResponseCode::NXDomain,
            &[],
            &[SOA],
        );
        assert!(matches!(
            policy.cacheability(&query("nx.example.com.", RecordType::A), &nx),
            Cacheability::No(_)
        ));
    }

    #[tokio::test(start_paused = true)]
    async fn servfail_truncated_mismatched_and_out_of_chain_answers_are_refused() {
        let policy = CachePolicy::default();
        let q = query("www.example.com.", RecordType::A);
        let servfail = response(
            "www.example.com.",
            RecordType::A,
            ResponseCode::ServFail,
            &[],
            &[],
        );
        let mut truncated = a("www.example.com.", 60);
        truncated.metadata.truncation = true;
        let other_question = a("evil.example.com.", 60);
        let out_of_chain = response(
            "www.example.com.",
            RecordType::A,
            ResponseCode::NoError,
            &[
                "www.example.com. 60 IN A 192.0.2.1",
                "bank.example. 60 IN A 6.6.6.6",
            ],
            &[],
        );
        let refused = response(
            "www.example.com.",
            RecordType::A,
            ResponseCode::Refused,
            &[],
            &[],
        );
        for bad in [servfail, truncated, other_question, out_of_chain, refused] {
            assert!(
                matches!(policy.cacheability(&q, &bad), Cacheability::No(_)),
                "{bad:?}"
            );
        }
        let chain = response(
            "www.example.com.",
            RecordType::A,
            ResponseCode::NoError,
            &[
                "www.example.com. 60 IN CNAME edge.example.net.",
                "edge.example.net. 20 IN A 192.0.2.9",
            ],
            &[],
        );
        assert_eq!(policy.cacheability(&q, &chain), Cacheability::Positive(20));
    }

    #[tokio::test(start_paused = true)]
    async fn case_type_class_and_dnssec_bits_never_share_an_entry() {
        let mut cache = cache(10);
        let t0 = Instant::now();
        cache.insert(
            key("www.example.com.", RecordType::A),
            &a("www.example.com.", 60),
            t0,
        );
        assert!(
            cache
                .get(&key("www.example.com.", RecordType::A), t0)
                .is_some()
        );
        assert!(
            cache
                .get(&key("WWW.example.com.", RecordType::A), t0)
                .is_none()
        );
        assert!(
            cache
                .get(&key("www.example.com.", RecordType::AAAA), t0)
                .is_none()
        );
        let q = query("www.example.com.", RecordType::A);
        assert!(cache.get(&CacheKey::new(&q, true, false), t0).is_none());
        assert!(cache.get(&CacheKey::new(&q, false, true), t0).is_none());
        let mut chaos = q.clone();
        chaos.set_query_class(DNSClass::CH);
        assert!(
            cache
                .get(&CacheKey::new(&chaos, false, false), t0)
                .is_none()
        );
    }

    #[tokio::test(start_paused = true)]
    async fn the_least_recently_used_entries_are_evicted_to_stay_within_the_bound() {
        let mut cache = cache(3);
        let t0 = Instant::now();
        for name in ["a.example.", "b.example.", "c.example."] {
            cache.insert(key(name, RecordType::A), &a(name, 60), t0);
        }
        assert!(cache.get(&key("a.example.", RecordType::A), t0).is_some());
        let two = response(
            "d.example.",
            RecordType::A,
            ResponseCode::NoError,
            &[
                "d.example. 60 IN A 192.0.2.1",
                "d.example. 60 IN A 192.0.2.2",
            ],
            &[],
        );
        let inserted = cache.insert(key("d.example.", RecordType::A), &two, t0);
        assert_eq!(
            inserted,
            Inserted {
                records: 2,
                evicted: 2
            }
        );
        assert_eq!(cache.records(), 3);
        assert!(
            cache.get(&key("a.example.", RecordType::A), t0).is_some(),
            "recently used"
        );
        assert!(cache.get(&key("b.example.", RecordType::A), t0).is_none());
        assert!(cache.get(&key("c.example.", RecordType::A), t0).is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn expired_entries_pushed_out_do_not_count_as_evictions() {
        let mut cache = cache(1);
        let t0 = Instant::now();
        cache.insert(key("a.example.", RecordType::A), &a("a.example.", 5), t0);
        let inserted = cache.insert(
            key("b.example.", RecordType::A),
            &a("b.example.", 5),
            t0 + Duration::from_secs(6),
        );
        assert_eq!(
            inserted,
            Inserted {
                records: 1,
                evicted: 0
            }
        );
    }

    #[tokio::test(start_paused = true)]
    async fn invalidation_drops_the_name_and_everything_below_it_in_any_case() {
        let mut cache = cache(10);
        let t0 = Instant::now();
        for name in [
            "web.shop.svc.cluster.local.",
            "x.web.shop.svc.cluster.local.",
            "db.shop.svc.cluster.local.",
            "www.example.com.",
        ] {
            cache.insert(key(name, RecordType::A), &a(name, 30), t0);
        }
        let dropped =
            cache.invalidate(&Name::from_ascii("WEB.shop.svc.cluster.local.").expect("valid"));
        assert_eq!(dropped, 2);
        assert!(
            cache
                .get(&key("db.shop.svc.cluster.local.", RecordType::A), t0)
                .is_some()
        );
        assert_eq!(
            cache.invalidate(&Name::from_ascii("cluster.local.").expect("valid")),
            1
        );
        assert!(
            cache
                .get(&key("www.example.com.", RecordType::A), t0)
                .is_some()
        );
    }

    #[tokio::test(start_paused = true)]
    async fn an_answer_fetched_before_an_invalidation_of_its_name_is_not_cached() {
        let mut cache = cache(10);
        let t0 = Instant::now();
        let before = cache.generation();
        cache.invalidate(&Name::from_ascii("shop.svc.cluster.local.").expect("valid"));
        let web = "web.shop.svc.cluster.local.";
        let other = "www.example.com.";
        assert_eq!(
            cache
                .insert_unless_invalidated(key(web, RecordType::A), &a(web, 30), t0, before)
                .records,
            0
        );
        assert_eq!(
            cache
                .insert_unless_invalidated(key(other, RecordType::A), &a(other, 30), t0, before)
                .records,
            1
        );
        let after = cache.generation();
        assert_eq!(
            cache
                .insert_unless_invalidated(key(web, RecordType::A), &a(web, 30), t0, after)
                .records,
            1
        );
    }

    #[tokio::test(start_paused = true)]
    async fn the_opt_record_is_not_stored() {
        let mut cache = cache(10);
        let t0 = Instant::now();
        let mut with_opt = a("www.example.com.", 60);
        with_opt.edns = Some(Edns::new());
        cache.insert(key("www.example.com.", RecordType::A), &with_opt, t0);
        let hit = cache
            .get(&key("www.example.com.", RecordType::A), t0)
            .expect("cached");
        assert!(hit.edns.is_none());
    }
}
