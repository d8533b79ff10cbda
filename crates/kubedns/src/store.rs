//! The writer that turns source events into record snapshots, and the reader DNS queries use.
//!
//! One task owns the build state and applies events synchronously ([`Writer::apply`]), in the
//! manner of kube-runtime's reflector `Writer`. After a batch it publishes an immutable
//! [`Records`] through an `ArcSwap`, so queries never wait on updates and never see half of one.
//! Snapshots share structure (`Arc`s per namespace and per reverse shard), so a publish copies
//! only what the batch touched.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::SystemTime;

use arc_swap::ArcSwap;
use hickory_proto::rr::Name;
use smallvec::SmallVec;

use crate::model::{ObjectKey, PodInfo, ServiceInfo, SliceInfo};
use crate::records::{self, Namespace, PtrTarget, Records, ServiceEntry};

/// The kinds of object kubedns watches.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Resource {
    /// core/v1 Services.
    Services,
    /// discovery.k8s.io/v1 EndpointSlices.
    EndpointSlices,
    /// core/v1 Endpoints (where the API has no EndpointSlices).
    Endpoints,
    /// core/v1 Pods (verified pod records only).
    Pods,
}

impl Resource {
    /// The resource's plural name, as metrics and logs label it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Services => "services",
            Self::EndpointSlices => "endpointslices",
            Self::Endpoints => "endpoints",
            Self::Pods => "pods",
        }
    }
}

/// A stripped object of any watched kind.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Object {
    /// A Service.
    Service(Arc<ServiceInfo>),
    /// An EndpointSlice, or an Endpoints object in slice shape.
    Slice(Arc<SliceInfo>),
    /// A Pod.
    Pod(Arc<PodInfo>),
}

/// What a source tells the writer, following kube-runtime's `watcher::Event`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SourceEvent {
    /// A (re)list of `Resource` starts: buffer what follows.
    Init(Resource),
    /// An object of the list in progress.
    InitApply(Resource, Object),
    /// The list is complete: it replaces everything known of that resource.
    InitDone(Resource),
    /// An object was added or changed; the time is when the change happened, if known.
    Apply(Resource, Object, Option<SystemTime>),
    /// An object was deleted.
    Delete(Resource, ObjectKey, Option<SystemTime>),
}

/// The readers' side: the current snapshot.
#[derive(Clone, Debug)]
pub struct Store(Arc<ArcSwap<Records>>);

impl Store {
    /// A store holding `records`.
    pub fn new(records: Records) -> Self {
        Self(Arc::new(ArcSwap::from_pointee(records)))
    }

    /// The current snapshot. Cheap; hold it for one query, not longer.
    pub fn load(&self) -> arc_swap::Guard<Arc<Records>> {
        self.0.load()
    }

    /// The current snapshot as an owned `Arc`.
    pub fn snapshot(&self) -> Arc<Records> {
        self.0.load_full()
    }

    fn publish(&self, records: Records) {
        self.0.store(Arc::new(records));
    }
}

/// How many changed names one publish lists before it reports the whole zone as changed.
pub const MAX_CHANGED_NAMES: usize = 64;

/// What one publish changed, for metrics and NOTIFY.
#[derive(Clone, Debug, Default)]
pub struct Published {
    /// Services whose records changed.
    pub services: Vec<ObjectKey>,
    /// Owner names whose answers changed: the Services' names and the reverse names of
    /// addresses whose PTR records changed. Caches in front drop what they hold at and below
    /// these names (NOTIFY). At most [`MAX_CHANGED_NAMES`]; beyond that `names_overflow` is set
    /// and the whole zone counts as changed.
    pub names: Vec<Name>,
    /// More names changed than `names` holds.
    pub names_overflow: bool,
    /// Resources whose first full list has now been seen.
    pub first_synced: Vec<Resource>,
    /// Change times of the applied events, for the programming-latency histogram.
    pub changed_at: Vec<SystemTime>,
}

/// The slices of one Service, in the order they arrived. Nearly every Service has one slice:
/// held inline, a `Vec`'s first growth to four entries cost a megabyte at 10,000 Services.
type ServiceSlices = SmallVec<[(Resource, Arc<SliceInfo>); 1]>;

