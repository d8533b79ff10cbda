//! Which objects a list or watch request sees: namespace, field and label selectors.

use serde_json::Value;

/// One `key=value`-style term of a selector.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Requirement {
    Equals(String, String),
    NotEquals(String, String),
    Exists(String),
    NotExists(String),
}

impl Requirement {
    fn parse(term: &str) -> Option<Self> {
        let term = term.trim();
        if term.is_empty() {
            return None;
        }
        if let Some((key, value)) = term.split_once("!=") {
            return Some(Self::NotEquals(
                key.trim().to_owned(),
                value.trim().to_owned(),
            ));
        }
        if let Some((key, value)) = term.split_once("==").or_else(|| term.split_once('=')) {
            return Some(Self::Equals(key.trim().to_owned(), value.trim().to_owned()));
        }
        match term.strip_prefix('!') {
            Some(key) => Some(Self::NotExists(key.trim().to_owned())),
            None => Some(Self::Exists(term.to_owned())),
        }
    }

    fn key(&self) -> &str {
        match self {
            Self::Equals(key, _)
            | Self::NotEquals(key, _)
            | Self::Exists(key)
            | Self::NotExists(key) => key,
        }
    }

    fn matches(&self, actual: Option<&str>) -> bool {
        match self {
            Self::Equals(_, want) => actual == Some(want.as_str()),
            Self::NotEquals(_, want) => actual != Some(want.as_str()),
            Self::Exists(_) => actual.is_some(),
            Self::NotExists(_) => actual.is_none(),
        }
    }
}

/// The objects one request may see.
///
/// Supported: the request's namespace, the field selectors `metadata.name` and
/// `metadata.namespace`, and equality-based label selectors. Other field
/// selectors are ignored, and a set-based label selector (`in`, `notin`) makes
/// the whole label selector ignored, i.e. everything matches.
#[derive(Debug, Clone, Default)]
pub(crate) struct Filter {
    namespace: Option<String>,
    fields: Vec<Requirement>,
    labels: Vec<Requirement>,
}

impl Filter {
    pub fn new(
        namespace: Option<&str>,
        field_selector: Option<&str>,
        label_selector: Option<&str>,
    ) -> Self {
        let fields = field_selector
            .into_iter()
            .flat_map(|selector| selector.split(','))
            .filter_map(Requirement::parse)
            .filter(|requirement| {
                matches!(requirement.key(), "metadata.name" | "metadata.namespace")
            })
            .collect();
        let labels = match label_selector {
            Some(selector) if !selector.contains('(') => {
                selector.split(',').filter_map(Requirement::parse).collect()
            }
            _ => Vec::new(),
        };
        Self {
            namespace: namespace.map(str::to_owned),
            fields,
            labels,
        }
    }

    pub fn matches(&self, object: &Value) -> bool {
        let metadata = &object["metadata"];
        if let Some(namespace) = &self.namespace
            && metadata["namespace"].as_str() != Some(namespace.as_str())
        {
            return false;
        }
        let fields_match = self.fields.iter().all(|requirement| {
            let field = requirement.key().trim_start_matches("metadata.");
            requirement.matches(metadata[field].as_str())
        });
        let labels_match = self
            .labels
            .iter()
            .all(|requirement| requirement.matches(metadata["labels"][requirement.key()].as_str()));
        fields_match && labels_match
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn object(namespace: &str, name: &str) -> Value {
        json!({ "metadata": { "namespace": namespace, "name": name, "labels": { "app": "dns", "tier": "x" } } })
    }

    #[test]
    fn namespace_and_name() {
        let filter = Filter::new(Some("kube-system"), Some("metadata.name=coredns"), None);
        assert!(filter.matches(&object("kube-system", "coredns")));
        assert!(!filter.matches(&object("kube-system", "other")));
        assert!(!filter.matches(&object("default", "coredns")));
        let not = Filter::new(None, Some("metadata.name!=coredns,spec.unknown=1"), None);
        assert!(!not.matches(&object("a", "coredns")));
        assert!(not.matches(&object("a", "b")));
    }

    #[test]
    fn labels() {
        assert!(Filter::new(None, None, Some("app=dns,tier")).matches(&object("a", "b")));
        assert!(!Filter::new(None, None, Some("app==web")).matches(&object("a", "b")));
        assert!(!Filter::new(None, None, Some("!tier")).matches(&object("a", "b")));
        assert!(Filter::new(None, None, Some("app in (web)")).matches(&object("a", "b")));
    }
}
