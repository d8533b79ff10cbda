//! Response rate limiting (`--rate-limit`), after BIND's RRL: a cap on UDP answers per second to
//! one client network, so the pod cannot be used to reflect traffic at a spoofed victim and one
//! noisy client cannot take every answer.
//!
//! Clients are grouped by prefix (`--rate-limit-ipv4-prefix`, default /24;
//! `--rate-limit-ipv6-prefix`, default /56), since a spoofer or a flood rarely sticks to one
//! address. Each group has a token bucket holding at most one second's worth of answers and
//! refilled at `--rate-limit` per second. A request that finds the bucket empty is limited: every
//! `--rate-limit-slip`th limited request gets an empty reply with TC set (a real client retries
//! over TCP, which is never limited; a victim of reflection gets nothing larger than the query),
//! the others get nothing. Slip 0 never slips; slip 1 slips every one.
//!
//! The table of groups is bounded ([`TABLE_SIZE`]): the least recently seen group is forgotten
//! first, which at worst gives a forgotten group a full bucket again.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::num::NonZeroUsize;
use std::sync::{Mutex, PoisonError};

use kdns_net::{Limit, ResponseLimiter};
use lru::LruCache;
use tokio::time::Instant;

use crate::metrics::Metrics;

/// Client groups remembered at once.
pub const TABLE_SIZE: usize = 65_536;

/// The settings of `--rate-limit` and its companions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateLimit {
    /// Answers per second to one client group; also the burst it may take at once.
    pub per_second: u32,
    /// Every `slip`th limited request gets a truncated reply; 0 never.
    pub slip: u32,
    /// IPv4 clients are grouped by this prefix length (0-32).
    pub ipv4_prefix: u8,
    /// IPv6 clients are grouped by this prefix length (0-128).
    pub ipv6_prefix: u8,
}

impl RateLimit {
    /// `per_second` answers per second per /24 or /56, slipping every second limited request,
    /// as BIND's defaults do.
    pub fn new(per_second: u32) -> Self {
        Self {
            per_second,
            slip: 2,
            ipv4_prefix: 24,
            ipv6_prefix: 56,
        }
    }

    /// The group `client` is counted in: its address with the host bits cleared. An IPv4
    /// client on an IPv6 socket counts as IPv4.
    pub fn group(&self, client: IpAddr) -> IpAddr {
        match client.to_canonical() {
            IpAddr::V4(ip) => {
                let bits = u32::from(ip) & mask32(self.ipv4_prefix);
                IpAddr::V4(Ipv4Addr::from(bits))
            }
            IpAddr::V6(ip) => {
                let bits = u128::from(ip) & mask128(self.ipv6_prefix);
                IpAddr::V6(Ipv6Addr::from(bits))
            }
        }
    }
}

fn mask32(prefix: u8) -> u32 {
    match u32::from(prefix.min(32)) {
        0 => 0,
        len => u32::MAX << (32 - len),
    }
}

fn mask128(prefix: u8) -> u128 {
    match u32::from(prefix.min(128)) {
        0 => 0,
        len => u128::MAX << (128 - len),
    }
}

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    refilled: Instant,
    /// Requests limited so far, for the slip count.
    limited: u64,
}

/// The limiter the server consults before answering a UDP request.
#[derive(Debug)]
pub struct RateLimiter {
    limit: RateLimit,
    buckets: Mutex<LruCache<IpAddr, Bucket>>,
    metrics: Metrics,
}

impl RateLimiter {
    /// A limiter with an empty table, counting what it does in `metrics`.
    pub fn new(limit: RateLimit, metrics: Metrics) -> Self {
        let size = NonZeroUsize::new(TABLE_SIZE).expect("a nonzero constant");
        Self {
            limit,
            buckets: Mutex::new(LruCache::new(size)),
            metrics,
        }
    }

    /// The verdict for one request from `client` at `now`.
    pub fn check_at(&self, client: IpAddr, now: Instant) -> Limit {
        let rate = f64::from(self.limit.per_second);
        let group = self.limit.group(client);
        let mut buckets = self.buckets.lock().unwrap_or_else(PoisonError::into_inner);
        let bucket = buckets.get_or_insert_mut(group, || Bucket {
            tokens: rate,
            refilled: now,
            limited: 0,
        });
        let elapsed = now.saturating_duration_since(bucket.refilled).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * rate).min(rate);
        bucket.refilled = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            return Limit::Answer;
        }
        bucket.limited += 1;
        let slip = u64::from(self.limit.slip);
        let verdict = if slip != 0 && bucket.limited.is_multiple_of(slip) {
            Limit::Slip
        } else {
            Limit::Drop
        };
        drop(buckets);
        self.metrics.rate_limited(verdict == Limit::Slip);
        verdict
    }
}

