//! An in-process stand-in for the Kubernetes API server.
//!
//! [`FakeApiServer`] speaks the real list, watch and discovery JSON over HTTP/1.1,
//! so `kube::Client` and `kube::runtime::watcher` run against it unmodified. Tests
//! change the cluster with sync methods ([`FakeApiServer::apply`],
//! [`FakeApiServer::delete`]) and inject the failures a client must survive.
//!
//! Served: core v1 `services`, `endpoints`, `pods`, `configmaps`, `namespaces` and
//! `discovery.k8s.io/v1` `endpointslices`, cluster-wide and per namespace, with
//! `GET` of single objects, `limit`/`continue` pagination, watches resumable from
//! any resourceVersion still in the event history, bookmarks, streaming lists
//! (`sendInitialEvents`), `fieldSelector` on `metadata.name`/`metadata.namespace`
//! and equality-based `labelSelector`.

mod http;
mod resources;
mod selector;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::{Notify, mpsc};
use tokio_util::sync::CancellationToken;

use resources::{DISCOVERY_GROUP, RESOURCES};
use selector::Filter;

/// Oldest events are dropped past this many, like etcd compaction.
const HISTORY_LIMIT: usize = 100_000;

/// How long [`FakeApiServer::wait_until`] waits before failing the test.
const WAIT_LIMIT: Duration = Duration::from_secs(30);

/// An in-process Kubernetes API server for tests; see the [module docs](self).
///
/// The server stops when this value is dropped: the listener closes and every open
/// connection is dropped.
pub struct FakeApiServer {
    shared: Arc<Shared>,
}

/// State shared between the test's handle and the HTTP side.
pub(crate) struct Shared {
    addr: SocketAddr,
    state: Mutex<State>,
    /// Woken on every change a test might wait for (requests, watches, objects).
    changed: Notify,
    /// Cancelled when the [`FakeApiServer`] is dropped.
    shutdown: CancellationToken,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panicking test thread must not turn every later call into a second panic.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A watch event as the API server reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum EventType {
    Added,
    Modified,
    Deleted,
}

impl EventType {
    fn as_str(self) -> &'static str {
        match self {
            Self::Added => "ADDED",
            Self::Modified => "MODIFIED",
            Self::Deleted => "DELETED",
        }
    }
}

/// One change, kept so that watches can resume from an older resourceVersion.
struct HistoryEvent {
    resource_version: u64,
    resource: usize,
    object: Value,
    /// The serialized watch line, shared by every watch that sees it.
    line: Bytes,
}

/// What a watch response writes next.
enum WatchFrame {
    /// A complete event line.
    Line(Bytes),
    /// Bytes that are not a complete line; the response ends cleanly after them.
    Partial(Bytes),
    /// Abort the response mid-stream, dropping the connection.
    Abort,
}

/// An open watch; dropping `sender` ends its response once queued frames are written.
struct Watch {
    id: u64,
    resource: usize,
    filter: Filter,
    bookmarks: bool,
    /// The resourceVersion the watch started from, for error messages.
    from: String,
    sender: mpsc::UnboundedSender<WatchFrame>,
}

/// A list result being paged through with `continue` tokens.
struct ListSnapshot {
    resource: usize,
    resource_version: u64,
    items: Vec<Value>,
}

struct State {
    /// The last resourceVersion handed out; global across resource types, like etcd's revision.
    resource_version: u64,
    /// Every event with a resourceVersion above this is in `history`.
    history_start: u64,
    history: VecDeque<HistoryEvent>,
    /// Objects per entry of [`RESOURCES`], keyed by (namespace, name).
    objects: Vec<BTreeMap<(String, String), Value>>,
    watches: Vec<Watch>,
    snapshots: HashMap<u64, ListSnapshot>,
    /// Source of watch ids, snapshot ids and uids.
    next_id: u64,
    unavailable: bool,
    failure_status: u16,
    endpointslices_disabled: bool,
    requests: Vec<String>,
    /// Cancelled to drop every open connection; replaced by a fresh token after.
    connections: CancellationToken,
}

impl State {
    fn next_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    /// Records a change and sends it to the open watches that see it.
    fn publish(&mut self, resource: usize, event_type: EventType, object: Value) {
        let line = event_line(event_type.as_str(), &object);
        for watch in &self.watches {
            if watch.resource == resource && watch.filter.matches(&object) {
                // A send fails only when the response is already gone; its guard deregisters it.
                let _ = watch.sender.send(WatchFrame::Line(line.clone()));
            }
        }
        self.history.push_back(HistoryEvent {
            resource_version: self.resource_version,
            resource,
            object,
            line,
        });
        if self.history.len() > HISTORY_LIMIT
            && let Some(oldest) = self.history.pop_front()
        {
            self.history_start = oldest.resource_version;
        }
    }

