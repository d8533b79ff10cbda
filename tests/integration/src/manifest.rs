//! The files in `manifests/` as Kubernetes objects.
//!
//! A manifest is read as an operator applies it: the placeholders substituted ([`PLACEHOLDERS`]),
//! then split into YAML documents. Each document is kept as JSON (to compare and to look into)
//! and converts on demand into its k8s-openapi type ([`Document::to`]).

use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::PodSpec;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::repo_root;

/// Every manifest this project ships.
pub const MANIFESTS: &[&str] = &[
    "manifests/kube-dns.yaml",
    "manifests/kube-dns-recommended.yaml",
    "manifests/nodelocal-dnsmasq-rs.yaml",
];

/// The upstream kube-dns addon the drop-in manifest is held to.
pub const UPSTREAM_ADDON: &str = "tests/fixtures/manifests/upstream-kube-dns.yaml.base";

/// The placeholders of the upstream addon (kept by ours), and the values tests use for them.
pub const PLACEHOLDERS: &[(&str, &str)] = &[
    ("__DNS__SERVER__", "10.96.0.10"),
    ("__DNS__DOMAIN__", "cluster.local"),
    ("__DNS__MEMORY__LIMIT__", "170Mi"),
];

/// One object of a manifest.
#[derive(Clone, Debug)]
pub struct Document {
    /// `kind`.
    pub kind: String,
    /// `metadata.name`.
    pub name: String,
    /// `metadata.namespace`, empty for cluster-scoped objects.
    pub namespace: String,
    /// The whole object.
    pub value: Value,
}

impl Document {
    /// The object as its k8s-openapi type.
    ///
    /// # Panics
    /// If it does not deserialize as `T`.
    #[track_caller]
    pub fn to<T: DeserializeOwned>(&self) -> T {
        serde_json::from_value(self.value.clone()).unwrap_or_else(|e| {
            panic!(
                "{} {}: not a valid {}: {e}",
                self.kind, self.name, self.kind
            )
        })
    }

    /// `kind/name`, for messages.
    pub fn id(&self) -> String {
        format!("{}/{}", self.kind, self.name)
    }
}

/// A manifest file, placeholders substituted.
#[derive(Clone, Debug)]
pub struct Manifest {
    /// Relative to the repository root.
    pub path: String,
    /// Its objects, in order.
    pub documents: Vec<Document>,
}

impl Manifest {
    /// Reads `path` (relative to the repository root) and substitutes [`PLACEHOLDERS`].
    ///
    /// # Panics
    /// If the file cannot be read or is not YAML, or a document has no kind or name.
    pub fn load(path: &str) -> Self {
        let full: PathBuf = repo_root().join(path);
        let text = std::fs::read_to_string(&full)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", full.display()));
        Self::parse(path, &substitute(&text))
    }

    /// Every manifest in [`MANIFESTS`].
    pub fn all() -> Vec<Self> {
        MANIFESTS.iter().map(|path| Self::load(path)).collect()
    }

    /// Splits YAML `text` into its documents.
    ///
    /// # Panics
    /// If it is not YAML, or a document has no kind or name.
    pub fn parse(path: &str, text: &str) -> Self {
        let mut documents = Vec::new();
        for yaml in serde_yaml_ng::Deserializer::from_str(text) {
            let value = Value::deserialize(yaml).unwrap_or_else(|e| {
                panic!("{path}: document {} is not YAML: {e}", documents.len())
            });
            if value.is_null() {
                continue;
            }
            let field = |pointer: &str| value.pointer(pointer).and_then(Value::as_str);
            let kind = field("/kind")
                .unwrap_or_else(|| panic!("{path}: a document without kind: {value}"))
                .to_owned();
            let name = field("/metadata/name")
                .unwrap_or_else(|| panic!("{path}: a {kind} without metadata.name"))
                .to_owned();
            let namespace = field("/metadata/namespace").unwrap_or_default().to_owned();
            documents.push(Document {
                kind,
                name,
                namespace,
                value,
            });
        }
        Self {
            path: path.to_owned(),
            documents,
        }
    }

    /// The objects of `kind`.
    pub fn of_kind<'a>(&'a self, kind: &'a str) -> impl Iterator<Item = &'a Document> + 'a {
        self.documents.iter().filter(move |doc| doc.kind == kind)
    }

    /// The object of `kind` named `name`, if any.
    pub fn get(&self, kind: &str, name: &str) -> Option<&Document> {
        self.documents
            .iter()
            .find(|doc| doc.kind == kind && doc.name == name)
    }

    /// The pod templates of the Deployments and DaemonSets: workload, and its pod spec.
    pub fn pod_specs(&self) -> Vec<(String, PodSpec)> {
        let mut specs = Vec::new();
        for doc in &self.documents {
            let spec = match doc.kind.as_str() {
                "Deployment" => doc
                    .to::<k8s_openapi::api::apps::v1::Deployment>()
                    .spec
                    .and_then(|s| s.template.spec),
                "DaemonSet" => doc
                    .to::<k8s_openapi::api::apps::v1::DaemonSet>()
                    .spec
                    .and_then(|s| s.template.spec),
                _ => continue,
            };
            let spec =
                spec.unwrap_or_else(|| panic!("{}: {} has no pod spec", self.path, doc.id()));
            specs.push((doc.id(), spec));
        }
        specs
    }

    /// The file name, for messages.
    pub fn file_name(&self) -> &str {
        Path::new(&self.path)
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or(&self.path)
    }
}

/// `text` with every placeholder replaced by its value in [`PLACEHOLDERS`].
pub fn substitute(text: &str) -> String {
    PLACEHOLDERS
        .iter()
        .fold(text.to_owned(), |text, (placeholder, value)| {
            text.replace(placeholder, value)
        })
}
