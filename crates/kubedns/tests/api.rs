//! kubedns fed by the Kubernetes API stand-in: answers follow ADDED, MODIFIED and DELETED, and
//! survive closed watches, bookmarks, `410 Gone`, API server restarts, 500s and broken watch
//! lines, ending with exactly the API's state.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::{eventually, loopback_args, query};
use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;
use test_support::FakeApiServer;
use test_support::fixtures::{endpoint_slice, endpoints, pod, service};
use test_support::http_get;
use tokio_util::sync::CancellationToken;

const WAIT: Duration = Duration::from_secs(30);
const KUBERNETES: &str = "kubernetes.default.svc.cluster.local.";

struct Cluster {
    api: FakeApiServer,
    running: kubedns::Running,
    shutdown: CancellationToken,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

async fn cluster_with(prepare: impl FnOnce(&FakeApiServer), extra: &[&str]) -> Cluster {
    let api = FakeApiServer::start().await;
    api.apply(
        service("default", "kubernetes")
            .cluster_ip("10.96.0.1")
            .port("https", 443, "TCP")
            .build(),
    );
    prepare(&api);
    let url = api.url();
    let mut args = vec!["--kube-master-url", url.as_str()];
    args.extend_from_slice(extra);
    let shutdown = CancellationToken::new();
    let running = kubedns::start(loopback_args(&args), shutdown.clone())
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
        shutdown,
    }
}

async fn cluster() -> Cluster {
    cluster_with(|_| {}, &[]).await
}

/// The A answers for `name`, as text, or the rcode when there are none.
async fn addresses(dns: SocketAddr, name: &str) -> Result<Vec<String>, ResponseCode> {
    let reply = kdns_net::exchange_udp(dns, &query(name, RecordType::A), Duration::from_secs(2))
        .await
        .expect("kubedns answers");
    let mut ips: Vec<String> = reply.answers.iter().map(|r| r.data.to_string()).collect();
    ips.sort();
    if ips.is_empty() {
        Err(reply.metadata.response_code)
    } else {
        Ok(ips)
    }
}

async fn wait_for(dns: SocketAddr, name: &str, want: Result<Vec<&str>, ResponseCode>) {
    let want: Result<Vec<String>, ResponseCode> =
        want.map(|v| v.into_iter().map(String::from).collect());
    let what = format!("{name} → {want:?}");
    eventually(WAIT, &what, || {
        let want = want.clone();
        async move { addresses(dns, name).await == want }
    })
    .await;
}

const SVC: &str = "web.shop.svc.cluster.local.";
const HEADLESS: &str = "db.shop.svc.cluster.local.";

#[tokio::test]
async fn answers_follow_added_modified_and_deleted_objects() {
    let c = cluster().await;
    let dns = c.running.dns;
    wait_for(
        dns,
        "kubernetes.default.svc.cluster.local.",
        Ok(vec!["10.96.0.1"]),
    )
    .await;
    c.api
        .apply(service("shop", "web").cluster_ip("10.96.1.1").build());
    wait_for(dns, SVC, Ok(vec!["10.96.1.1"])).await;
    c.api
        .apply(service("shop", "web").cluster_ip("10.96.1.2").build());
    wait_for(dns, SVC, Ok(vec!["10.96.1.2"])).await;
    c.api.delete("v1", "Service", "shop", "web");
    wait_for(dns, SVC, Err(ResponseCode::NXDomain)).await;

    c.api.apply(service("shop", "db").headless().build());
    c.api.apply(
        endpoint_slice("shop", "db-a", "db")
            .endpoint("10.244.0.1", true)
            .build(),
    );
    wait_for(dns, HEADLESS, Ok(vec!["10.244.0.1"])).await;
    c.api.apply(
        endpoint_slice("shop", "db-b", "db")
            .endpoint("10.244.0.2", true)
            .build(),
    );
    wait_for(dns, HEADLESS, Ok(vec!["10.244.0.1", "10.244.0.2"])).await;
    c.api.apply(
        endpoint_slice("shop", "db-a", "db")
            .endpoint("10.244.0.1", false)
            .build(),
    );
    wait_for(dns, HEADLESS, Ok(vec!["10.244.0.2"])).await;
    c.api
        .delete("discovery.k8s.io/v1", "EndpointSlice", "shop", "db-b");
    wait_for(dns, HEADLESS, Err(ResponseCode::NXDomain)).await;
}

#[tokio::test]
async fn closed_watches_and_bookmarks_lose_nothing() {
    let c = cluster().await;
    let dns = c.running.dns;
    c.api.wait_for_watches("services", 1).await;
    c.api.bookmark();
    c.api.close_watches();
    c.api
        .apply(service("shop", "web").cluster_ip("10.96.1.1").build());
    wait_for(dns, SVC, Ok(vec!["10.96.1.1"])).await;
    c.api.send_partial_line();
    c.api
        .apply(service("shop", "web").cluster_ip("10.96.1.3").build());
    wait_for(dns, SVC, Ok(vec!["10.96.1.3"])).await;
}