    /// Makes every resourceVersion handed out so far too old to watch from.
    fn forget_history(&mut self) {
        self.resource_version += 1;
        self.history_start = self.resource_version;
        self.history.clear();
        self.snapshots.clear();
    }

    /// Ends every open watch after `last` (if any) is written.
    fn end_watches(&mut self, last: impl Fn(&Watch) -> Option<WatchFrame>) {
        for watch in self.watches.drain(..) {
            if let Some(frame) = last(&watch) {
                let _ = watch.sender.send(frame);
            }
        }
    }

    fn end_watches_of(&mut self, resource: usize) {
        self.watches.retain(|watch| watch.resource != resource);
    }
}

/// `{"type":...,"object":...}\n`.
fn event_line(event_type: &str, object: &Value) -> Bytes {
    let mut line = serde_json::to_vec(&json!({ "type": event_type, "object": object }))
        .expect("a JSON value always serializes");
    line.push(b'\n');
    Bytes::from(line)
}

/// A `Status` object as the API server sends for failures.
fn status_object(code: u16, reason: &str, message: &str) -> Value {
    json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    })
}

/// The `reason` the API server pairs with an HTTP status.
fn reason_for(code: u16) -> &'static str {
    match code {
        400 => "BadRequest",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "NotFound",
        405 => "MethodNotAllowed",
        409 => "Conflict",
        410 => "Expired",
        429 => "TooManyRequests",
        500 => "InternalError",
        503 => "ServiceUnavailable",
        504 => "Timeout",
        _ => "Unknown",
    }
}

/// The watch `ERROR` line a real API server sends for a too-old resourceVersion.
fn expired_line(from: &str, oldest: u64) -> Bytes {
    let message = format!("too old resource version: {from} ({oldest})");
    event_line("ERROR", &status_object(410, "Expired", &message))
}

/// A `BOOKMARK` line: only kind, apiVersion and metadata.resourceVersion.
fn bookmark_line(resource: usize, resource_version: u64, initial_events_end: bool) -> Bytes {
    let def = &RESOURCES[resource];
    let mut metadata = json!({ "resourceVersion": resource_version.to_string() });
    if initial_events_end {
        metadata["annotations"] = json!({ "k8s.io/initial-events-end": "true" });
    }
    let object = json!({ "kind": def.kind, "apiVersion": def.api_version(), "metadata": metadata });
    event_line("BOOKMARK", &object)
}

fn resource_index(api_version: &str, kind: &str) -> usize {
    resources::by_kind(api_version, kind).unwrap_or_else(|| {
        let served: Vec<String> = RESOURCES
            .iter()
            .map(|def| format!("{} {}", def.api_version(), def.kind))
            .collect();
        panic!("FakeApiServer does not serve {api_version} {kind}; it serves {served:?}")
    })
}

fn resource_by_plural(plural: &str) -> Vec<usize> {
    (0..RESOURCES.len())
        .filter(|&index| RESOURCES[index].plural == plural)
        .collect()
}

impl FakeApiServer {
    /// Binds 127.0.0.1 on an ephemeral port and starts serving.
    ///
    /// # Panics
    /// If the port cannot be bound.
    pub async fn start() -> FakeApiServer {
        let listener = TcpListener::bind(("127.0.0.1", 0))
            .await
            .expect("bind 127.0.0.1:0 for the fake API server");
        let addr = listener
            .local_addr()
            .expect("bound listener has an address");
        let shutdown = CancellationToken::new();
        let state = State {
            resource_version: 1,
            history_start: 1,
            history: VecDeque::new(),
            objects: RESOURCES.iter().map(|_| BTreeMap::new()).collect(),
            watches: Vec::new(),
            snapshots: HashMap::new(),
            next_id: 0,
            unavailable: false,
            failure_status: 503,
            endpointslices_disabled: false,
            requests: Vec::new(),
            connections: shutdown.child_token(),
        };
        let shared = Arc::new(Shared {
            addr,
            state: Mutex::new(state),
            changed: Notify::new(),
            shutdown,
        });
        tokio::spawn(http::serve(listener, Arc::clone(&shared)));
        FakeApiServer { shared }
    }

    /// `http://127.0.0.1:PORT`, for `kube::Config::new`.
    pub fn url(&self) -> String {
        format!("http://{}", self.shared.addr)
    }

    /// The address the server listens on.
    pub fn addr(&self) -> SocketAddr {
        self.shared.addr
    }

