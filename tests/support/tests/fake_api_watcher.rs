//! A real `kube::runtime::watcher` against `FakeApiServer`: listing, events, and
//! recovery from every failure the server can inject.
//!
//! Tests run on a single-threaded runtime, so the server, the watcher and the test
//! body interleave only at awaits: a sequence of sync server calls is atomic with
//! respect to the watcher, which keeps outcomes independent of timing.

use std::collections::BTreeSet;
use std::fmt::Debug;
use std::time::Duration;

use futures::StreamExt;
use futures::stream::BoxStream;
use k8s_openapi::api::core::v1::{ConfigMap, Endpoints, Namespace, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{ListParams, WatchEvent, WatchParams};
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use kube::{Api, Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use test_support::fixtures::{config_map, endpoint_slice, endpoints, namespace, pod, service};
use test_support::{FakeApiServer, subscribe, timeout_after};

/// Generous: the watcher's default backoff starts near 1 s and grows.
const LIMIT: Duration = Duration::from_secs(60);

type Events<K> = BoxStream<'static, Result<Event<K>, watcher::Error>>;

fn client(server: &FakeApiServer) -> Client {
    let config = kube::Config::new(server.url().parse().expect("server URL is a URI"));
    Client::try_from(config).expect("client for the fake API server")
}

fn watch<K>(api: Api<K>, config: watcher::Config) -> Events<K>
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + 'static,
{
    watcher::watcher(api, config).default_backoff().boxed()
}

fn key<K: Resource>(object: &K) -> String {
    match object.namespace() {
        Some(namespace) => format!("{namespace}/{}", object.name_any()),
        None => object.name_any(),
    }
}

fn describe<K: Resource>(event: &Event<K>) -> String {
    match event {
        Event::Init => "Init".to_owned(),
        Event::InitApply(object) => format!("InitApply {}", key(object)),
        Event::InitDone => "InitDone".to_owned(),
        Event::Apply(object) => format!("Apply {}", key(object)),
        Event::Delete(object) => format!("Delete {}", key(object)),
    }
}

/// The next event, with the errors seen before it.
async fn next_event<K: Resource>(events: &mut Events<K>) -> (String, Vec<String>) {
    let mut errors = Vec::new();
    loop {
        match timeout_after(LIMIT, events.next())
            .await
            .expect("watcher streams forever")
        {
            Ok(event) => return (describe(&event), errors),
            Err(err) => errors.push(err.to_string()),
        }
    }
}

/// The next event, which must not have been preceded by errors.
async fn next_clean<K: Resource>(events: &mut Events<K>) -> String {
    let (event, errors) = next_event(events).await;
    assert!(
        errors.is_empty(),
        "unexpected errors before {event}: {errors:?}"
    );
    event
}

/// Events through the next `InitDone`, counting from the last `Init` (a failed
/// list attempt restarts at `Init`), and every error seen on the way.
async fn through_init_done<K: Resource>(events: &mut Events<K>) -> (Vec<String>, Vec<String>) {
    let mut seen = Vec::new();
    let mut errors = Vec::new();
    loop {
        let (event, mut new_errors) = next_event(events).await;
        errors.append(&mut new_errors);
        if event == "Init" {
            seen.clear();
        }
        let done = event == "InitDone";
        seen.push(event);
        if done {
            return (seen, errors);
        }
    }
}

fn init_sequence(keys: &[&str]) -> Vec<String> {
    let mut want = vec!["Init".to_owned()];
    want.extend(keys.iter().map(|key| format!("InitApply {key}")));
    want.push("InitDone".to_owned());
    want
}

/// The sorted query parameters of a logged request, which must be a GET of `path`.
fn query_of(line: &str, path: &str) -> Vec<String> {
    let target = line
        .strip_prefix("GET ")
        .unwrap_or_else(|| panic!("not a GET: {line}"));
    let (request_path, query) = target.split_once('?').unwrap_or((target, ""));
    assert_eq!(request_path, path, "{line}");
    let mut pairs: Vec<String> = query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(str::to_owned)
        .collect();
    pairs.sort();
    pairs
}

/// Polls the watcher (which makes its requests only while polled) until
/// `condition` holds on the server; the watcher must not yield meanwhile.
async fn drive_until<K: Resource>(
    server: &FakeApiServer,
    events: &mut Events<K>,
    what: &str,
    condition: impl FnMut(&FakeApiServer) -> bool,
) {
    tokio::select! {
        () = server.wait_until(what, condition) => {}
        event = next_event(events) => panic!("no event expected while waiting for {what}, got {event:?}"),
    }
}

fn count_requests(server: &FakeApiServer, path: &str, is_watch: bool) -> usize {
    server
        .requests()
        .iter()
        .filter(|line| {
            let target = line.strip_prefix("GET ").unwrap_or_default();
            let (request_path, query) = target.split_once('?').unwrap_or((target, ""));
            request_path == path && query.split('&').any(|pair| pair == "watch=true") == is_watch
        })
        .count()
}

/// A server holding services `ns1/a` and `ns2/b`, and a watcher over all services
/// that has finished its initial list and has its watch open.
async fn watching_services() -> (FakeApiServer, Events<Service>) {
    subscribe();
    let server = FakeApiServer::start().await;
    server.apply(
        service("ns1", "a")
            .cluster_ip("10.0.0.1")
            .port("http", 80, "TCP")
            .build(),
    );
    server.apply(service("ns2", "b").headless().build());
    let mut events = watch(
        Api::<Service>::all(client(&server)),
        watcher::Config::default(),
    );
    let (seen, errors) = through_init_done(&mut events).await;
    assert_eq!(seen, init_sequence(&["ns1/a", "ns2/b"]));
    assert!(errors.is_empty(), "{errors:?}");
    // The watch opens on the watcher's next poll.
    drive_until(&server, &mut events, "an open services watch", |server| {
        server.open_watches("services") >= 1
    })
    .await;
    (server, events)
}

#[tokio::test]
async fn watcher_sees_initial_list_then_apply_and_delete() {
    let (server, mut events) = watching_services().await;

    server.apply(service("ns1", "c").cluster_ip("10.0.0.3").build());
    assert_eq!(next_clean(&mut events).await, "Apply ns1/c");

    let uid = server.get("v1", "Service", "ns1", "a").unwrap()["metadata"]["uid"].clone();
    let stored = server.apply(service("ns1", "a").cluster_ip("10.0.0.9").build());
    assert_eq!(next_clean(&mut events).await, "Apply ns1/a");
    assert_eq!(
        stored["metadata"]["uid"], uid,
        "a replaced object keeps its uid"
    );

    assert!(server.delete("v1", "Service", "ns2", "b"));
    assert!(!server.delete("v1", "Service", "ns2", "b"));
    assert_eq!(next_clean(&mut events).await, "Delete ns2/b");

    // kube builds queries as `path?&a=b...`; compare parameters, not raw text.
    let requests = server.requests();
    assert_eq!(query_of(&requests[0], "/api/v1/services"), ["limit=500"]);
    let watch = requests
        .iter()
        .find(|line| line.contains("watch=true"))
        .expect("a watch request");
    assert_eq!(
        query_of(watch, "/api/v1/services"),
        [
            "allowWatchBookmarks=true",
            "resourceVersion=3",
            "timeoutSeconds=290",
            "watch=true"
        ]
    );
}

#[tokio::test]
async fn watcher_resumes_after_watches_close() {
    let (server, mut events) = watching_services().await;

    server.close_watches();
    assert_eq!(server.open_watches("services"), 0);
    server.apply(service("ns1", "c").build());
    assert_eq!(next_clean(&mut events).await, "Apply ns1/c");
    server.close_watches();
    server.apply(service("ns1", "d").build());
    assert_eq!(next_clean(&mut events).await, "Apply ns1/d");

    assert_eq!(
        count_requests(&server, "/api/v1/services", false),
        1,
        "no relist"
    );
    assert!(count_requests(&server, "/api/v1/services", true) >= 3);
}

#[tokio::test]
async fn watcher_resumes_after_a_partial_line() {
    let (server, mut events) = watching_services().await;

    server.send_partial_line();
    server.apply(service("ns1", "c").build());
    let (event, _errors) = next_event(&mut events).await;
    assert_eq!(event, "Apply ns1/c");
    assert_eq!(
        count_requests(&server, "/api/v1/services", false),
        1,
        "no relist"
    );
}

#[tokio::test]
async fn watcher_relists_after_history_expires() {
    let (server, mut events) = watching_services().await;

    server.expire_history();
    server.apply(service("ns1", "c").build());
    let (seen, errors) = through_init_done(&mut events).await;
    assert_eq!(seen, init_sequence(&["ns1/a", "ns1/c", "ns2/b"]));
    assert!(
        errors.iter().any(|err| err.contains("Expired")),
        "{errors:?}"
    );

    server.apply(service("ns1", "d").build());
    assert_eq!(next_clean(&mut events).await, "Apply ns1/d");
}

#[tokio::test]
async fn watcher_relists_after_restart() {
    let (server, mut events) = watching_services().await;

    server.restart();
    assert!(server.delete("v1", "Service", "ns1", "a"));
    let (seen, _errors) = through_init_done(&mut events).await;
    assert_eq!(seen, init_sequence(&["ns2/b"]));

    server.apply(service("ns1", "e").build());
    let (event, _) = next_event(&mut events).await;
    assert_eq!(event, "Apply ns1/e");
}

#[tokio::test]
async fn watcher_rides_out_503_through_client_retries() {
    let (server, mut events) = watching_services().await;

    // kube's client retries 503 itself, so the watcher sees no error: the retried
    // watch request simply succeeds once the server is back.
    server.set_unavailable(true);
    let seen_before = server.requests().len();
    let refused = "a request refused with 503";
    drive_until(&server, &mut events, refused, |server| {
        server.requests().len() > seen_before
    })
    .await;

    server.apply(service("ns1", "c").build());
    server.set_unavailable(false);
    assert_eq!(next_clean(&mut events).await, "Apply ns1/c");
    assert_eq!(
        count_requests(&server, "/api/v1/services", false),
        1,
        "resumed without a relist"
    );
}

#[tokio::test]
async fn watcher_recovers_after_server_errors() {
    let (server, mut events) = watching_services().await;

    server.set_failure_status(500);
    server.set_unavailable(true);
    // The watch was closed; reopening it fails, and 500 is not retried by the client.
    let refused = timeout_after(LIMIT, events.next())
        .await
        .expect("watcher streams forever");
    let err = refused.expect_err("requests fail while unavailable");
    assert!(
        matches!(&err, watcher::Error::WatchStartFailed(kube::Error::Api(status)) if status.code == 500),
        "{err:?}"
    );

    server.apply(service("ns1", "c").build());
    server.set_unavailable(false);
    let (event, _errors) = next_event(&mut events).await;
    assert_eq!(event, "Apply ns1/c");
    assert_eq!(
        count_requests(&server, "/api/v1/services", false),
        1,
        "resumed without a relist"
    );
}

#[tokio::test]
async fn watcher_retries_a_failing_initial_list() {
    subscribe();
    let server = FakeApiServer::start().await;
    server.apply(service("ns1", "a").build());
    server.set_failure_status(500);
    server.set_unavailable(true);
    let mut events = watch(
        Api::<Service>::all(client(&server)),
        watcher::Config::default(),
    );

    assert_eq!(next_clean(&mut events).await, "Init");
    let failed = timeout_after(LIMIT, events.next())
        .await
        .expect("watcher streams forever");
    let err = failed.expect_err("list fails while unavailable");
    assert!(
        matches!(&err, watcher::Error::InitialListFailed(kube::Error::Api(status)) if status.code == 500),
        "{err:?}"
    );

    server.set_unavailable(false);
    let (seen, _errors) = through_init_done(&mut events).await;
    assert_eq!(seen, init_sequence(&["ns1/a"]));
}

#[tokio::test]
async fn watcher_pages_through_more_than_500_objects() {
    subscribe();
    let server = FakeApiServer::start().await;
    let mut want = BTreeSet::new();
    for index in 0..1203 {
        let namespace = format!("ns{}", index % 3);
        let name = format!("svc{index:04}");
        want.insert(format!("InitApply {namespace}/{name}"));
        server.apply(service(&namespace, &name).cluster_ip("10.0.0.1").build());
    }
    let mut events = watch(
        Api::<Service>::all(client(&server)),
        watcher::Config::default(),
    );
    let (seen, errors) = through_init_done(&mut events).await;
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(seen.first().map(String::as_str), Some("Init"));
    assert_eq!(seen.last().map(String::as_str), Some("InitDone"));
    let applied: BTreeSet<String> = seen[1..seen.len() - 1].iter().cloned().collect();
    assert_eq!(seen.len() - 2, 1203, "each object once");
    assert_eq!(applied, want);

    let lists: Vec<String> = server
        .requests()
        .into_iter()
        .filter(|line| line.starts_with("GET /api/v1/services?") && !line.contains("watch="))
        .collect();
    assert_eq!(lists.len(), 3, "{lists:?}");
    assert!(lists.iter().all(|line| line.contains("limit=500")));
    assert_eq!(
        lists
            .iter()
            .filter(|line| line.contains("continue="))
            .count(),
        2
    );

    // Pages are consistent: a change between pages does not show up in them.
    let api = Api::<Service>::namespaced(client(&server), "ns1");
    let first = timeout_after(LIMIT, api.list(&ListParams::default().limit(150)))
        .await
        .unwrap();
    assert_eq!(first.items.len(), 150);
    assert_eq!(first.metadata.remaining_item_count, Some(251));
    let token = first.metadata.continue_.clone().expect("more pages");
    server.apply(service("ns1", "zzz-late").build());
    let mut rest = ListParams::default().limit(1000);
    rest.continue_token = Some(token);
    let second = timeout_after(LIMIT, api.list(&rest)).await.unwrap();
    assert_eq!(second.items.len(), 251);
    assert_eq!(second.metadata.continue_, None);
    assert_eq!(
        second.metadata.resource_version,
        first.metadata.resource_version
    );
    assert!(
        second
            .items
            .iter()
            .all(|item| item.name_any() != "zzz-late")
    );
}

#[tokio::test]
async fn expired_continue_token_is_gone() {
    subscribe();
    let server = FakeApiServer::start().await;
    for index in 0..3 {
        server.apply(service("ns", &format!("s{index}")).build());
    }
    let api = Api::<Service>::all(client(&server));
    let first = timeout_after(LIMIT, api.list(&ListParams::default().limit(1)))
        .await
        .unwrap();
    server.expire_history();
    let mut next = ListParams::default().limit(1);
    next.continue_token = first.metadata.continue_;
    let err = timeout_after(LIMIT, api.list(&next))
        .await
        .expect_err("token expired");
    assert!(
        matches!(&err, kube::Error::Api(status) if status.code == 410),
        "{err:?}"
    );
}

#[tokio::test]
async fn namespaced_endpointslice_watcher_sees_its_namespace_only() {
    subscribe();
    let server = FakeApiServer::start().await;
    let slice = |namespace: &str, name: &str| {
        endpoint_slice(namespace, name, "svc")
            .endpoint("10.1.0.1", true)
            .endpoint_with_hostname("10.1.0.2", "web-0", false)
            .port("http", 8080, "TCP")
            .build()
    };
    server.apply(slice("ns1", "svc-aaaa"));
    server.apply(slice("ns2", "svc-bbbb"));
    let api = Api::<EndpointSlice>::namespaced(client(&server), "ns1");
    let mut events = watch(api, watcher::Config::default());
    let (seen, _) = through_init_done(&mut events).await;
    assert_eq!(seen, init_sequence(&["ns1/svc-aaaa"]));

    server.apply(slice("ns2", "svc-cccc"));
    server.apply(slice("ns1", "svc-dddd"));
    assert_eq!(next_clean(&mut events).await, "Apply ns1/svc-dddd");

    server.close_watches();
    server.apply(slice("ns2", "svc-eeee"));
    assert!(server.delete("discovery.k8s.io/v1", "EndpointSlice", "ns1", "svc-aaaa"));
    assert_eq!(next_clean(&mut events).await, "Delete ns1/svc-aaaa");
    assert!(server.requests().iter().any(|line| {
        line.starts_with("GET /apis/discovery.k8s.io/v1/namespaces/ns1/endpointslices?")
    }));

    // The typed object carries what the builder set.
    let typed = timeout_after(
        LIMIT,
        Api::<EndpointSlice>::namespaced(client(&server), "ns1").get("svc-dddd"),
    )
    .await
    .unwrap();
    assert_eq!(typed.address_type, "IPv4");
    assert_eq!(typed.endpoints.len(), 2);
    assert_eq!(typed.endpoints[1].hostname.as_deref(), Some("web-0"));
    assert_eq!(
        typed.endpoints[1].conditions.as_ref().unwrap().ready,
        Some(false)
    );
    assert_eq!(typed.labels()["kubernetes.io/service-name"], "svc");
}

#[tokio::test]
async fn field_selector_on_name_picks_one_config_map() {
    subscribe();
    let server = FakeApiServer::start().await;
    server.apply(config_map(
        "kube-system",
        "kube-dns",
        &[("stubDomains", "{}")],
    ));
    server.apply(config_map("kube-system", "other", &[]));
    server.apply(config_map("default", "kube-dns", &[]));
    let api = Api::<ConfigMap>::namespaced(client(&server), "kube-system");
    let config = watcher::Config::default().fields("metadata.name=kube-dns");
    let mut events = watch(api, config);
    let (seen, _) = through_init_done(&mut events).await;
    assert_eq!(seen, init_sequence(&["kube-system/kube-dns"]));

    server.apply(config_map("kube-system", "other", &[("a", "b")]));
    server.apply(config_map(
        "kube-system",
        "kube-dns",
        &[("upstreamNameservers", "[\"1.1.1.1\"]")],
    ));
    assert_eq!(next_clean(&mut events).await, "Apply kube-system/kube-dns");
}

#[tokio::test]
async fn streaming_list_watcher() {
    subscribe();
    let server = FakeApiServer::start().await;
    server.apply(service("ns1", "a").build());
    let config = watcher::Config::default().streaming_lists();
    let mut events = watch(Api::<Service>::all(client(&server)), config);
    let (seen, errors) = through_init_done(&mut events).await;
    assert_eq!(seen, init_sequence(&["ns1/a"]));
    assert!(errors.is_empty(), "{errors:?}");
    server.apply(service("ns1", "b").build());
    assert_eq!(next_clean(&mut events).await, "Apply ns1/b");
    assert!(server.requests()[0].contains("sendInitialEvents=true"));
}

#[tokio::test]
async fn raw_watch_replays_bookmarks_and_expires() {
    subscribe();
    let server = FakeApiServer::start().await;
    let first = server.apply(pod("ns", "p1", "10.2.0.1"));
    server.apply(pod("ns", "p2", "10.2.0.2"));
    let api = Api::<Pod>::namespaced(client(&server), "ns");
    let from = first["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_owned();

    let mut stream = timeout_after(LIMIT, api.watch(&WatchParams::default(), &from))
        .await
        .unwrap()
        .boxed();
    let mut next = async || {
        timeout_after(LIMIT, stream.next())
            .await
            .expect("watch is open")
            .expect("event parses")
    };
    // Replayed from history: only what came after `from`.
    assert!(matches!(next().await, WatchEvent::Added(pod) if pod.name_any() == "p2"));
    server.bookmark();
    match next().await {
        WatchEvent::Bookmark(bookmark) => assert_eq!(
            bookmark.metadata.resource_version,
            server.resource_version()
        ),
        other => panic!("expected a bookmark, got {other:?}"),
    }
    server.apply(pod("ns", "p1", "10.2.0.9"));
    assert!(
        matches!(next().await, WatchEvent::Modified(pod) if pod.status.as_ref().unwrap().pod_ip.as_deref() == Some("10.2.0.9"))
    );
    server.expire_history();
    match next().await {
        WatchEvent::Error(status) => {
            assert_eq!((status.code, status.reason.as_str()), (410, "Expired"));
        }
        other => panic!("expected 410, got {other:?}"),
    }
    assert!(
        timeout_after(LIMIT, stream.next()).await.is_none(),
        "watch ends after the error"
    );

    // Watching from before the expiry is refused inside a 200 stream.
    let mut stale = timeout_after(LIMIT, api.watch(&WatchParams::default(), &from))
        .await
        .unwrap()
        .boxed();
    let event = timeout_after(LIMIT, stale.next()).await.unwrap().unwrap();
    assert!(matches!(event, WatchEvent::Error(status) if status.code == 410));

    // `timeoutSeconds` ends the watch cleanly.
    let short = WatchParams::default().timeout(1);
    let mut ending = timeout_after(LIMIT, api.watch(&short, &server.resource_version()))
        .await
        .unwrap()
        .boxed();
    assert!(timeout_after(LIMIT, ending.next()).await.is_none());
}

#[tokio::test]
async fn discovery_and_endpointslice_fallback() {
    subscribe();
    let server = FakeApiServer::start().await;
    let client = client(&server);

    let version = timeout_after(LIMIT, client.apiserver_version())
        .await
        .unwrap();
    assert_eq!(
        (version.major.as_str(), version.minor.as_str()),
        ("1", "33")
    );
    let core = timeout_after(LIMIT, client.list_core_api_versions())
        .await
        .unwrap();
    assert_eq!(core.versions, ["v1"]);
    let core_resources = timeout_after(LIMIT, client.list_core_api_resources("v1"))
        .await
        .unwrap();
    let names: BTreeSet<&str> = core_resources
        .resources
        .iter()
        .map(|r| r.name.as_str())
        .collect();
    assert_eq!(
        names,
        BTreeSet::from(["configmaps", "endpoints", "namespaces", "pods", "services"])
    );
    let groups = timeout_after(LIMIT, client.list_api_groups())
        .await
        .unwrap();
    assert!(
        groups
            .groups
            .iter()
            .any(|group| group.name == "discovery.k8s.io")
    );
    let slices = timeout_after(
        LIMIT,
        client.list_api_group_resources("discovery.k8s.io/v1"),
    )
    .await
    .unwrap();
    assert_eq!(slices.resources[0].name, "endpointslices");
    let discovery = timeout_after(LIMIT, kube::Discovery::new(client.clone()).run())
        .await
        .unwrap();
    assert!(discovery.has_group("discovery.k8s.io"));

    server.disable_endpointslices();
    let groups = timeout_after(LIMIT, client.list_api_groups())
        .await
        .unwrap();
    assert!(groups.groups.is_empty());
    let err = timeout_after(
        LIMIT,
        client.list_api_group_resources("discovery.k8s.io/v1"),
    )
    .await
    .expect_err("group is gone");
    assert!(
        matches!(&err, kube::Error::Api(status) if status.code == 404),
        "{err:?}"
    );
    let err = timeout_after(
        LIMIT,
        Api::<EndpointSlice>::all(client.clone()).list(&ListParams::default()),
    )
    .await
    .expect_err("group is gone");
    assert!(
        matches!(&err, kube::Error::Api(status) if status.code == 404),
        "{err:?}"
    );
    let discovery = timeout_after(LIMIT, kube::Discovery::new(client.clone()).run())
        .await
        .unwrap();
    assert!(!discovery.has_group("discovery.k8s.io"));

    // The fallback: core v1 Endpoints.
    server.apply(
        endpoints("ns", "svc")
            .address("10.1.0.1", true)
            .address_with_hostname("10.1.0.2", "web-1", false)
            .port("dns", 53, "UDP")
            .build(),
    );
    let typed = timeout_after(LIMIT, Api::<Endpoints>::namespaced(client, "ns").get("svc"))
        .await
        .unwrap();
    let subset = &typed.subsets.unwrap()[0];
    assert_eq!(subset.addresses.as_ref().unwrap()[0].ip, "10.1.0.1");
    assert_eq!(
        subset.not_ready_addresses.as_ref().unwrap()[0]
            .hostname
            .as_deref(),
        Some("web-1")
    );
}

#[tokio::test]
async fn typed_objects_from_fixtures() {
    subscribe();
    let server = FakeApiServer::start().await;
    server.apply(
        service("ns", "dual")
            .cluster_ips(&["10.0.0.10", "fd00::10"])
            .port("dns", 53, "UDP")
            .port("dns-tcp", 53, "TCP")
            .publish_not_ready()
            .build(),
    );
    server.apply(service("ns", "ext").external_name("x.example.com").build());
    server.apply(namespace("ns"));
    let client = client(&server);

    let services = Api::<Service>::namespaced(client.clone(), "ns");
    let dual = timeout_after(LIMIT, services.get("dual")).await.unwrap();
    let spec = dual.spec.unwrap();
    assert_eq!(spec.cluster_ip.as_deref(), Some("10.0.0.10"));
    assert_eq!(spec.cluster_ips.unwrap(), ["10.0.0.10", "fd00::10"]);
    assert_eq!(spec.ip_families.unwrap(), ["IPv4", "IPv6"]);
    assert_eq!(spec.publish_not_ready_addresses, Some(true));
    assert_eq!(spec.ports.unwrap()[1].name.as_deref(), Some("dns-tcp"));
    let ext = timeout_after(LIMIT, services.get("ext"))
        .await
        .unwrap()
        .spec
        .unwrap();
    assert_eq!(
        (ext.type_.as_deref(), ext.external_name.as_deref()),
        (Some("ExternalName"), Some("x.example.com"))
    );

    let namespaces = timeout_after(
        LIMIT,
        Api::<Namespace>::all(client.clone()).list(&ListParams::default()),
    )
    .await
    .unwrap();
    assert_eq!(namespaces.items[0].name_any(), "ns");
    let missing = timeout_after(LIMIT, services.get("nope"))
        .await
        .expect_err("not found");
    assert!(
        matches!(&missing, kube::Error::Api(status) if status.code == 404),
        "{missing:?}"
    );
}

#[tokio::test]
async fn dropping_the_server_closes_its_port() {
    subscribe();
    let server = FakeApiServer::start().await;
    let addr = server.addr();
    drop(server);
    timeout_after(LIMIT, async {
        // The accept loop notices the shutdown on its next poll.
        while tokio::net::TcpStream::connect(addr).await.is_ok() {
            tokio::task::yield_now().await;
        }
    })
    .await;
}
