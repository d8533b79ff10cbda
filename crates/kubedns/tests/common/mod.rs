//! Shared by kubedns's integration tests: a zone built from fixture objects, and questions.

#![allow(dead_code, unreachable_pub)]

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use hickory_proto::op::{Message, Query};
use hickory_proto::rr::{Name, RecordType};
use kdns_net::{Handler, Protocol, Request};
use kubedns::dns::ClusterZone;
use kubedns::records::PodRecords;
use kubedns::source::file;
use serde_json::{Value, json};

/// A ready zone over `objects` (fixture JSON), forwarding to `upstreams`.
pub fn zone_with(
    objects: Vec<Value>,
    pod_records: PodRecords,
    upstreams: Vec<SocketAddr>,
) -> ClusterZone {
    let text = json!({"apiVersion": "v1", "kind": "List", "items": objects}).to_string();
    let state = file::parse(&text, Path::new("fixture")).expect("fixture parses");
    let zone_name = Name::from_ascii("cluster.local.").expect("valid zone");
    ClusterZone::over_state(state, &zone_name, pod_records, upstreams)
}

/// A ready zone over `objects` with default settings and no upstream.
pub fn zone(objects: Vec<Value>) -> ClusterZone {
    zone_with(objects, PodRecords::Insecure, Vec::new())
}

/// Asks `zone` one question, as a UDP client would.
pub async fn ask(zone: &ClusterZone, name: &str, qtype: RecordType) -> Message {
    let mut message = Message::query();
    message.metadata.recursion_desired = true;
    message.add_query(Query::query(
        Name::from_ascii(name).expect("valid name"),
        qtype,
    ));
    zone.handle(Request {
        message,
        src: "127.0.0.1:5353".parse().expect("valid address"),
        protocol: Protocol::Udp,
    })
    .await
}

/// Command-line arguments for an in-process kubedns on ephemeral loopback ports.
pub fn loopback_args(extra: &[&str]) -> kubedns::Args {
    use clap::Parser;
    let mut argv = vec![
        "kubedns",
        "--dns-bind-address",
        "127.0.0.1",
        "--dns-port",
        "0",
        "--http-bind-address",
        "127.0.0.1",
        "--healthz-port",
        "0",
        "--metrics-port",
        "0",
        "--cluster-state-period",
        "50ms",
    ];
    argv.extend_from_slice(extra);
    kubedns::Args::try_parse_from(argv).expect("valid test arguments")
}

/// A query for `name`/`qtype`.
pub fn query(name: &str, qtype: RecordType) -> Message {
    kdns_net::query_message(name, qtype).expect("valid query")
}

/// Polls `check` every 20 ms until it returns true; panics after `limit` (a hang guard only).
pub async fn eventually<F, Fut>(limit: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + limit;
    while !check().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "gave up waiting: {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
