//! The Kubernetes API as a source: kube-runtime watchers on Services, EndpointSlices (or core/v1
//! Endpoints where the API has none) and, for verified pod records, Pods.
//!
//! Every watcher runs with kube-runtime's default backoff, so a lost API server, a closed watch,
//! `410 Gone` or a restart ends in a relist (`Init`..`InitDone`) and the writer replaces what it
//! held with exactly the API's state, while the last good records keep serving.

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::{Endpoints, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::Api;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use kube::{Client, Resource as KubeResource, ResourceExt};
use serde::de::DeserializeOwned;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{endpoints_object, pod_object, report, service_object, slice_object};
use crate::metrics::Metrics;
use crate::model::{ObjectKey, Problem};
use crate::store::{Object, Resource, SourceEvent};

/// Which endpoint objects to watch (`--endpoints-source`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum EndpointsSource {
    /// EndpointSlices when the API serves discovery.k8s.io/v1, core/v1 Endpoints otherwise.
    #[default]
    Auto,
    /// discovery.k8s.io/v1 EndpointSlices.
    Endpointslices,
    /// core/v1 Endpoints (what kube-dns watched).
    Endpoints,
}

/// How to reach the API server.
#[derive(Clone, Debug, Default)]
pub struct ApiAccess {
    /// `--kube-master-url`.
    pub master_url: Option<String>,
    /// `--kubecfg-file`.
    pub kubeconfig: Option<PathBuf>,
}

