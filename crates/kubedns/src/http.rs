//! HTTP: `/readiness` and `/cache` on the healthz port (as kube-dns), `/metrics` on its own port.

use std::collections::BTreeMap;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use kdns_daemon::Readiness;
use serde_json::{Value, json};

use crate::metrics::Metrics;
use crate::model::ServiceKind;
use crate::store::Store;

/// State the healthz routes read.
#[derive(Clone, Debug)]
pub struct HealthzState {
    /// Ready once the first full sync is published.
    pub readiness: Readiness,
    /// The records.
    pub store: Store,
}

/// `/readiness` (200 only after the first full sync) and `/cache` (the record tree as JSON).
pub fn healthz_router(state: HealthzState) -> Router {
    Router::new()
        .route("/readiness", get(readiness))
        .route("/cache", get(cache))
        .with_state(state)
}

/// `/metrics` in the Prometheus text format.
pub fn metrics_router(metrics: Metrics) -> Router {
    Router::new()
        .route("/metrics", get(render_metrics))
        .with_state(metrics)
}

async fn readiness(State(state): State<HealthzState>) -> impl IntoResponse {
    if state.readiness.is_ready() {
        (StatusCode::OK, "ok\n")
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "waiting for the first full sync\n",
        )
    }
}

async fn render_metrics(State(metrics): State<Metrics>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        metrics.encode(),
    )
}

async fn cache(State(state): State<HealthzState>) -> impl IntoResponse {
    axum::Json(cache_json(&state.store))
}

/// The record tree as kube-dns's `/cache` showed it: nested by reversed labels
/// (`local` → `cluster` → `svc` → namespace → service), plus the reverse map.
pub fn cache_json(store: &Store) -> Value {
    let records = store.snapshot();
    let mut namespaces = BTreeMap::new();
    for (ns, namespace) in &records.namespaces {
        let mut services = BTreeMap::new();
        for (name, entry) in &namespace.services {
            let info = &entry.info;
            let mut node = serde_json::Map::new();
            match &info.kind {
                ServiceKind::ClusterIp(ips) => {
                    node.insert("clusterIPs".into(), json!(ips));
                }
                ServiceKind::Headless => {
                    let endpoints: Vec<Value> = entry
                        .serving_endpoints()
                        .map(
                            |e| json!({"label": e.label(), "ip": e.addr.ip, "ready": e.addr.ready}),
                        )
                        .collect();
                    node.insert("endpoints".into(), Value::Array(endpoints));
                }
                ServiceKind::ExternalName(target) => {
                    node.insert("externalName".into(), json!(&**target));
                }
                ServiceKind::ExternalIp(ip) => {
                    node.insert("externalName".into(), json!(ip));
                }
            }
            let ports: Vec<Value> = info
                .ports
                .iter()
                .map(|p| json!({"name": &*p.name, "protocol": &*p.protocol, "port": p.port}))
                .collect();
            node.insert("ports".into(), Value::Array(ports));
            services.insert(name.to_string(), Value::Object(node));
        }
        namespaces.insert(ns.to_string(), json!(services));
    }
    let mut tree = json!({ "svc": namespaces });
    let zone = records.zone().to_ascii();
    for label in zone.trim_end_matches('.').split('.') {
        tree = json!({ label: tree });
    }
    let mut reverse = BTreeMap::new();
    for (ip, targets) in records.reverse.iter() {
        let names: Vec<String> = targets
            .as_slice()
            .iter()
            .map(|t| t.name(records.zone()).to_ascii())
            .collect();
        reverse.insert(ip.to_string(), names);
    }
    json!({ "zone": zone, "serial": records.serial, "tree": tree, "reverse": reverse })
}