impl ResponseLimiter for RateLimiter {
    fn check(&self, client: IpAddr) -> Limit {
        self.check_at(client, Instant::now())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("valid address")
    }

    fn verdicts(limiter: &RateLimiter, client: &str, n: usize, now: Instant) -> Vec<Limit> {
        (0..n).map(|_| limiter.check_at(ip(client), now)).collect()
    }

    #[test]
    fn clients_are_grouped_by_prefix() {
        let limit = RateLimit::new(10);
        assert_eq!(limit.group(ip("192.0.2.77")), ip("192.0.2.0"));
        assert_eq!(limit.group(ip("::ffff:192.0.2.77")), ip("192.0.2.0"));
        assert_eq!(limit.group(ip("2001:db8:1:2ff::1")), ip("2001:db8:1:200::"));
        let whole = RateLimit {
            ipv4_prefix: 32,
            ipv6_prefix: 128,
            ..limit
        };
        assert_eq!(whole.group(ip("192.0.2.77")), ip("192.0.2.77"));
        let all = RateLimit {
            ipv4_prefix: 0,
            ..limit
        };
        assert_eq!(all.group(ip("192.0.2.77")), ip("0.0.0.0"));
    }

    #[tokio::test(start_paused = true)]
    async fn a_burst_beyond_the_rate_is_limited_with_every_second_one_slipped() {
        let limiter = RateLimiter::new(RateLimit::new(3), Metrics::new());
        let now = Instant::now();
        let got = verdicts(&limiter, "192.0.2.1", 7, now);
        use Limit::{Answer, Drop, Slip};
        assert_eq!(got, [Answer, Answer, Answer, Drop, Slip, Drop, Slip]);
        // Another address in the same /24 shares the bucket; another /24 does not.
        assert_eq!(limiter.check_at(ip("192.0.2.200"), now), Drop);
        assert_eq!(limiter.check_at(ip("192.0.3.1"), now), Answer);
    }

    #[tokio::test(start_paused = true)]
    async fn the_bucket_refills_at_the_rate_and_never_beyond_one_second() {
        let limiter = RateLimiter::new(RateLimit::new(10), Metrics::new());
        let t0 = Instant::now();
        assert!(
            verdicts(&limiter, "192.0.2.1", 10, t0)
                .iter()
                .all(|v| *v == Limit::Answer)
        );
        assert_ne!(limiter.check_at(ip("192.0.2.1"), t0), Limit::Answer);
        let later = t0 + Duration::from_millis(500);
        let answered = verdicts(&limiter, "192.0.2.1", 10, later)
            .iter()
            .filter(|v| **v == Limit::Answer)
            .count();
        assert_eq!(answered, 5, "half a second refills half the rate");
        let much_later = later + Duration::from_secs(60);
        let answered = verdicts(&limiter, "192.0.2.1", 30, much_later)
            .iter()
            .filter(|v| **v == Limit::Answer)
            .count();
        assert_eq!(answered, 10, "the burst is one second's worth");
    }

    #[tokio::test(start_paused = true)]
    async fn slip_zero_never_slips_and_slip_one_always_does() {
        let now = Instant::now();
        let never = RateLimiter::new(
            RateLimit {
                slip: 0,
                ..RateLimit::new(1)
            },
            Metrics::new(),
        );
        assert_eq!(
            verdicts(&never, "192.0.2.1", 4, now),
            [Limit::Answer, Limit::Drop, Limit::Drop, Limit::Drop]
        );
        let always = RateLimiter::new(
            RateLimit {
                slip: 1,
                ..RateLimit::new(1)
            },
            Metrics::new(),
        );
        assert_eq!(
            verdicts(&always, "192.0.2.1", 3, now),
            [Limit::Answer, Limit::Slip, Limit::Slip]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn limited_requests_are_counted_in_the_metrics() {
        let metrics = Metrics::new();
        let limiter = RateLimiter::new(RateLimit::new(1), metrics.clone());
        verdicts(&limiter, "192.0.2.1", 5, Instant::now());
        let page = metrics.encode();
        assert!(
            page.contains(r#"dnsmasq_rate_limited_total{action="dropped"} 2"#),
            "{page}"
        );
        assert!(
            page.contains(r#"dnsmasq_rate_limited_total{action="slipped"} 2"#),
            "{page}"
        );
    }
}