/// Why the API client could not be built.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The master URL does not parse.
    #[error("invalid --kube-master-url {url:?}")]
    MasterUrl {
        /// The URL given.
        url: String,
    },
    /// The kubeconfig could not be read.
    #[error("cannot use kubeconfig {path}")]
    Kubeconfig {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// Neither in-cluster config nor a default kubeconfig was found.
    #[error("cannot find API server credentials (in-cluster or ~/.kube/config)")]
    Infer(#[source] kube::config::InferConfigError),
    /// The client could not be built.
    #[error("cannot build the API client")]
    Client(#[source] kube::Error),
}

/// Builds the API client: `--kube-master-url`, else `--kubecfg-file`, else in-cluster config.
pub async fn client(access: &ApiAccess) -> Result<Client, Error> {
    let config = if let Some(url) = &access.master_url {
        // kube-dns expanded environment variables in the URL; `$VAR` forms are rare enough
        // that a plain URL is required here.
        let uri = url
            .parse()
            .map_err(|_| Error::MasterUrl { url: url.clone() })?;
        let mut config = kube::Config::new(uri);
        if let Some(path) = &access.kubeconfig {
            config = kubeconfig(path).await?;
            config.cluster_url = url
                .parse()
                .map_err(|_| Error::MasterUrl { url: url.clone() })?;
        }
        config
    } else if let Some(path) = &access.kubeconfig {
        kubeconfig(path).await?
    } else {
        kube::Config::infer().await.map_err(Error::Infer)?
    };
    Client::try_from(config).map_err(Error::Client)
}

async fn kubeconfig(path: &PathBuf) -> Result<kube::Config, Error> {
    let wrap = |e: Box<dyn std::error::Error + Send + Sync>| Error::Kubeconfig {
        path: path.clone(),
        source: e,
    };
    let file = kube::config::Kubeconfig::read_from(path).map_err(|e| wrap(Box::new(e)))?;
    kube::Config::from_custom_kubeconfig(file, &Default::default())
        .await
        .map_err(|e| wrap(Box::new(e)))
}

/// Decides between EndpointSlices and Endpoints, asking the API in `Auto` mode (retrying with
/// backoff while the API server cannot be reached).
pub async fn endpoints_resource(
    client: &Client,
    wanted: EndpointsSource,
    metrics: &Metrics,
    shutdown: &CancellationToken,
) -> Option<Resource> {
    match wanted {
        EndpointsSource::Endpointslices => return Some(Resource::EndpointSlices),
        EndpointsSource::Endpoints => return Some(Resource::Endpoints),
        EndpointsSource::Auto => {}
    }
    let mut delay = Duration::from_millis(200);
    loop {
        match client.list_api_group_resources("discovery.k8s.io/v1").await {
            Ok(list) => {
                let has = list.resources.iter().any(|r| r.name == "endpointslices");
                return Some(if has {
                    Resource::EndpointSlices
                } else {
                    Resource::Endpoints
                });
            }
            Err(kube::Error::Api(status)) if status.code == 404 => {
                tracing::info!("the API has no discovery.k8s.io/v1; watching core/v1 Endpoints");
                return Some(Resource::Endpoints);
            }
            Err(e) => {
                metrics.source_error(Resource::EndpointSlices);
                tracing::warn!(error = %e, "API discovery failed; retrying");
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => return None,
            _ = tokio::time::sleep(delay) => {}
        }
        delay = (delay * 2).min(Duration::from_secs(10));
    }
}

/// Runs the watchers for `resources`, sending their events until shutdown.
pub async fn run(
    client: Client,
    resources: Vec<Resource>,
    events: mpsc::Sender<SourceEvent>,
    metrics: Metrics,
    shutdown: CancellationToken,
) {
    let mut streams = Vec::new();
    for resource in resources {
        let stream = match resource {
            Resource::Services => {
                watch::<Service>(&client, resource, &metrics, service_object).boxed()
            }
            Resource::EndpointSlices => {
                watch::<EndpointSlice>(&client, resource, &metrics, slice_object).boxed()
            }
            Resource::Endpoints => {
                watch::<Endpoints>(&client, resource, &metrics, endpoints_object).boxed()
            }
            Resource::Pods => watch::<Pod>(&client, resource, &metrics, pod_object).boxed(),
        };
        streams.push(stream);
    }
    let mut merged = futures::stream::select_all(streams);
    loop {
        let next = tokio::select! {
            _ = shutdown.cancelled() => return,
            next = merged.next() => next,
        };
        let Some(event) = next else { return };
        if events.send(event).await.is_err() {
            return;
        }
    }
}

type Project<K> = fn(&K, &mut Vec<Problem>) -> Option<Object>;

/// One watcher, its events projected into source events.
fn watch<K>(
    client: &Client,
    resource: Resource,
    metrics: &Metrics,
    project: Project<K>,
) -> impl Stream<Item = SourceEvent> + Send + 'static
where
    K: KubeResource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug + Send + 'static,
{
    let api: Api<K> = Api::all(client.clone());
    let metrics = metrics.clone();
    let mut lists = 0_u64;
    watcher::watcher(api, watcher::Config::default())
        .default_backoff()
        .filter_map(move |item| {
            let out = match item {
                Ok(event) => translate(event, resource, project, &metrics, &mut lists),
                Err(e) => {
                    metrics.source_error(resource);
                    tracing::warn!(error = %e, resource = resource.as_str(), "watch failed; retrying with backoff");
                    None
                }
            };
            std::future::ready(out)
        })
}

fn translate<K>(
    event: Event<K>,
    resource: Resource,
    project: Project<K>,
    metrics: &Metrics,
    lists: &mut u64,
) -> Option<SourceEvent>
where
    K: KubeResource + ResourceExt,
{
    let mut problems = Vec::new();
    let out = match event {
        Event::Init => {
            *lists += 1;
            if *lists > 1 {
                metrics.watch_restart(resource);
                tracing::info!(resource = resource.as_str(), "relisting");
            }
            metrics.watch_event(resource, "relist");
            Some(SourceEvent::Init(resource))
        }
        Event::InitApply(obj) => {
            project(&obj, &mut problems).map(|o| SourceEvent::InitApply(resource, o))
        }
        Event::InitDone => {
            tracing::info!(resource = resource.as_str(), "listed");
            Some(SourceEvent::InitDone(resource))
        }
        Event::Apply(obj) => {
            metrics.watch_event(resource, "apply");
            let at = change_time(&obj);
            project(&obj, &mut problems).map(|o| SourceEvent::Apply(resource, o, Some(at)))
        }
        Event::Delete(obj) => {
            metrics.watch_event(resource, "delete");
            let key = ObjectKey::new(
                obj.namespace().as_deref().unwrap_or("default"),
                &obj.name_any(),
            );
            Some(SourceEvent::Delete(resource, key, Some(change_time(&obj))))
        }
    };
    report(problems, metrics, resource);
    out
}

/// When the change behind an event happened: the EndpointSlice controller's trigger-time
/// annotation (what kube-proxy measures network programming latency from), else now.
fn change_time<K: ResourceExt>(obj: &K) -> SystemTime {
    obj.annotations()
        .get("endpoints.kubernetes.io/last-change-trigger-time")
        .and_then(|t| t.parse::<k8s_openapi::jiff::Timestamp>().ok())
        .map(SystemTime::from)
        .unwrap_or_else(SystemTime::now)
}

/// Watches one ConfigMap (`--config-map`, the legacy alternative to `--config-dir`) and calls
/// `apply` with each valid configuration it holds; a deleted ConfigMap means the defaults. An
/// invalid one is logged and counted, and the previous configuration stays.
pub async fn watch_config_map(
    client: Client,
    namespace: String,
    name: String,
    metrics: Metrics,
    apply: impl Fn(kdns_config::DnsConfig) + Send + 'static,
    shutdown: CancellationToken,
) {
    use k8s_openapi::api::core::v1::ConfigMap;
    let api: Api<ConfigMap> = Api::namespaced(client, &namespace);
    let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
    let mut stream = watcher::watcher(api, config).default_backoff().boxed();
    let mut seen_in_list = false;
    loop {
        let next = tokio::select! {
            _ = shutdown.cancelled() => return,
            next = stream.next() => next,
        };
        let Some(item) = next else { return };
        let data = match item {
            Ok(Event::Init) => {
                seen_in_list = false;
                continue;
            }
            Ok(Event::InitApply(cm) | Event::Apply(cm)) => {
                seen_in_list = true;
                cm.data.unwrap_or_default()
            }
            Ok(Event::InitDone) if !seen_in_list => Default::default(),
            Ok(Event::InitDone) => continue,
            Ok(Event::Delete(_)) => Default::default(),
            Err(e) => {
                metrics.source_error(Resource::Services);
                tracing::warn!(error = %e, configmap = %name, "ConfigMap watch failed; retrying");
                continue;
            }
        };
        match kdns_config::DnsConfig::from_files(&data) {
            Ok(config) => apply(config),
            Err(e) => {
                metrics.config_error();
                tracing::warn!(error = %e, configmap = %name, "invalid configuration; keeping the previous one");
            }
        }
    }
}
