//! Where state comes from: the Kubernetes API ([`kube`]) or a cluster-state file ([`file`]).
//!
//! Both turn Kubernetes objects into the same stream of [`SourceEvent`]s, so the record writer
//! does not know which one feeds it.

pub mod file;
pub mod kube;

use k8s_openapi::api::core::v1::{Endpoints, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;

use crate::model::{self, Problem};
use crate::store::{Object, Resource};

/// Reports the problems of one projection: a warning each and the malformed-object counter.
pub(crate) fn report(
    problems: Vec<Problem>,
    metrics: &crate::metrics::Metrics,
    resource: Resource,
) {
    for p in problems {
        tracing::warn!(object = %p.object, problem = %p.what, "skipping malformed field");
        metrics.malformed(resource);
    }
}

/// Projects a Service into a source object.
pub(crate) fn service_object(svc: &Service, problems: &mut Vec<Problem>) -> Option<Object> {
    model::service_info(svc, problems).map(|s| Object::Service(s.into()))
}

/// Projects an EndpointSlice into a source object.
pub(crate) fn slice_object(slice: &EndpointSlice, problems: &mut Vec<Problem>) -> Option<Object> {
    model::slice_info(slice, problems).map(|s| Object::Slice(s.into()))
}

/// Projects a core/v1 Endpoints object into a source object.
pub(crate) fn endpoints_object(eps: &Endpoints, problems: &mut Vec<Problem>) -> Option<Object> {
    model::endpoints_info(eps, problems).map(|s| Object::Slice(s.into()))
}

/// Projects a Pod into a source object.
pub(crate) fn pod_object(pod: &Pod, problems: &mut Vec<Problem>) -> Option<Object> {
    model::pod_info(pod, problems).map(|p| Object::Pod(p.into()))
}
