//! The HTTP side of the fake API server: connections, routing, list, watch, get.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Query, Request, State};
use axum::http::{Method, StatusCode, header};
use axum::response::Response;
use bytes::Bytes;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

use super::resources::{self, DISCOVERY_GROUP, RESOURCES};
use super::selector::Filter;
use super::{
    ListSnapshot, Shared, Watch, WatchFrame, bookmark_line, expired_line, reason_for, status_object,
};

/// The watch length when the client sends no `timeoutSeconds` (the real server
/// picks 30–60 minutes).
const DEFAULT_WATCH_TIMEOUT: Duration = Duration::from_secs(1800);

/// At most this many unfinished paginated lists are remembered.
const SNAPSHOT_LIMIT: usize = 64;

type QueryParams = HashMap<String, String>;

/// Accepts connections until shutdown; each connection also ends when the
/// server's current connection token is cancelled (a simulated restart).
pub(super) async fn serve(listener: TcpListener, shared: Arc<Shared>) {
    let app = Router::new()
        .fallback(handle)
        .with_state(Arc::clone(&shared));
    loop {
        let accepted = tokio::select! {
            () = shared.shutdown.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        let stream = match accepted {
            Ok((stream, _peer)) => stream,
            Err(err) => {
                tracing::warn!(%err, "fake API server: accept failed");
                // Out of file descriptors and similar: don't spin.
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let dropped = shared.lock().connections.clone();
        let service = TowerToHyperService::new(app.clone());
        tokio::spawn(async move {
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder.timer(TokioTimer::new());
            let connection = builder.serve_connection(TokioIo::new(stream), service);
            tokio::select! {
                result = connection => {
                    if let Err(err) = result {
                        tracing::debug!(%err, "fake API server: connection ended with an error");
                    }
                }
                // Dropping the connection future closes the socket mid-whatever.
                () = dropped.cancelled() => {}
            }
        });
    }
}

async fn handle(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    let method = request.method().clone();
    let uri = request.uri().clone();
    let target = uri
        .path_and_query()
        .map_or(uri.path(), |target| target.as_str());
    let failure = {
        let mut state = shared.lock();
        state.requests.push(format!("{method} {target}"));
        state.unavailable.then_some(state.failure_status)
    };
    shared.changed.notify_waiters();
    if let Some(code) = failure {
        return status_response(code, "the fake API server is unavailable");
    }
    if method != Method::GET {
        return status_response(405, &format!("{method} is not supported"));
    }
    let query: QueryParams = Query::try_from_uri(&uri)
        .map(|Query(query)| query)
        .unwrap_or_default();
    route(&shared, uri.path(), &query)
}

fn route(shared: &Arc<Shared>, path: &str, query: &QueryParams) -> Response {
    let segments: Vec<&str> = path
        .split('/')
        .filter(|segment| !segment.is_empty())
        .collect();
    let slices_disabled = shared.lock().endpointslices_disabled;
    let group_served =
        |group: &str| resources::is_group(group) && !(slices_disabled && group == DISCOVERY_GROUP);
    match segments.as_slice() {
        ["version"] => json_response(StatusCode::OK, &resources::version_info()),
        ["api"] => json_response(StatusCode::OK, &resources::api_versions(shared.addr)),
        ["apis"] => {
            let hidden: &[&str] = if slices_disabled {
                &[DISCOVERY_GROUP]
            } else {
                &[]
            };
            json_response(StatusCode::OK, &resources::api_group_list(hidden))
        }
        ["api", version, rest @ ..] => group_version(shared, "", version, rest, query, path),
        ["apis", group] if group_served(group) => {
            json_response(StatusCode::OK, &resources::api_group(group))
        }
        ["apis", group, version, rest @ ..] if group_served(group) => {
            group_version(shared, group, version, rest, query, path)
        }
        _ => not_found(path),
    }
}

fn group_version(
    shared: &Arc<Shared>,
    group: &str,
    version: &str,
    rest: &[&str],
    query: &QueryParams,
    path: &str,
) -> Response {
    if !resources::serves_group_version(group, version) {
        return not_found(path);
    }
    let find = |plural: &str, namespaced: bool| {
        resources::by_path(group, version, plural)
            .filter(|&index| !namespaced || RESOURCES[index].namespaced)
    };
    match rest {
        [] => json_response(
            StatusCode::OK,
            &resources::api_resource_list(group, version),
        ),
        [plural] => match find(plural, false) {
            Some(resource) => collection(shared, resource, None, query),
            None => not_found(path),
        },
        [plural, name] => match find(plural, false) {
            Some(resource) if !RESOURCES[resource].namespaced => {
                get_object(shared, resource, "", name)
            }
            _ => not_found(path),
        },
        ["namespaces", namespace, plural] => match find(plural, true) {
            Some(resource) => collection(shared, resource, Some(namespace), query),
            None => not_found(path),
        },
        ["namespaces", namespace, plural, name] => match find(plural, true) {
            Some(resource) => get_object(shared, resource, namespace, name),
            None => not_found(path),
        },
        _ => not_found(path),
    }
}

fn collection(
    shared: &Arc<Shared>,
    resource: usize,
    namespace: Option<&str>,
    query: &QueryParams,
) -> Response {
    let param = |name: &str| query.get(name).map(String::as_str);
    let filter = Filter::new(namespace, param("fieldSelector"), param("labelSelector"));
    if matches!(param("watch"), Some("true" | "1")) {
        watch(shared, resource, filter, query)
    } else {
        list(shared, resource, filter, query)
    }
}

fn get_object(shared: &Arc<Shared>, resource: usize, namespace: &str, name: &str) -> Response {
    let object = shared.lock().objects[resource]
        .get(&(namespace.to_owned(), name.to_owned()))
        .cloned();
    match object {
        Some(object) => json_response(StatusCode::OK, &object),
        None => {
            let def = &RESOURCES[resource];
            let mut body = status_object(
                404,
                "NotFound",
                &format!("{} \"{name}\" not found", def.plural),
            );
            body["details"] = json!({ "name": name, "group": def.group, "kind": def.plural });
            json_response(StatusCode::NOT_FOUND, &body)
        }
    }
}

/// A list page. The first request snapshots the matching objects; `continue`
/// tokens page through that snapshot, so pages are consistent with the
/// resourceVersion the first page reported, as with a real API server.
fn list(shared: &Arc<Shared>, resource: usize, filter: Filter, query: &QueryParams) -> Response {
    let param = |name: &str| {
        query
            .get(name)
            .map(String::as_str)
            .filter(|value| !value.is_empty())
    };
    let limit = param("limit")
        .and_then(|limit| limit.parse::<usize>().ok())
        .filter(|&limit| limit > 0);
    let mut state = shared.lock();

    let (snapshot_id, start) = match param("continue") {
        Some(token) => {
            let Some((id, offset)) = decode_continue(token) else {
                return status_response(400, &format!("invalid continue token {token:?}"));
            };
            match state.snapshots.get(&id) {
                Some(snapshot)
                    if snapshot.resource == resource && offset <= snapshot.items.len() =>
                {
                    (id, offset)
                }
                Some(_) => return status_response(400, "continue token is for another list"),
                None => {
                    let message = "The provided continue parameter is too old to display a consistent list \
                                   result. You can start a new list without the continue parameter.";
                    return status_response(410, message);
                }
            }
        }
        None => {
            let current = state.resource_version;
            if let Some(wanted) = param("resourceVersion") {
                let Ok(wanted) = wanted.parse::<u64>() else {
                    return status_response(400, &format!("invalid resourceVersion {wanted:?}"));
                };
                // Only the current state is kept, so older exact reads cannot be served.
                if param("resourceVersionMatch") == Some("Exact") && wanted != current {
                    let message = format!("too old resource version: {wanted} ({current})");
                    return status_response(410, &message);
                }
                if wanted > current {
                    let message =
                        format!("Too large resource version: {wanted}, current: {current}");
                    return status_response(504, &message);
                }
            }
            let items: Vec<Value> = state.objects[resource]
                .values()
                .filter(|object| filter.matches(object))
                .map(list_item)
                .collect();
            let id = state.next_id();
            state.snapshots.insert(
                id,
                ListSnapshot {
                    resource,
                    resource_version: current,
                    items,
                },
            );
            (id, 0)
        }
    };

    let snapshot = &state.snapshots[&snapshot_id];
    let total = snapshot.items.len();
    let end = limit.map_or(total, |limit| total.min(start + limit));
    let items = snapshot.items[start..end].to_vec();
    let resource_version = snapshot.resource_version;
    let mut metadata = json!({ "resourceVersion": resource_version.to_string() });
    if end < total {
        metadata["continue"] = json!(encode_continue(snapshot_id, end));
        metadata["remainingItemCount"] = json!(total - end);
        if state.snapshots.len() > SNAPSHOT_LIMIT
            && let Some(&oldest) = state.snapshots.keys().min()
        {
            state.snapshots.remove(&oldest);
        }
    } else {
        state.snapshots.remove(&snapshot_id);
    }
    drop(state);

    let def = &RESOURCES[resource];
    let body = json!({
        "kind": def.list_kind(),
        "apiVersion": def.api_version(),
        "metadata": metadata,
        "items": items,
    });
    json_response(StatusCode::OK, &body)
}

/// Real API servers leave `kind` and `apiVersion` out of list items.
fn list_item(object: &Value) -> Value {
    let mut item = object.clone();
    if let Some(fields) = item.as_object_mut() {
        fields.remove("kind");
        fields.remove("apiVersion");
    }
    item
}

/// Opaque to clients; only this server reads it back.
fn encode_continue(snapshot: u64, offset: usize) -> String {
    format!("snapshot-{snapshot}-{offset}")
        .bytes()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

fn decode_continue(token: &str) -> Option<(u64, usize)> {
    if !token.len().is_multiple_of(2) {
        return None;
    }
    let bytes: Vec<u8> = (0..token.len())
        .step_by(2)
        .map(|at| u8::from_str_radix(token.get(at..at + 2)?, 16).ok())
        .collect::<Option<_>>()?;
    let text = String::from_utf8(bytes).ok()?;
    let (snapshot, offset) = text.strip_prefix("snapshot-")?.split_once('-')?;
    Some((snapshot.parse().ok()?, offset.parse().ok()?))
}

/// Opens a watch: replays what the client missed since its resourceVersion (or
/// the whole current state for `""`/`"0"`), then streams live events.
fn watch(shared: &Arc<Shared>, resource: usize, filter: Filter, query: &QueryParams) -> Response {
    let param = |name: &str| query.get(name).map(String::as_str);
    let bookmarks = param("allowWatchBookmarks") == Some("true");
    let send_initial_events = param("sendInitialEvents") == Some("true");
    let timeout = param("timeoutSeconds")
        .and_then(|seconds| seconds.parse::<u64>().ok())
        .filter(|&seconds| seconds > 0)
        .map_or(DEFAULT_WATCH_TIMEOUT, Duration::from_secs);
    let from = param("resourceVersion").unwrap_or_default().to_owned();

    let (sender, receiver) = mpsc::unbounded_channel();
    let send = |line: Bytes| {
        // The receiver is alive until this function returns it.
        let _ = sender.send(WatchFrame::Line(line));
    };
    let mut state = shared.lock();
    if from.is_empty() || from == "0" {
        for object in state.objects[resource]
            .values()
            .filter(|object| filter.matches(object))
        {
            send(super::event_line("ADDED", object));
        }
        if send_initial_events {
            send(bookmark_line(resource, state.resource_version, true));
        }
    } else {
        let Ok(start) = from.parse::<u64>() else {
            return status_response(400, &format!("invalid resourceVersion {from:?}"));
        };
        if start < state.history_start {
            // Like the real server: a 200 response holding one ERROR event, then the end.
            send(expired_line(&from, state.history_start));
            drop(state);
            drop(sender);
            return watch_response(receiver, None, timeout);
        }
        for event in &state.history {
            if event.resource_version > start
                && event.resource == resource
                && filter.matches(&event.object)
            {
                send(event.line.clone());
            }
        }
    }
    let id = state.next_id();
    state.watches.push(Watch {
        id,
        resource,
        filter,
        bookmarks,
        from,
        sender,
    });
    drop(state);
    shared.changed.notify_waiters();
    let registration = WatchRegistration {
        shared: Arc::clone(shared),
        id,
    };
    watch_response(receiver, Some(registration), timeout)
}

/// Deregisters a watch when its response body is dropped (finished or disconnected).
struct WatchRegistration {
    shared: Arc<Shared>,
    id: u64,
}

impl Drop for WatchRegistration {
    fn drop(&mut self) {
        self.shared
            .lock()
            .watches
            .retain(|watch| watch.id != self.id);
        self.shared.changed.notify_waiters();
    }
}

/// What a watch response body reads from.
struct WatchFeed {
    frames: mpsc::UnboundedReceiver<WatchFrame>,
    deadline: std::pin::Pin<Box<tokio::time::Sleep>>,
    _registration: Option<WatchRegistration>,
}

fn watch_response(
    frames: mpsc::UnboundedReceiver<WatchFrame>,
    registration: Option<WatchRegistration>,
    timeout: Duration,
) -> Response {
    let feed = WatchFeed {
        frames,
        deadline: Box::pin(tokio::time::sleep(timeout)),
        _registration: registration,
    };
    let body = futures::stream::unfold(Some(feed), |feed| async move {
        let mut feed = feed?;
        let frame = tokio::select! {
            frame = feed.frames.recv() => frame,
            () = &mut feed.deadline => None,
        };
        match frame {
            Some(WatchFrame::Line(line)) => Some((Ok(line), Some(feed))),
            Some(WatchFrame::Partial(bytes)) => Some((Ok(bytes), None)),
            // A body error makes hyper drop the connection without the last chunk.
            Some(WatchFrame::Abort) => {
                Some((Err(std::io::Error::other("connection dropped")), None))
            }
            None => None,
        }
    });
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from_stream(body))
        .expect("static response parts are valid")
}

fn json_response(status: StatusCode, body: &Value) -> Response {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(
            serde_json::to_vec(body).expect("a JSON value always serializes"),
        ))
        .expect("static response parts are valid")
}

fn status_response(code: u16, message: &str) -> Response {
    let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    json_response(status, &status_object(code, reason_for(code), message))
}

fn not_found(path: &str) -> Response {
    status_response(
        404,
        &format!("the server could not find the requested resource ({path})"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn continue_tokens_round_trip() {
        let token = encode_continue(17, 500);
        assert!(!token.contains("500"), "token should be opaque: {token}");
        assert_eq!(decode_continue(&token), Some((17, 500)));
        assert_eq!(decode_continue("zz"), None);
        assert_eq!(decode_continue("abc"), None);
    }
}