/// Owns the build state; applies events and publishes snapshots.
#[derive(Debug)]
pub struct Writer {
    records: Records,
    store: Store,
    services: HashMap<ObjectKey, Arc<ServiceInfo>>,
    /// Slices by (resource, slice key): EndpointSlices and Endpoints never mix their keys.
    slices: HashMap<(Resource, ObjectKey), Arc<SliceInfo>>,
    /// The slices of each Service.
    slices_by_service: HashMap<ObjectKey, ServiceSlices>,
    pods: HashMap<ObjectKey, Arc<PodInfo>>,
    init: HashMap<Resource, Vec<Object>>,
    synced: HashSet<Resource>,
    dirty: HashSet<ObjectKey>,
    pending: Published,
    /// Pod records changed since the last publish.
    pods_changed: bool,
    record_count: usize,
}

impl Writer {
    /// A writer starting from `records` (empty), publishing into a new [`Store`].
    pub fn new(records: Records) -> Self {
        let store = Store::new(records.clone());
        Self {
            records,
            store,
            services: HashMap::new(),
            slices: HashMap::new(),
            slices_by_service: HashMap::new(),
            pods: HashMap::new(),
            init: HashMap::new(),
            synced: HashSet::new(),
            dirty: HashSet::new(),
            pending: Published::default(),
            pods_changed: false,
            record_count: 0,
        }
    }

    /// The readers' handle.
    pub fn store(&self) -> Store {
        self.store.clone()
    }

    /// Resources whose first full list has been applied.
    pub fn synced(&self) -> &HashSet<Resource> {
        &self.synced
    }

    /// How many objects of each kind are held.
    pub fn object_counts(&self) -> [(Resource, usize); 4] {
        let slices = |r| self.slices.keys().filter(|(res, _)| *res == r).count();
        [
            (Resource::Services, self.services.len()),
            (Resource::EndpointSlices, slices(Resource::EndpointSlices)),
            (Resource::Endpoints, slices(Resource::Endpoints)),
            (Resource::Pods, self.pods.len()),
        ]
    }

    /// How many address, SRV and PTR records the snapshot holds.
    pub fn record_count(&self) -> usize {
        self.record_count
    }

    /// Applies one event to the build state. Nothing is visible until [`Writer::publish`].
    pub fn apply(&mut self, event: SourceEvent) {
        match event {
            SourceEvent::Init(resource) => {
                self.init.insert(resource, Vec::new());
            }
            SourceEvent::InitApply(resource, object) => {
                self.init.entry(resource).or_default().push(object);
            }
            SourceEvent::InitDone(resource) => {
                let listed = self.init.remove(&resource).unwrap_or_default();
                self.replace_all(resource, listed);
                if self.synced.insert(resource) {
                    self.pending.first_synced.push(resource);
                }
            }
            SourceEvent::Apply(resource, object, at) => {
                self.upsert(resource, object);
                self.pending.changed_at.extend(at);
            }
            SourceEvent::Delete(resource, key, at) => {
                self.remove(resource, &key);
                self.pending.changed_at.extend(at);
            }
        }
    }

    fn replace_all(&mut self, resource: Resource, listed: Vec<Object>) {
        let keep: HashSet<ObjectKey> = listed.iter().map(object_key).cloned().collect();
        let stale: Vec<ObjectKey> = match resource {
            Resource::Services => self.services.keys().cloned().collect(),
            Resource::Pods => self.pods.keys().cloned().collect(),
            Resource::EndpointSlices | Resource::Endpoints => self
                .slices
                .keys()
                .filter(|(r, _)| *r == resource)
                .map(|(_, k)| k.clone())
                .collect(),
        };
        for key in stale.iter().filter(|k| !keep.contains(*k)) {
            self.remove(resource, key);
        }
        for object in listed {
            self.upsert(resource, object);
        }
    }

