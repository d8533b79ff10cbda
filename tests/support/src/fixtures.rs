//! Builders for the Kubernetes objects the DNS server reads, as `serde_json::Value`
//! in the shape `kubectl get -o json` prints (without server-set fields such as
//! `resourceVersion` and `uid`, which [`crate::FakeApiServer::apply`] assigns).

use std::net::IpAddr;

use serde_json::{Map, Value, json};

/// The label that ties an EndpointSlice to its Service.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

fn metadata(namespace: &str, name: &str) -> Value {
    json!({ "name": name, "namespace": namespace })
}

fn ip_family(ip: &str) -> &'static str {
    match ip.parse::<IpAddr>() {
        Ok(IpAddr::V6(_)) => "IPv6",
        _ => "IPv4",
    }
}

fn port_json(name: &str, port: u16, protocol: &str) -> Value {
    let mut entry = json!({ "port": port, "protocol": protocol });
    // Kubernetes omits the name of an unnamed port rather than sending "".
    if !name.is_empty() {
        entry["name"] = json!(name);
    }
    entry
}

/// Starts a core v1 Service; see [`ServiceBuilder`].
pub fn service(namespace: &str, name: &str) -> ServiceBuilder {
    ServiceBuilder {
        namespace: namespace.to_owned(),
        name: name.to_owned(),
        cluster_ips: Vec::new(),
        headless: false,
        external_name: None,
        ports: Vec::new(),
        publish_not_ready: false,
        labels: Map::new(),
    }
}

/// Builds a core v1 Service. Without `cluster_ip`, `headless` or `external_name`
/// it is a ClusterIP Service with no IP assigned yet.
#[derive(Debug, Clone)]
pub struct ServiceBuilder {
    namespace: String,
    name: String,
    cluster_ips: Vec<String>,
    headless: bool,
    external_name: Option<String>,
    ports: Vec<Value>,
    publish_not_ready: bool,
    labels: Map<String, Value>,
}

impl ServiceBuilder {
    /// A single-stack ClusterIP.
    pub fn cluster_ip(self, ip: &str) -> Self {
        self.cluster_ips(&[ip])
    }

    /// One ClusterIP per family; the first is also `spec.clusterIP`.
    pub fn cluster_ips(mut self, ips: &[&str]) -> Self {
        self.cluster_ips = ips.iter().map(|ip| (*ip).to_owned()).collect();
        self.headless = false;
        self
    }

    /// `clusterIP: None`.
    pub fn headless(mut self) -> Self {
        self.headless = true;
        self.cluster_ips.clear();
        self
    }

    /// `type: ExternalName` pointing at `target`.
    pub fn external_name(mut self, target: &str) -> Self {
        self.external_name = Some(target.to_owned());
        self
    }

    /// Adds a port; `name` may be empty for a single unnamed port.
    pub fn port(mut self, name: &str, port: u16, protocol: &str) -> Self {
        let mut entry = port_json(name, port, protocol);
        entry["targetPort"] = json!(port);
        self.ports.push(entry);
        self
    }

    /// `publishNotReadyAddresses: true`.
    pub fn publish_not_ready(mut self) -> Self {
        self.publish_not_ready = true;
        self
    }

    /// Adds a metadata label.
    pub fn label(mut self, key: &str, value: &str) -> Self {
        self.labels.insert(key.to_owned(), json!(value));
        self
    }

    /// The Service object.
    pub fn build(self) -> Value {
        let mut spec = Map::new();
        if let Some(target) = &self.external_name {
            spec.insert("type".into(), json!("ExternalName"));
            spec.insert("externalName".into(), json!(target));
        } else {
            spec.insert("type".into(), json!("ClusterIP"));
            if self.headless {
                spec.insert("clusterIP".into(), json!("None"));
                spec.insert("clusterIPs".into(), json!(["None"]));
            } else if let Some(first) = self.cluster_ips.first() {
                let families: Vec<&str> = self.cluster_ips.iter().map(|ip| ip_family(ip)).collect();
                let policy = if self.cluster_ips.len() > 1 {
                    "RequireDualStack"
                } else {
                    "SingleStack"
                };
                spec.insert("clusterIP".into(), json!(first));
                spec.insert("clusterIPs".into(), json!(self.cluster_ips));
                spec.insert("ipFamilies".into(), json!(families));
                spec.insert("ipFamilyPolicy".into(), json!(policy));
            }
        }
        if !self.ports.is_empty() {
            spec.insert("ports".into(), Value::Array(self.ports));
        }
        if self.publish_not_ready {
            spec.insert("publishNotReadyAddresses".into(), json!(true));
        }
        let mut meta = metadata(&self.namespace, &self.name);
        if !self.labels.is_empty() {
            meta["labels"] = Value::Object(self.labels);
        }
        json!({
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": meta,
            "spec": spec,
        })
    }
}

/// Starts a `discovery.k8s.io/v1` EndpointSlice of Service `service_name`; see
/// [`EndpointSliceBuilder`].
pub fn endpoint_slice(namespace: &str, name: &str, service_name: &str) -> EndpointSliceBuilder {
    EndpointSliceBuilder {
        namespace: namespace.to_owned(),
        name: name.to_owned(),
        service_name: service_name.to_owned(),
        address_type: None,
        endpoints: Vec::new(),
        ports: Vec::new(),
    }
}

