//! The resource types the fake API server serves, and its discovery documents.

use std::net::SocketAddr;

use serde_json::{Value, json};

/// The API group whose absence makes clients fall back to core v1 Endpoints.
pub(crate) const DISCOVERY_GROUP: &str = "discovery.k8s.io";

/// One served resource type.
pub(crate) struct ResourceDef {
    /// API group; empty for the core group.
    pub group: &'static str,
    pub version: &'static str,
    pub plural: &'static str,
    pub singular: &'static str,
    pub kind: &'static str,
    pub namespaced: bool,
    pub short_names: &'static [&'static str],
}

impl ResourceDef {
    /// `v1` or `group/version`, as in an object's `apiVersion`.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_owned()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    pub fn list_kind(&self) -> String {
        format!("{}List", self.kind)
    }
}

pub(crate) const RESOURCES: &[ResourceDef] = &[
    ResourceDef {
        group: "",
        version: "v1",
        plural: "services",
        singular: "service",
        kind: "Service",
        namespaced: true,
        short_names: &["svc"],
    },
    ResourceDef {
        group: "",
        version: "v1",
        plural: "endpoints",
        singular: "endpoints",
        kind: "Endpoints",
        namespaced: true,
        short_names: &["ep"],
    },
    ResourceDef {
        group: "",
        version: "v1",
        plural: "pods",
        singular: "pod",
        kind: "Pod",
        namespaced: true,
        short_names: &["po"],
    },
    ResourceDef {
        group: "",
        version: "v1",
        plural: "configmaps",
        singular: "configmap",
        kind: "ConfigMap",
        namespaced: true,
        short_names: &["cm"],
    },
    ResourceDef {
        group: "",
        version: "v1",
        plural: "namespaces",
        singular: "namespace",
        kind: "Namespace",
        namespaced: false,
        short_names: &["ns"],
    },
    ResourceDef {
        group: DISCOVERY_GROUP,
        version: "v1",
        plural: "endpointslices",
        singular: "endpointslice",
        kind: "EndpointSlice",
        namespaced: true,
        short_names: &[],
    },
];

/// Index into [`RESOURCES`] of the type with this `apiVersion` and `kind`.
pub(crate) fn by_kind(api_version: &str, kind: &str) -> Option<usize> {
    RESOURCES
        .iter()
        .position(|def| def.kind == kind && def.api_version() == api_version)
}

/// Index into [`RESOURCES`] of the type served at `group/version/plural`.
pub(crate) fn by_path(group: &str, version: &str, plural: &str) -> Option<usize> {
    RESOURCES
        .iter()
        .position(|def| def.group == group && def.version == version && def.plural == plural)
}

/// Whether any served type lives in `group/version`.
pub(crate) fn serves_group_version(group: &str, version: &str) -> bool {
    RESOURCES
        .iter()
        .any(|def| def.group == group && def.version == version)
}

/// The non-core groups, in table order, without duplicates.
fn groups() -> Vec<&'static str> {
    let mut groups: Vec<&'static str> = Vec::new();
    for def in RESOURCES {
        if !def.group.is_empty() && !groups.contains(&def.group) {
            groups.push(def.group);
        }
    }
    groups
}

/// `GET /version`.
pub(crate) fn version_info() -> Value {
    json!({
        "major": "1",
        "minor": "33",
        "emulationMajor": "1",
        "emulationMinor": "33",
        "minCompatibilityMajor": "1",
        "minCompatibilityMinor": "32",
        "gitVersion": "v1.33.0",
        "gitCommit": "60a317eadfcb839692a68eab88b2096f4d708f4f",
        "gitTreeState": "clean",
        "buildDate": "2025-04-23T13:07:10Z",
        "goVersion": "go1.24.2",
        "compiler": "gc",
        "platform": "linux/amd64",
    })
}

/// `GET /api`.
pub(crate) fn api_versions(addr: SocketAddr) -> Value {
    json!({
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{ "clientCIDR": "0.0.0.0/0", "serverAddress": addr.to_string() }],
    })
}

fn group_json(group: &str) -> Value {
    let versions: Vec<Value> = RESOURCES
        .iter()
        .filter(|def| def.group == group)
        .map(|def| def.version)
        .fold(Vec::new(), |mut versions: Vec<&str>, version| {
            if !versions.contains(&version) {
                versions.push(version);
            }
            versions
        })
        .into_iter()
        .map(|version| json!({ "groupVersion": format!("{group}/{version}"), "version": version }))
        .collect();
    json!({
        "name": group,
        "preferredVersion": versions.first().cloned().unwrap_or(Value::Null),
        "versions": versions,
    })
}

/// `GET /apis`, leaving out groups in `hidden`.
pub(crate) fn api_group_list(hidden: &[&str]) -> Value {
    let groups: Vec<Value> = groups()
        .into_iter()
        .filter(|group| !hidden.contains(group))
        .map(group_json)
        .collect();
    json!({ "kind": "APIGroupList", "apiVersion": "v1", "groups": groups })
}

/// `GET /apis/{group}`.
pub(crate) fn api_group(group: &str) -> Value {
    let mut body = group_json(group);
    body["kind"] = json!("APIGroup");
    body["apiVersion"] = json!("v1");
    body
}

/// Whether `/apis/{group}` exists at all (before any hiding).
pub(crate) fn is_group(group: &str) -> bool {
    groups().contains(&group)
}

/// `GET /api/v1` or `GET /apis/{group}/{version}`.
pub(crate) fn api_resource_list(group: &str, version: &str) -> Value {
    let resources: Vec<Value> = RESOURCES
        .iter()
        .filter(|def| def.group == group && def.version == version)
        .map(|def| {
            let mut entry = json!({
                "name": def.plural,
                "singularName": def.singular,
                "namespaced": def.namespaced,
                "kind": def.kind,
                "verbs": ["get", "list", "watch"],
            });
            if !def.short_names.is_empty() {
                entry["shortNames"] = json!(def.short_names);
            }
            entry
        })
        .collect();
    let group_version = if group.is_empty() {
        version.to_owned()
    } else {
        format!("{group}/{version}")
    };
    json!({
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": group_version,
        "resources": resources,
    })
}