    /// Creates or replaces an object, keyed by (apiVersion, kind, namespace, name).
    ///
    /// Assigns the next resourceVersion, and a uid and creationTimestamp unless the
    /// object (or the one it replaces) has them; a namespaced object without a
    /// namespace goes to `default`. Open watches that see it get ADDED or MODIFIED.
    /// Returns the object as stored.
    ///
    /// # Panics
    /// If the type is not served or `metadata.name` is missing.
    pub fn apply(&self, mut object: Value) -> Value {
        let api_version = object["apiVersion"].as_str().unwrap_or_default().to_owned();
        let kind = object["kind"].as_str().unwrap_or_default().to_owned();
        let resource = resource_index(&api_version, &kind);
        let def = &RESOURCES[resource];
        let name = object["metadata"]["name"]
            .as_str()
            .unwrap_or_else(|| panic!("{kind} without metadata.name: {object}"))
            .to_owned();
        let namespace = if def.namespaced {
            let namespace = object["metadata"]["namespace"]
                .as_str()
                .unwrap_or("default")
                .to_owned();
            object["metadata"]["namespace"] = json!(namespace);
            namespace
        } else {
            String::new()
        };

        let mut state = self.shared.lock();
        let key = (namespace, name);
        let previous = state.objects[resource]
            .get(&key)
            .map(|old| old["metadata"].clone());
        for field in ["uid", "creationTimestamp"] {
            if object["metadata"][field].is_null() {
                let value = match previous.as_ref().map(|old| &old[field]) {
                    Some(Value::String(kept)) => kept.clone(),
                    _ if field == "uid" => {
                        format!("00000000-0000-4000-8000-{:012x}", state.next_id())
                    }
                    _ => "2025-01-01T00:00:00Z".to_owned(),
                };
                object["metadata"][field] = json!(value);
            }
        }
        state.resource_version += 1;
        object["metadata"]["resourceVersion"] = json!(state.resource_version.to_string());
        let event_type = if previous.is_some() {
            EventType::Modified
        } else {
            EventType::Added
        };
        state.objects[resource].insert(key, object.clone());
        state.publish(resource, event_type, object.clone());
        drop(state);
        self.shared.changed.notify_waiters();
        object
    }

    /// Deletes an object; `namespace` is ignored for cluster-scoped types.
    ///
    /// Open watches that saw it get DELETED with its last state at a new
    /// resourceVersion. Returns whether it existed.
    pub fn delete(&self, api_version: &str, kind: &str, namespace: &str, name: &str) -> bool {
        let resource = resource_index(api_version, kind);
        let namespace = if RESOURCES[resource].namespaced {
            namespace
        } else {
            ""
        };
        let mut state = self.shared.lock();
        let Some(mut object) =
            state.objects[resource].remove(&(namespace.to_owned(), name.to_owned()))
        else {
            return false;
        };
        state.resource_version += 1;
        object["metadata"]["resourceVersion"] = json!(state.resource_version.to_string());
        state.publish(resource, EventType::Deleted, object);
        drop(state);
        self.shared.changed.notify_waiters();
        true
    }

    /// The stored object, if any; `namespace` is ignored for cluster-scoped types.
    pub fn get(&self, api_version: &str, kind: &str, namespace: &str, name: &str) -> Option<Value> {
        let resource = resource_index(api_version, kind);
        let namespace = if RESOURCES[resource].namespaced {
            namespace
        } else {
            ""
        };
        self.shared.lock().objects[resource]
            .get(&(namespace.to_owned(), name.to_owned()))
            .cloned()
    }

    /// The current resourceVersion, as a list would report it.
    pub fn resource_version(&self) -> String {
        self.shared.lock().resource_version.to_string()
    }

    /// Sends a BOOKMARK at the current resourceVersion on every open watch that
    /// asked for bookmarks (`allowWatchBookmarks=true`).
    pub fn bookmark(&self) {
        let state = self.shared.lock();
        for watch in state.watches.iter().filter(|watch| watch.bookmarks) {
            let _ = watch.sender.send(WatchFrame::Line(bookmark_line(
                watch.resource,
                state.resource_version,
                false,
            )));
        }
    }

    /// Ends every open watch cleanly (the chunked response is terminated).
    pub fn close_watches(&self) {
        self.shared.lock().end_watches(|_| None);
        self.shared.changed.notify_waiters();
    }

    /// Forgets the event history: a watch from any resourceVersion handed out so far
    /// gets a `410 Expired` ERROR event, and every open watch is sent that ERROR and
    /// ended. Objects are kept; a new list works and returns a fresh resourceVersion.
    /// Pending `continue` tokens expire too.
    pub fn expire_history(&self) {
        let mut state = self.shared.lock();
        let oldest = state.resource_version + 1;
        state.end_watches(|watch| Some(WatchFrame::Line(expired_line(&watch.from, oldest))));
        state.forget_history();
        drop(state);
        self.shared.changed.notify_waiters();
    }