/// Builds an EndpointSlice, labelled with [`SERVICE_NAME_LABEL`].
///
/// The address type defaults to the family of the first endpoint (IPv4 if none).
#[derive(Debug, Clone)]
pub struct EndpointSliceBuilder {
    namespace: String,
    name: String,
    service_name: String,
    address_type: Option<String>,
    endpoints: Vec<Value>,
    ports: Vec<Value>,
}

impl EndpointSliceBuilder {
    /// `addressType`: `"IPv4"`, `"IPv6"` or `"FQDN"`.
    pub fn address_type(mut self, address_type: &str) -> Self {
        self.address_type = Some(address_type.to_owned());
        self
    }

    /// Adds an endpoint; a ready endpoint is also serving and not terminating.
    pub fn endpoint(mut self, ip: &str, ready: bool) -> Self {
        self.endpoints.push(slice_endpoint(ip, None, ready));
        self
    }

    /// Adds an endpoint with `hostname` (as a StatefulSet pod behind a headless Service has).
    pub fn endpoint_with_hostname(mut self, ip: &str, hostname: &str, ready: bool) -> Self {
        self.endpoints
            .push(slice_endpoint(ip, Some(hostname), ready));
        self
    }

    /// Adds a port; `name` may be empty.
    pub fn port(mut self, name: &str, port: u16, protocol: &str) -> Self {
        self.ports.push(port_json(name, port, protocol));
        self
    }

    /// The EndpointSlice object.
    pub fn build(self) -> Value {
        let address_type = self.address_type.unwrap_or_else(|| {
            let first_ip = self
                .endpoints
                .first()
                .and_then(|e| e["addresses"][0].as_str());
            ip_family(first_ip.unwrap_or("0.0.0.0")).to_owned()
        });
        json!({
            "apiVersion": "discovery.k8s.io/v1",
            "kind": "EndpointSlice",
            "metadata": {
                "name": self.name,
                "namespace": self.namespace,
                "labels": {
                    SERVICE_NAME_LABEL: self.service_name,
                    "endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io",
                },
            },
            "addressType": address_type,
            "endpoints": self.endpoints,
            "ports": self.ports,
        })
    }
}

fn slice_endpoint(ip: &str, hostname: Option<&str>, ready: bool) -> Value {
    let mut endpoint = json!({
        "addresses": [ip],
        "conditions": { "ready": ready, "serving": ready, "terminating": false },
    });
    if let Some(hostname) = hostname {
        endpoint["hostname"] = json!(hostname);
    }
    endpoint
}

/// Starts a core v1 Endpoints object (one subset); see [`EndpointsBuilder`].
pub fn endpoints(namespace: &str, name: &str) -> EndpointsBuilder {
    EndpointsBuilder {
        namespace: namespace.to_owned(),
        name: name.to_owned(),
        ready: Vec::new(),
        not_ready: Vec::new(),
        ports: Vec::new(),
    }
}

/// Builds a core v1 Endpoints object with a single subset.
#[derive(Debug, Clone)]
pub struct EndpointsBuilder {
    namespace: String,
    name: String,
    ready: Vec<Value>,
    not_ready: Vec<Value>,
    ports: Vec<Value>,
}

impl EndpointsBuilder {
    /// Adds an address to `addresses` (ready) or `notReadyAddresses`.
    pub fn address(self, ip: &str, ready: bool) -> Self {
        self.push_address(json!({ "ip": ip }), ready)
    }

    /// Adds an address with `hostname`.
    pub fn address_with_hostname(self, ip: &str, hostname: &str, ready: bool) -> Self {
        self.push_address(json!({ "ip": ip, "hostname": hostname }), ready)
    }

    /// Adds a port; `name` may be empty.
    pub fn port(mut self, name: &str, port: u16, protocol: &str) -> Self {
        self.ports.push(port_json(name, port, protocol));
        self
    }

    fn push_address(mut self, address: Value, ready: bool) -> Self {
        if ready {
            self.ready.push(address);
        } else {
            self.not_ready.push(address);
        }
        self
    }

    /// The Endpoints object; `subsets` is omitted when there are no addresses,
    /// as the API server does.
    pub fn build(self) -> Value {
        let mut object = json!({
            "apiVersion": "v1",
            "kind": "Endpoints",
            "metadata": metadata(&self.namespace, &self.name),
        });
        if !self.ready.is_empty() || !self.not_ready.is_empty() {
            let mut subset = Map::new();
            if !self.ready.is_empty() {
                subset.insert("addresses".into(), Value::Array(self.ready));
            }
            if !self.not_ready.is_empty() {
                subset.insert("notReadyAddresses".into(), Value::Array(self.not_ready));
            }
            if !self.ports.is_empty() {
                subset.insert("ports".into(), Value::Array(self.ports));
            }
            object["subsets"] = json!([subset]);
        }
        object
    }
}

/// A running core v1 Pod with IP `ip`.
pub fn pod(namespace: &str, name: &str, ip: &str) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": metadata(namespace, name),
        "spec": {
            "containers": [{ "name": "app", "image": "registry.k8s.io/pause:3.10" }],
        },
        "status": {
            "phase": "Running",
            "podIP": ip,
            "podIPs": [{ "ip": ip }],
        },
    })
}

/// A core v1 ConfigMap holding `data`.
pub fn config_map(namespace: &str, name: &str, data: &[(&str, &str)]) -> Value {
    let data: Map<String, Value> = data
        .iter()
        .map(|(key, value)| ((*key).to_owned(), json!(value)))
        .collect();
    json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": metadata(namespace, name),
        "data": data,
    })
}

/// A core v1 Namespace.
pub fn namespace(name: &str) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": { "name": name },
        "status": { "phase": "Active" },
    })
}
