//! kubedns while the API misbehaves for a while: watches dropped every few hundred
//! milliseconds, or the API gone (500s, then 429s) for seconds. Throughout, every query is
//! answered from the last known records and readiness stays up (kube-dns reports ready once
//! synced, whatever the API does after); afterwards the records converge on the API's state.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::{eventually, loopback_args, query};
use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;
use test_support::FakeApiServer;
use test_support::fixtures::service;
use test_support::http_get;
use tokio_util::sync::CancellationToken;

const WAIT: Duration = Duration::from_secs(30);
const KUBERNETES: &str = "kubernetes.default.svc.cluster.local.";

struct Cluster {
    api: FakeApiServer,
    running: kubedns::Running,
    _shutdown: tokio_util::sync::DropGuard,
}

async fn cluster() -> Cluster {
    let api = FakeApiServer::start().await;
    api.apply(
        service("default", "kubernetes")
            .cluster_ip("10.96.0.1")
            .build(),
    );
    let url = api.url();
    let shutdown = CancellationToken::new();
    let running = kubedns::start(
        loopback_args(&["--kube-master-url", url.as_str()]),
        shutdown.clone(),
    )
    .await
    .expect("kubedns starts");
    let readiness = running.readiness.clone();
    eventually(WAIT, "first sync", || {
        let r = readiness.clone();
        async move { r.is_ready() }
    })
    .await;
    Cluster {
        api,
        running,
        _shutdown: shutdown.drop_guard(),
    }
}

/// The A answers for `name` as text, or the rcode when there are none.
async fn addresses(dns: SocketAddr, name: &str) -> Result<Vec<String>, ResponseCode> {
    let reply = kdns_net::exchange_udp(dns, &query(name, RecordType::A), Duration::from_secs(5))
        .await
        .expect("kubedns answers");
    let ips: Vec<String> = reply.answers.iter().map(|r| r.data.to_string()).collect();
    if ips.is_empty() {
        Err(reply.metadata.response_code)
    } else {
        Ok(ips)
    }
}

/// Asks for `name` until `stop`, asserting every answer is `want` and readiness stays 200.
/// Returns how many times it asked.
async fn keep_checking(c: &Cluster, name: &str, want: &str, stop: CancellationToken) -> usize {
    let mut asked = 0;
    while !stop.is_cancelled() {
        assert_eq!(
            addresses(c.running.dns, name).await,
            Ok(vec![want.to_owned()]),
            "{name} during the fault (query {asked})"
        );
        let (status, _) = http_get(c.running.healthz, "/readiness").await;
        assert_eq!(status, 200, "readiness during the fault");
        asked += 1;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    asked
}

async fn wait_for(dns: SocketAddr, name: &str, want: Result<Vec<String>, ResponseCode>) {
    let what = format!("{name} → {want:?}");
    eventually(WAIT, &what, || {
        let want = want.clone();
        async move { addresses(dns, name).await == want }
    })
    .await;
}

#[tokio::test]
async fn watches_dropped_every_few_hundred_milliseconds_keep_serving_and_converge() {
    let c = cluster().await;
    c.api.wait_for_watches("services", 1).await;
    let stop = CancellationToken::new();
    let churn = async {
        for round in 0..10u8 {
            c.api.apply(
                service("shop", "web")
                    .cluster_ip(&format!("10.96.1.{}", round + 1))
                    .build(),
            );
            tokio::time::sleep(Duration::from_millis(150)).await;
            if round % 3 == 2 {
                c.api.send_partial_line();
            } else {
                c.api.close_watches();
            }
            tokio::time::sleep(Duration::from_millis(150)).await;
        }
        stop.cancel();
    };
    let started = Instant::now();
    let ((), asked) = tokio::join!(
        churn,
        keep_checking(&c, KUBERNETES, "10.96.0.1", stop.clone())
    );
    eprintln!(
        "{asked} queries answered during 10 dropped watches in {:?}",
        started.elapsed()
    );
    assert!(asked > 0);
    wait_for(
        c.running.dns,
        "web.shop.svc.cluster.local.",
        Ok(vec!["10.96.1.10".to_owned()]),
    )
    .await;
}

#[tokio::test]
async fn an_api_outage_of_seconds_keeps_the_last_records_and_readiness_then_converges() {
    let c = cluster().await;
    c.api
        .apply(service("shop", "web").cluster_ip("10.96.1.1").build());
    wait_for(
        c.running.dns,
        "web.shop.svc.cluster.local.",
        Ok(vec!["10.96.1.1".to_owned()]),
    )
    .await;

    let stop = CancellationToken::new();
    let outage = async {
        // 500s reach the watcher at once; 429s are retried inside the client first.
        c.api.set_failure_status(500);
        c.api.set_unavailable(true);
        c.api
            .apply(service("shop", "web").cluster_ip("10.96.1.2").build());
        tokio::time::sleep(Duration::from_millis(1500)).await;
        c.api.set_failure_status(429);
        tokio::time::sleep(Duration::from_millis(1500)).await;
        stop.cancel();
    };
    let started = Instant::now();
    let ((), asked) = tokio::join!(
        outage,
        keep_checking(&c, "web.shop.svc.cluster.local.", "10.96.1.1", stop.clone())
    );
    eprintln!(
        "{asked} queries answered from the last known records during a {:?} outage",
        started.elapsed()
    );
    assert!(asked > 0);

    c.api.set_unavailable(false);
    let back = Instant::now();
    wait_for(
        c.running.dns,
        "web.shop.svc.cluster.local.",
        Ok(vec!["10.96.1.2".to_owned()]),
    )
    .await;
    eprintln!("converged {:?} after the API came back", back.elapsed());
    assert_eq!(
        addresses(c.running.dns, KUBERNETES).await,
        Ok(vec!["10.96.0.1".to_owned()])
    );
}