    fn upsert(&mut self, resource: Resource, object: Object) {
        match object {
            Object::Service(info) => {
                if self.services.get(&info.key) != Some(&info) {
                    self.dirty.insert(info.key.clone());
                    self.services.insert(info.key.clone(), info);
                }
            }
            Object::Slice(slice) => {
                let key = (resource, slice.key.clone());
                if self.slices.get(&key) == Some(&slice) {
                    return;
                }
                if let Some(old) = self.slices.get(&key)
                    && old.service != slice.service
                {
                    let old_service = old.service.clone();
                    self.unlink_slice(&old_service, &key);
                }
                let slices = self
                    .slices_by_service
                    .entry(slice.service.clone())
                    .or_default();
                match slices
                    .iter_mut()
                    .find(|(r, s)| *r == resource && s.key == slice.key)
                {
                    Some((_, held)) => *held = slice.clone(),
                    None => slices.push((resource, slice.clone())),
                }
                self.dirty.insert(slice.service.clone());
                self.slices.insert(key, slice);
            }
            Object::Pod(pod) => {
                self.remove_pod(&pod.key);
                self.add_pod(pod);
            }
        }
    }

    fn remove(&mut self, resource: Resource, key: &ObjectKey) {
        match resource {
            Resource::Services => {
                if self.services.remove(key).is_some() {
                    self.dirty.insert(key.clone());
                }
            }
            Resource::EndpointSlices | Resource::Endpoints => {
                let slice_key = (resource, key.clone());
                if let Some(old) = self.slices.remove(&slice_key) {
                    self.unlink_slice(&old.service, &slice_key);
                }
            }
            Resource::Pods => self.remove_pod(key),
        }
    }

    fn unlink_slice(&mut self, service: &ObjectKey, slice_key: &(Resource, ObjectKey)) {
        if let Some(set) = self.slices_by_service.get_mut(service) {
            let (resource, key) = slice_key;
            set.retain(|(r, s)| !(r == resource && s.key == *key));
            if set.is_empty() {
                self.slices_by_service.remove(service);
            }
        }
        self.dirty.insert(service.clone());
    }

    fn add_pod(&mut self, pod: Arc<PodInfo>) {
        self.note_pod_names(&pod);
        for ip in &pod.ips {
            let shard = self.records.pods.shard_mut(ip);
            let namespaces = shard.entry(*ip).or_default();
            match namespaces.iter_mut().find(|(n, _)| *n == pod.key.namespace) {
                Some((_, count)) => *count += 1,
                None => namespaces.push((pod.key.namespace.clone(), 1)),
            }
        }
        self.pods.insert(pod.key.clone(), pod);
    }

    fn remove_pod(&mut self, key: &ObjectKey) {
        let Some(old) = self.pods.remove(key) else {
            return;
        };
        self.note_pod_names(&old);
        for ip in &old.ips {
            let shard = self.records.pods.shard_mut(ip);
            if let Some(namespaces) = shard.get_mut(ip) {
                if let Some(pos) = namespaces.iter().position(|(n, _)| *n == key.namespace) {
                    namespaces[pos].1 -= 1;
                    if namespaces[pos].1 == 0 {
                        namespaces.swap_remove(pos);
                    }
                }
                if namespaces.is_empty() {
                    shard.remove(ip);
                }
            }
        }
    }

    /// Rebuilds the records of every Service the applied events touched.
    fn rebuild_dirty(&mut self) {
        let mut dirty: Vec<ObjectKey> = self.dirty.drain().collect();
        // An initial list dirties every Service at once; do not keep that capacity for ever.
        self.dirty.shrink_to(64);
        dirty.sort();
        for key in &dirty {
            self.rebuild_service(key);
        }
        self.pending.services.extend(dirty);
    }

