//! Helpers shared by the workspace's tests.
//!
//! This crate owns:
//! - [`FakeApiServer`]: an in-process stand-in for the Kubernetes API server that
//!   serves list, watch and discovery over real HTTP/1.1, so `kube::Client` and
//!   `kube::runtime::watcher` run unmodified against it, and lets a test inject the
//!   failures a real cluster produces (closed watches, `410 Gone`, restarts, 5xx).
//! - [`fixtures`]: builders for the Kubernetes objects the DNS server reads.
//! - [`FakeUpstream`]: an upstream DNS server answering one zone with documentation addresses.
//! - [`rr`], [`rrs`], [`assert_records_eq`]: DNS records written as zone-file lines.
//! - [`synthetic`]: seeded synthetic clusters of any size, and dnsperf query files for them.
//! - [`dig()`], [`dig_async`]: the real `dig` binary run against a server under test.
//! - [`subscribe`], [`timeout_after`]: test logging and hang protection.

pub mod dig;
pub mod dns_server;
pub mod fake_api;
pub mod fake_upstream;
pub mod fixtures;
pub mod http;
pub mod records;
pub mod synthetic;
pub mod trace;

pub use dig::{DigOutput, dig, dig_async, dig_available};
pub use dns_server::serve_dns;
pub use fake_api::FakeApiServer;
pub use fake_upstream::FakeUpstream;
pub use http::http_get;
pub use records::{assert_records_eq, rr, rrs};
pub use trace::{subscribe, timeout_after};