#[tokio::test]
async fn a_410_gone_relists_and_drops_what_was_deleted_while_the_watch_was_down() {
    let c = cluster_with(
        |api| {
            api.apply(service("shop", "web").cluster_ip("10.96.1.1").build());
            api.apply(service("shop", "old").cluster_ip("10.96.1.9").build());
        },
        &[],
    )
    .await;
    let dns = c.running.dns;
    wait_for(dns, SVC, Ok(vec!["10.96.1.1"])).await;
    // The API fails (500s, which the client does not retry); meanwhile the cluster changes and
    // the history those changes are in expires, so the watcher must relist.
    c.api.set_failure_status(500);
    c.api.set_unavailable(true);
    c.api.delete("v1", "Service", "shop", "old");
    c.api
        .apply(service("shop", "web").cluster_ip("10.96.1.2").build());
    c.api.expire_history();
    // While the API is away, the last good records keep serving.
    assert_eq!(
        addresses(dns, "old.shop.svc.cluster.local.").await,
        Ok(vec!["10.96.1.9".to_owned()])
    );
    c.api.set_unavailable(false);
    wait_for(dns, SVC, Ok(vec!["10.96.1.2"])).await;
    wait_for(
        dns,
        "old.shop.svc.cluster.local.",
        Err(ResponseCode::NXDomain),
    )
    .await;
    wait_for(
        dns,
        "kubernetes.default.svc.cluster.local.",
        Ok(vec!["10.96.0.1"]),
    )
    .await;
}

#[tokio::test]
async fn an_api_server_restart_ends_with_exactly_its_state() {
    let c = cluster().await;
    let dns = c.running.dns;
    c.api
        .apply(service("shop", "web").cluster_ip("10.96.1.1").build());
    wait_for(dns, SVC, Ok(vec!["10.96.1.1"])).await;
    c.api.restart();
    c.api.delete("v1", "Service", "shop", "web");
    c.api
        .apply(service("shop", "new").cluster_ip("10.96.1.4").build());
    wait_for(dns, "new.shop.svc.cluster.local.", Ok(vec!["10.96.1.4"])).await;
    wait_for(dns, SVC, Err(ResponseCode::NXDomain)).await;
    let (status, _) = http_get(c.running.healthz, "/readiness").await;
    assert_eq!(status, 200, "readiness stays up across relists");
}

#[tokio::test]
async fn without_endpointslices_core_v1_endpoints_are_watched() {
    let c = cluster_with(
        |api| {
            api.disable_endpointslices();
            api.apply(service("shop", "db").headless().build());
            api.apply(
                endpoints("shop", "db")
                    .address("10.244.0.7", true)
                    .address("10.244.0.8", false)
                    .build(),
            );
        },
        &[],
    )
    .await;
    let dns = c.running.dns;
    wait_for(dns, HEADLESS, Ok(vec!["10.244.0.7"])).await;
    c.api.apply(
        endpoints("shop", "db")
            .address("10.244.0.7", true)
            .address("10.244.0.8", true)
            .build(),
    );
    wait_for(dns, HEADLESS, Ok(vec!["10.244.0.7", "10.244.0.8"])).await;
    let requests = c.api.requests();
    assert!(
        requests.iter().any(|r| r.contains("/api/v1/endpoints")),
        "{requests:?}"
    );
    assert!(
        !requests
            .iter()
            .any(|r| r.contains("/apis/discovery.k8s.io/v1/endpointslices")),
        "{requests:?}"
    );
}

#[tokio::test]
async fn verified_pod_records_follow_the_pod_watch() {
    let c = cluster_with(
        |api| {
            api.apply(pod("shop", "p1", "10.244.3.3"));
        },
        &["--pod-records", "verified"],
    )
    .await;
    let dns = c.running.dns;
    wait_for(
        dns,
        "10-244-3-3.shop.pod.cluster.local.",
        Ok(vec!["10.244.3.3"]),
    )
    .await;
    wait_for(
        dns,
        "10-244-3-3.other.pod.cluster.local.",
        Err(ResponseCode::NXDomain),
    )
    .await;
    c.api.delete("v1", "Pod", "shop", "p1");
    wait_for(
        dns,
        "10-244-3-3.shop.pod.cluster.local.",
        Err(ResponseCode::NXDomain),
    )
    .await;
}

#[tokio::test]
async fn a_malformed_object_skips_that_record_and_is_counted() {
    let c = cluster().await;
    let dns = c.running.dns;
    let mut bad = service("shop", "bad").cluster_ip("10.96.1.1").build();
    bad["spec"]["clusterIPs"] = serde_json::json!(["10.96.1.1", "not-an-ip"]);
    c.api.apply(bad);
    c.api
        .apply(service("shop", "web").cluster_ip("10.96.1.5").build());
    wait_for(dns, SVC, Ok(vec!["10.96.1.5"])).await;
    wait_for(dns, "bad.shop.svc.cluster.local.", Ok(vec!["10.96.1.1"])).await;
    let (_, body) = http_get(c.running.metrics.expect("metrics"), "/metrics").await;
    assert!(
        body.contains("kubedns_malformed_fields_total{resource=\"services\"} 1"),
        "{body}"
    );
}

// The API misbehaving for a while: watches dropped every few hundred milliseconds, or the API
// gone (500s, then 429s) for seconds. Throughout, every query is answered from the last known
// records and readiness stays up (kube-dns reports ready once synced, whatever the API does
// after); afterwards the records converge on the API's state.

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
        Ok(vec!["10.96.1.10"]),
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
        Ok(vec!["10.96.1.1"]),
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
        Ok(vec!["10.96.1.2"]),
    )
    .await;
    eprintln!("converged {:?} after the API came back", back.elapsed());
    assert_eq!(
        addresses(c.running.dns, KUBERNETES).await,
        Ok(vec!["10.96.0.1".to_owned()])
    );
}
