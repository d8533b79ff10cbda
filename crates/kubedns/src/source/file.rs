//! The cluster-state file: Kubernetes objects as YAML (several documents, or a `List` as
//! `kubectl get svc,endpointslices -A -o yaml` prints it) or JSON, re-read when it changes.
//!
//! Each read is a complete list, so it becomes `Init`/`InitApply`/`InitDone` for every resource:
//! whatever the file no longer holds is removed. A file that fails to parse on a re-read is
//! logged and the previous state stays.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use k8s_openapi::api::core::v1::{Endpoints, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use serde::de::DeserializeOwned;
use serde_json::Value;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{endpoints_object, pod_object, report, service_object, slice_object};
use crate::metrics::Metrics;
use crate::model::Problem;
use crate::store::{Object, Resource, SourceEvent};

/// Why a cluster-state file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The file could not be read.
    #[error("cannot read cluster-state file {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file is neither YAML nor JSON.
    #[error("cluster-state file {path} is not valid YAML or JSON: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's complaint.
        message: String,
    },
}

/// The objects of one read, per resource.
#[derive(Debug, Default)]
pub struct ClusterState {
    /// Listed objects, per resource.
    pub objects: Vec<(Resource, Object)>,
    /// Malformed fields and objects found.
    pub problems: Vec<(Resource, Problem)>,
}

impl ClusterState {
    /// The events that replace everything with this state.
    pub fn into_events(self) -> Vec<SourceEvent> {
        let resources = [
            Resource::Services,
            Resource::EndpointSlices,
            Resource::Endpoints,
            Resource::Pods,
        ];
        let mut events: Vec<SourceEvent> =
            resources.iter().map(|r| SourceEvent::Init(*r)).collect();
        events.extend(
            self.objects
                .into_iter()
                .map(|(r, o)| SourceEvent::InitApply(r, o)),
        );
        events.extend(resources.iter().map(|r| SourceEvent::InitDone(*r)));
        events
    }
}

/// Parses cluster-state text (YAML documents or JSON).
pub fn parse(text: &str, path: &Path) -> Result<ClusterState, Error> {
    let documents: Vec<Value> = if text.trim_start().starts_with(['{', '[']) {
        let value: Value = serde_json::from_str(text).map_err(|e| Error::Parse {
            path: path.to_owned(),
            message: e.to_string(),
        })?;
        vec![value]
    } else {
        let mut docs = Vec::new();
        for doc in serde_yaml_ng::Deserializer::from_str(text) {
            let value =
                <Value as serde::Deserialize>::deserialize(doc).map_err(|e| Error::Parse {
                    path: path.to_owned(),
                    message: e.to_string(),
                })?;
            if !value.is_null() {
                docs.push(value);
            }
        }
        docs
    };
    let mut items = Vec::new();
    for doc in documents {
        flatten(doc, &mut items);
    }
    // A dump with both EndpointSlices and Endpoints describes the same endpoints twice; the
    // slices are the richer form (both families, conditions), so they win.
    let has_slices = items.iter().any(|v| kind(v) == "EndpointSlice");
    let mut state = ClusterState::default();
    for item in items {
        let mut problems = Vec::new();
        let (resource, object) = match kind(&item) {
            "Service" => (
                Resource::Services,
                decode::<Service>(&item, &mut problems)
                    .and_then(|s| service_object(&s, &mut problems)),
            ),
            "EndpointSlice" => (
                Resource::EndpointSlices,
                decode::<EndpointSlice>(&item, &mut problems)
                    .and_then(|s| slice_object(&s, &mut problems)),
            ),
            "Endpoints" if !has_slices => (
                Resource::Endpoints,
                decode::<Endpoints>(&item, &mut problems)
                    .and_then(|e| endpoints_object(&e, &mut problems)),
            ),
            "Pod" => (
                Resource::Pods,
                decode::<Pod>(&item, &mut problems).and_then(|p| pod_object(&p, &mut problems)),
            ),
            _ => continue,
        };
        state
            .problems
            .extend(problems.into_iter().map(|p| (resource, p)));
        if let Some(object) = object {
            state.objects.push((resource, object));
        }
    }
    Ok(state)
}

fn kind(value: &Value) -> &str {
    value.get("kind").and_then(Value::as_str).unwrap_or("")
}

fn flatten(value: Value, out: &mut Vec<Value>) {
    match value {
        Value::Array(values) => values.into_iter().for_each(|v| flatten(v, out)),
        Value::Object(mut map) if map.contains_key("items") => {
            // `kind: List`, `ServiceList`, ...: items may omit their kind, as the API server's
            // typed lists do.
            let item_kind = map
                .get("kind")
                .and_then(Value::as_str)
                .and_then(|k| k.strip_suffix("List"))
                .filter(|k| !k.is_empty())
                .map(str::to_owned);
            if let Some(Value::Array(items)) = map.remove("items") {
                for mut item in items {
                    if let (Some(k), Some(obj)) = (&item_kind, item.as_object_mut()) {
                        obj.entry("kind")
                            .or_insert_with(|| Value::String(k.clone()));
                    }
                    flatten(item, out);
                }
            }
        }
        other => out.push(other),
    }
}

fn decode<T: DeserializeOwned>(value: &Value, problems: &mut Vec<Problem>) -> Option<T> {
    match T::deserialize(value) {
        Ok(v) => Some(v),
        Err(e) => {
            let name = value
                .pointer("/metadata/name")
                .and_then(Value::as_str)
                .unwrap_or("?");
            problems.push(Problem {
                object: format!("{} {name}", kind(value)),
                what: format!("not a valid object: {e}"),
            });
            None
        }
    }
}

/// Reads and parses the file.
pub fn read(path: &Path) -> Result<ClusterState, Error> {
    let text = std::fs::read_to_string(path).map_err(|source| Error::Read {
        path: path.to_owned(),
        source,
    })?;
    parse(&text, path)
}

fn stamp(path: &Path) -> Option<(SystemTime, u64)> {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.modified().ok()?, meta.len()))
}

/// Sends the file's state now, then again whenever it changes (polled every `period`).
///
/// The first read must succeed (the caller reports the error and exits); later failures keep the
/// previous state.
pub async fn run(
    path: PathBuf,
    period: Duration,
    events: mpsc::Sender<SourceEvent>,
    metrics: Metrics,
    shutdown: CancellationToken,
) {
    let mut last = stamp(&path);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(period) => {}
        }
        let now = stamp(&path);
        if now == last {
            continue;
        }
        last = now;
        match read(&path) {
            Ok(state) => {
                tracing::info!(path = %path.display(), objects = state.objects.len(), "cluster-state file changed; reloading");
                if send_state(state, &events, &metrics).await.is_err() {
                    return;
                }
            }
            Err(e) => {
                metrics.source_error(Resource::Services);
                tracing::warn!(error = %e, "keeping the previous cluster state");
            }
        }
    }
}

/// Reports a state's problems and sends its events.
pub async fn send_state(
    mut state: ClusterState,
    events: &mpsc::Sender<SourceEvent>,
    metrics: &Metrics,
) -> Result<(), mpsc::error::SendError<SourceEvent>> {
    for (resource, problem) in std::mem::take(&mut state.problems) {
        report(vec![problem], metrics, resource);
    }
    for event in state.into_events() {
        events.send(event).await?;
    }
    Ok(())
}