    fn rebuild_service(&mut self, key: &ObjectKey) {
        // Take the old records out; its PTR records are derived from the old entry again
        // rather than remembered, which would cost memory per endpoint.
        let old = self
            .records
            .namespaces
            .get(&key.namespace)
            .and_then(|ns| ns.services.get(&key.name))
            .cloned();
        let old_ptrs = old.as_ref().map(records::ptr_targets).unwrap_or_default();
        if let Some(old) = &old {
            for (ip, _) in &old_ptrs {
                self.records.reverse.remove_service(*ip, old);
            }
            self.record_count -= old.record_count();
            if let Some(ns) = self.records.namespaces.get_mut(&key.namespace) {
                let ns = Arc::make_mut(ns);
                ns.services.remove(&key.name);
                if ns.services.is_empty() {
                    self.records.namespaces.remove(&key.namespace);
                }
            }
        }
        self.note_changed(self.records.service_fqdn(key));
        // Put the new ones in.
        let Some(info) = self.services.get(key).cloned() else {
            self.note_ptr_changes(&old_ptrs, &[]);
            return;
        };
        let slices = self
            .slices_by_service
            .get(key)
            .into_iter()
            .flatten()
            .map(|(_, slice)| slice.clone())
            .collect();
        let entry = Arc::new(ServiceEntry { info, slices });
        let new_ptrs = records::ptr_targets(&entry);
        for (ip, target) in &new_ptrs {
            self.records.reverse.insert(*ip, target.clone());
        }
        self.note_ptr_changes(&old_ptrs, &new_ptrs);
        self.record_count += entry.record_count();
        let ns = self
            .records
            .namespaces
            .entry(key.namespace.clone())
            .or_insert_with(|| Arc::new(Namespace::default()));
        Arc::make_mut(ns).services.insert(key.name.clone(), entry);
    }

    /// Notes the reverse names whose PTR answers changed.
    fn note_ptr_changes(&mut self, old: &[(IpAddr, PtrTarget)], new: &[(IpAddr, PtrTarget)]) {
        if self.pending.names_overflow {
            return;
        }
        let zone = self.records.zone();
        let named = |ptrs: &[(IpAddr, PtrTarget)]| -> HashSet<(IpAddr, Name)> {
            ptrs.iter().map(|(ip, t)| (*ip, t.name(zone))).collect()
        };
        let (old_set, new_set) = (named(old), named(new));
        let changed = old_set.symmetric_difference(&new_set).map(|(ip, _)| *ip);
        let changed: BTreeSet<IpAddr> = changed.collect();
        for ip in changed {
            self.note_changed(Name::from(ip));
        }
    }

    /// Notes `<dashed-ip>.<ns>.pod.<zone>` for each of a Pod's addresses.
    fn note_pod_names(&mut self, pod: &PodInfo) {
        self.pods_changed = true;
        for ip in &pod.ips {
            let dashed = match ip {
                IpAddr::V4(v4) => v4.to_string().replace('.', "-"),
                IpAddr::V6(v6) => v6.to_string().replace(':', "-"),
            };
            let rel = Name::from_labels([dashed.as_bytes(), pod.key.namespace.as_bytes(), b"pod"]);
            if let Ok(name) = rel.and_then(|r| r.append_name(self.records.zone())) {
                self.note_changed(name);
            }
        }
    }

    fn note_changed(&mut self, name: Name) {
        let names = &mut self.pending.names;
        if self.pending.names_overflow || names.contains(&name) {
            return;
        }
        if names.len() == MAX_CHANGED_NAMES {
            self.pending.names_overflow = true;
            names.clear();
        } else {
            names.push(name);
        }
    }

    /// Makes everything applied so far visible to queries, and says what changed.
    pub fn publish(&mut self) -> Published {
        self.rebuild_dirty();
        let published = std::mem::take(&mut self.pending);
        let pods_changed = std::mem::take(&mut self.pods_changed);
        if pods_changed || !published.services.is_empty() || !published.first_synced.is_empty() {
            self.records.serial = SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map(|d| u32::try_from(d.as_secs()).unwrap_or(u32::MAX))
                .unwrap_or(0)
                .max(self.records.serial.saturating_add(1));
            self.store.publish(self.records.clone());
        }
        published
    }
}

fn object_key(object: &Object) -> &ObjectKey {
    match object {
        Object::Service(s) => &s.key,
        Object::Slice(s) => &s.key,
        Object::Pod(p) => &p.key,
    }
}