    /// Simulates an API server restart: every open connection (watches and idle
    /// keep-alive ones) is dropped without a clean end, and the history is
    /// forgotten as by [`FakeApiServer::expire_history`]. Objects are kept.
    pub fn restart(&self) {
        let mut state = self.shared.lock();
        state.end_watches(|_| Some(WatchFrame::Abort));
        state.forget_history();
        let dropped = std::mem::replace(&mut state.connections, self.shared.shutdown.child_token());
        drop(state);
        dropped.cancel();
        self.shared.changed.notify_waiters();
    }

    /// While `true`, every request is answered with the failure status (503 unless
    /// changed by [`FakeApiServer::set_failure_status`]) and a `Status` body; turning
    /// it on also ends every open watch.
    ///
    /// kube's client retries 429, 503 and 504 by itself (up to 15 times, backing off
    /// from 5 ms), so with 503 a watcher sees no error unless the outage outlasts
    /// those retries; use 500 to make the failure reach the caller at once.
    pub fn set_unavailable(&self, unavailable: bool) {
        let mut state = self.shared.lock();
        state.unavailable = unavailable;
        if unavailable {
            state.end_watches(|_| None);
        }
        drop(state);
        self.shared.changed.notify_waiters();
    }

    /// The HTTP status used while unavailable, e.g. 500 or 429.
    pub fn set_failure_status(&self, status: u16) {
        self.shared.lock().failure_status = status;
    }

    /// On every open watch, writes the first half of an event line and then ends the
    /// response: a watch broken mid-event.
    pub fn send_partial_line(&self) {
        let mut state = self.shared.lock();
        let resource_version = state.resource_version;
        state.end_watches(|watch| {
            let line = bookmark_line(watch.resource, resource_version, false);
            Some(WatchFrame::Partial(line.slice(..line.len() / 2)))
        });
        drop(state);
        self.shared.changed.notify_waiters();
    }

    /// Makes the `discovery.k8s.io` group absent: 404 on its paths and missing from
    /// `/apis`, so clients fall back to core v1 Endpoints. Open EndpointSlice
    /// watches end.
    pub fn disable_endpointslices(&self) {
        let mut state = self.shared.lock();
        state.endpointslices_disabled = true;
        for (index, def) in RESOURCES.iter().enumerate() {
            if def.group == DISCOVERY_GROUP {
                state.end_watches_of(index);
            }
        }
        drop(state);
        self.shared.changed.notify_waiters();
    }

    /// Every request seen so far, as `"GET /path?query"` (query as sent).
    pub fn requests(&self) -> Vec<String> {
        self.shared.lock().requests.clone()
    }

    /// How many watches of `resource` (plural, e.g. `"services"`) are open.
    pub fn open_watches(&self, resource: &str) -> usize {
        let indexes = resource_by_plural(resource);
        self.shared
            .lock()
            .watches
            .iter()
            .filter(|watch| indexes.contains(&watch.resource))
            .count()
    }

    /// Waits until at least `count` watches of `resource` are open.
    ///
    /// # Panics
    /// After 30 s without that happening.
    pub async fn wait_for_watches(&self, resource: &str, count: usize) {
        let what = format!("{count} open watch(es) of {resource}");
        self.wait_until(&what, |server| server.open_watches(resource) >= count)
            .await;
    }

    /// Waits until `condition` holds; it is checked after every request, watch
    /// opening or closing, and object change.
    ///
    /// # Panics
    /// After 30 s without `condition` holding, naming `what`.
    pub async fn wait_until(&self, what: &str, mut condition: impl FnMut(&FakeApiServer) -> bool) {
        let wait = async {
            loop {
                // Registered before checking, so a change between the check and the
                // await still wakes us.
                let changed = self.shared.changed.notified();
                tokio::pin!(changed);
                changed.as_mut().enable();
                if condition(self) {
                    return;
                }
                changed.await;
            }
        };
        if tokio::time::timeout(WAIT_LIMIT, wait).await.is_err() {
            panic!(
                "FakeApiServer: no {what} after {WAIT_LIMIT:?}; requests so far:\n{}",
                self.requests().join("\n")
            );
        }
    }
}

impl Drop for FakeApiServer {
    fn drop(&mut self) {
        self.shared.shutdown.cancel();
    }
}

impl std::fmt::Debug for FakeApiServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeApiServer")
            .field("addr", &self.shared.addr)
            .finish()
    }
}
