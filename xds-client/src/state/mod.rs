//! The ADS protocol as a state machine: subscriptions, versions and nonces,
//! the resource cache, does-not-exist timers, ACK and NACK.
//!
//! No I/O happens here. The transport task feeds in what happens (a watch
//! added or dropped, a stream connected or lost, a response, the time) and
//! sends the requests this returns. Watchers are told of changes through
//! `tokio::sync::watch` channels, before the ACK for the response that
//! carried them goes out.
//!
//! Semantics: Envoy's "xDS REST and gRPC protocol" for both variants; gRFC
//! A46 (a NACK names each bad resource, good siblings still apply), A53
//! (`ignore_resource_deletion`), A57 (timers run only while a request is out
//! on a connected stream; the cache outlives the stream).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

use crate::pb::envoy::config::core::v3::Node;
use crate::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, DiscoveryRequest, DiscoveryResponse,
};
use crate::pb::google::protobuf::Any;
use crate::pb::google::rpc::Status;
use crate::resource::{Erased, ResourceError, ResourceType, canonical_name};

/// How long a subscribed resource may go unanswered on a connected stream
/// before it is taken not to exist (gRFC A27, A57).
pub(crate) const DOES_NOT_EXIST_TIMEOUT: Duration = Duration::from_secs(15);

/// gRPC's code for a NACK's `error_detail`.
const INVALID_ARGUMENT: i32 = 3;

/// What watchers of one resource see.
#[derive(Clone, Debug)]
pub(crate) struct Snapshot {
    pub(crate) resource: Option<Erased>,
    pub(crate) version: String,
    pub(crate) status: Presence,
    pub(crate) error: Option<String>,
}

/// Whether a resource is known to exist.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Presence {
    /// Asked for, no answer yet.
    Requested,
    /// Received (and kept, even if a later version was refused).
    Exists,
    /// The control plane said it does not exist, or did not send it in time.
    DoesNotExist,
}

/// Every resource of a wildcard-subscribed type, by name.
pub(crate) type AllResources = Arc<BTreeMap<String, Erased>>;

/// One resource's line in a configuration dump (as CSDS reports it).
#[derive(Clone, Debug)]
pub struct DumpEntry {
    /// The type URL.
    pub type_url: String,
    /// The resource name.
    pub name: String,
    /// Its presence.
    pub presence: Presence,
    /// The version of the copy in use.
    pub version: String,
    /// The copy in use, as received.
    pub raw: Option<Any>,
    /// Why the latest version was refused, if it was.
    pub error: Option<String>,
}

/// A request for the transport to send.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Request {
    Sotw(DiscoveryRequest),
    Delta(DeltaDiscoveryRequest),
}

struct Entry {
    sender: watch::Sender<Snapshot>,
    /// Live `Watch` handles; the resource is subscribed while above zero.
    watchers: usize,
    raw: Option<Any>,
    /// When the resource is taken not to exist, if still unanswered.
    deadline: Option<Instant>,
    /// Why its latest version was refused: what its watchers hear again
    /// once a stream works after an outage has told them of the stream.
    refused: Option<String>,
}

impl Entry {
    fn new() -> Self {
        let (sender, _) = watch::channel(Snapshot {
            resource: None,
            version: String::new(),
            status: Presence::Requested,
            error: None,
        });
        Entry {
            sender,
            watchers: 0,
            raw: None,
            deadline: None,
            refused: None,
        }
    }

    fn snapshot(&self) -> Snapshot {
        self.sender.borrow().clone()
    }

    fn has_resource(&self) -> bool {
        self.sender.borrow().resource.is_some()
    }
}

struct TypeState {
    kind: ResourceType,
    entries: BTreeMap<String, Entry>,
    /// Live wildcard watchers, and what they see.
    wildcard: Option<(usize, watch::Sender<AllResources>)>,
    /// SotW: the last accepted `version_info`, echoed in every request.
    version_info: String,
    /// SotW: the last response's nonce.
    nonce: String,
    /// SotW: whether this stream has sent a request of this type yet (an
    /// empty name list means wildcard only in a type's first request).
    sent_on_stream: bool,
    /// Subscription changes not yet sent: a burst of watches goes out as one
    /// request per type (for delta, these names; for SotW, the full list).
    pending: Pending,
    /// The name of each cached resource, by a hash of its bytes: a SotW
    /// re-send of an unchanged resource is recognised without decoding it.
    /// A hit is confirmed against the cached bytes; a stale one is ignored.
    names_by_bytes: HashMap<u64, String>,
    /// Whether the cached versions came from the server in use: after a
    /// switch between control planes (gRFC A71 fallback) they name another
    /// server's state until this one answers for the type.
    versions_from_server: bool,
}

#[derive(Default)]
struct Pending {
    changed: bool,
    subscribe: BTreeSet<String>,
    unsubscribe: BTreeSet<String>,
}

impl Pending {
    fn add(&mut self, name: &str) {
        self.changed = true;
        if !self.unsubscribe.remove(name) {
            self.subscribe.insert(name.to_owned());
        }
    }

    fn remove(&mut self, name: &str) {
        self.changed = true;
        if !self.subscribe.remove(name) {
            self.unsubscribe.insert(name.to_owned());
        }
    }
}

impl TypeState {
    /// The name of the cached resource `any` is an unchanged copy of, if any
    /// (accepted, with no refusal since), found without decoding it.
    fn unchanged(&self, any: &Any) -> Option<String> {
        let name = self.names_by_bytes.get(&bytes_hash(any))?;
        let entry = self.entries.get(name)?;
        let same = entry.raw.as_ref() == Some(any) && entry.sender.borrow().error.is_none();
        same.then(|| name.clone())
    }

    fn subscribed_names(&self) -> Vec<String> {
        self.entries
            .iter()
            .filter(|(_, e)| e.watchers > 0)
            .map(|(name, _)| name.clone())
            .collect()
    }

    fn is_wildcard(&self) -> bool {
        self.wildcard.is_some()
    }

    /// Whether anything of this type is asked for.
    fn is_subscribed(&self) -> bool {
        self.is_wildcard() || self.entries.values().any(|e| e.watchers > 0)
    }

    fn publish_all(&self) {
        if let Some((_, sender)) = &self.wildcard {
            let all: BTreeMap<String, Erased> = self
                .entries
                .iter()
                .filter_map(|(name, e)| {
                    e.sender
                        .borrow()
                        .resource
                        .clone()
                        .map(|r| (name.clone(), r))
                })
                .collect();
            sender.send_replace(Arc::new(all));
        }
    }
}

/// A watch could not be added.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WatchError {
    /// Another Rust type already decodes this type URL in this client.
    #[error("type URL {type_url} is already watched as {existing}, not {requested}")]
    TypeConflict {
        /// The type URL.
        type_url: String,
        /// The Rust type registered first.
        existing: &'static str,
        /// The Rust type asked for now.
        requested: &'static str,
    },
    /// Wildcard subscriptions exist only for LDS and CDS.
    #[error("type URL {0} has no wildcard subscription (only Listener and Cluster do)")]
    NoWildcard(String),
    /// An `xdstp://` name of an authority the bootstrap does not list
    /// (gRFC A47).
    #[error("resource {0:?}: its authority is not in the bootstrap's authorities")]
    UnknownAuthority(String),
    /// The client has stopped.
    #[error("the xDS client has stopped")]
    Stopped,
}

/// The protocol state of one ADS stream's worth of subscriptions.
pub(crate) struct AdsState {
    node: Node,
    delta: bool,
    ignore_resource_deletion: bool,
    types: BTreeMap<&'static str, TypeState>,
    /// Whether a stream is up, and whether it has carried the node yet.
    connected: bool,
    node_sent: bool,
    /// Whether the stream up has carried a response yet: the first one
    /// shows the control plane reachable again.
    answered_on_stream: bool,
}

impl AdsState {
    pub(crate) fn new(node: Node, delta: bool, ignore_resource_deletion: bool) -> Self {
        AdsState {
            node,
            delta,
            ignore_resource_deletion,
            types: BTreeMap::new(),
            connected: false,
            node_sent: false,
            answered_on_stream: false,
        }
    }

    /// The protocol variant and deletion rule of the server the next stream
    /// goes to (each control plane of a fallback list has its own).
    pub(crate) fn use_server(&mut self, delta: bool, ignore_resource_deletion: bool) {
        self.delta = delta;
        self.ignore_resource_deletion = ignore_resource_deletion;
    }

    /// The next stream goes to another control plane: the versions held name
    /// the previous one's state, so none is offered to the new one (a server
    /// that happened to use the same version string would send nothing).
    pub(crate) fn forget_versions(&mut self) {
        for state in self.types.values_mut() {
            state.version_info.clear();
            state.versions_from_server = false;
        }
    }

    /// Whether some watched resource has no answer yet: a resource received
    /// or known not to exist is cached (gRFC A71's condition for fallback).
    pub(crate) fn has_uncached_watch(&self) -> bool {
        self.types.values().any(|state| {
            state
                .entries
                .values()
                .any(|e| e.watchers > 0 && e.sender.borrow().status == Presence::Requested)
        })
    }

    fn type_state(&mut self, kind: ResourceType) -> Result<&mut TypeState, WatchError> {
        let state = self
            .types
            .entry(kind.type_url)
            .or_insert_with(|| TypeState {
                kind,
                entries: BTreeMap::new(),
                wildcard: None,
                version_info: String::new(),
                nonce: String::new(),
                sent_on_stream: false,
                pending: Pending::default(),
                names_by_bytes: HashMap::new(),
                versions_from_server: true,
            });
        if state.kind.type_id != kind.type_id {
            return Err(WatchError::TypeConflict {
                type_url: kind.type_url.to_owned(),
                existing: state.kind.type_name,
                requested: kind.type_name,
            });
        }
        Ok(state)
    }

    /// A new watcher of `name`. The subscription goes out with the next
    /// [`AdsState::flush`].
    pub(crate) fn watch(
        &mut self,
        kind: ResourceType,
        name: &str,
    ) -> Result<watch::Receiver<Snapshot>, WatchError> {
        let state = self.type_state(kind)?;
        let entry = state
            .entries
            .entry(name.to_owned())
            .or_insert_with(Entry::new);
        entry.watchers += 1;
        let receiver = entry.sender.subscribe();
        if entry.watchers == 1 {
            state.pending.add(name);
        }
        Ok(receiver)
    }

    /// A watcher of `name` went away.
    pub(crate) fn unwatch(&mut self, type_url: &str, name: &str) {
        let Some(state) = self.types.get_mut(type_url) else {
            return;
        };
        let Some(entry) = state.entries.get_mut(name) else {
            return;
        };
        entry.watchers = entry.watchers.saturating_sub(1);
        if entry.watchers > 0 {
            return;
        }
        entry.deadline = None;
        if !state.is_wildcard() {
            state.entries.remove(name);
        }
        state.pending.remove(name);
    }

    /// A new wildcard watcher of a type.
    pub(crate) fn watch_all(
        &mut self,
        kind: ResourceType,
    ) -> Result<watch::Receiver<AllResources>, WatchError> {
        if !kind.all_in_each_response {
            return Err(WatchError::NoWildcard(kind.type_url.to_owned()));
        }
        let state = self.type_state(kind)?;
        match &mut state.wildcard {
            Some((count, sender)) => {
                *count += 1;
                Ok(sender.subscribe())
            }
            None => {
                let (sender, receiver) = watch::channel(AllResources::default());
                state.wildcard = Some((1, sender));
                state.publish_all();
                state.pending.add("*");
                Ok(receiver)
            }
        }
    }

    /// A wildcard watcher went away.
    pub(crate) fn unwatch_all(&mut self, type_url: &str) {
        let Some(state) = self.types.get_mut(type_url) else {
            return;
        };
        let Some((count, _)) = &mut state.wildcard else {
            return;
        };
        *count -= 1;
        if *count > 0 {
            return;
        }
        state.wildcard = None;
        state.entries.retain(|_, e| e.watchers > 0);
        state.pending.remove("*");
    }

    /// The requests for every subscription change since the last flush, one
    /// per type; none while disconnected (the next stream subscribes afresh).
    pub(crate) fn flush(&mut self, now: Instant) -> Vec<Request> {
        let changed: Vec<&'static str> = self
            .types
            .iter()
            .filter(|(_, s)| s.pending.changed)
            .map(|(url, _)| *url)
            .collect();
        let mut requests = Vec::new();
        for type_url in changed {
            let Some(state) = self.types.get_mut(type_url) else {
                continue;
            };
            let pending = std::mem::take(&mut state.pending);
            if !self.connected {
                continue;
            }
            let request = if self.delta {
                if pending.subscribe.is_empty() && pending.unsubscribe.is_empty() {
                    continue;
                }
                let node = self.node_once();
                Request::Delta(DeltaDiscoveryRequest {
                    node,
                    type_url: type_url.to_owned(),
                    resource_names_subscribe: pending.subscribe.into_iter().collect(),
                    resource_names_unsubscribe: pending.unsubscribe.into_iter().collect(),
                    ..Default::default()
                })
            } else {
                match self.sotw_request(type_url) {
                    Some(request) => request,
                    None => continue,
                }
            };
            self.arm_timers(type_url, now);
            requests.push(request);
        }
        requests
    }

    fn node_once(&mut self) -> Option<Node> {
        if self.node_sent {
            None
        } else {
            self.node_sent = true;
            Some(self.node.clone())
        }
    }

    /// The state-of-the-world request for a type, with the names subscribed now.
    fn sotw_request(&mut self, type_url: &'static str) -> Option<Request> {
        let node = self.node_once();
        let state = self.types.get_mut(type_url)?;
        // The full list goes out: nothing is pending after it.
        state.pending = Pending::default();
        let mut resource_names = state.subscribed_names();
        if state.is_wildcard() {
            resource_names.push("*".to_owned());
        }
        state.sent_on_stream = true;
        Some(Request::Sotw(DiscoveryRequest {
            node,
            version_info: state.version_info.clone(),
            resource_names,
            type_url: type_url.to_owned(),
            response_nonce: state.nonce.clone(),
            ..Default::default()
        }))
    }

    /// Starts the does-not-exist timer of every subscribed resource of this
    /// type that has no answer and no running timer.
    fn arm_timers(&mut self, type_url: &str, now: Instant) {
        if let Some(state) = self.types.get_mut(type_url) {
            for entry in state.entries.values_mut() {
                let waiting = entry.watchers > 0
                    && entry.sender.borrow().status == Presence::Requested
                    && entry.deadline.is_none();
                if waiting {
                    entry.deadline = Some(now + DOES_NOT_EXIST_TIMEOUT);
                }
            }
        }
    }

    /// A stream came up: the requests that (re)subscribe everything.
    pub(crate) fn on_connected(&mut self, now: Instant) -> Vec<Request> {
        self.connected = true;
        self.answered_on_stream = false;
        // Everything is subscribed afresh by these requests.
        let requests = self.fresh_requests(self.delta, true);
        self.node_sent = !requests.is_empty();
        for state in self.types.values_mut() {
            state.pending = Pending::default();
            // A new stream starts with no nonce; the version tells the
            // server what this client already has.
            state.nonce.clear();
            state.sent_on_stream = state.is_subscribed();
        }
        let type_urls: Vec<&'static str> = self.types.keys().copied().collect();
        for type_url in type_urls {
            self.arm_timers(type_url, now);
        }
        requests
    }

    /// The first requests of a new stream in the variant `delta`, the node
    /// in the first: every subscription, and, with `versions`, what is
    /// cached (only versions that came from the server in use). Nothing
    /// changes here, so a probe of another control plane can send them,
    /// without versions, while this stream runs.
    pub(crate) fn fresh_requests(&self, delta: bool, versions: bool) -> Vec<Request> {
        let mut node = Some(self.node.clone());
        let mut requests = Vec::new();
        for (type_url, state) in self.types.iter().filter(|(_, s)| s.is_subscribed()) {
            let mut names = state.subscribed_names();
            if state.is_wildcard() {
                names.push("*".to_owned());
            }
            requests.push(if delta {
                let initial_resource_versions = state
                    .entries
                    .iter()
                    .filter(|(_, e)| versions && state.versions_from_server && e.has_resource())
                    .map(|(name, e)| (name.clone(), e.sender.borrow().version.clone()))
                    .collect();
                Request::Delta(DeltaDiscoveryRequest {
                    node: node.take(),
                    type_url: (*type_url).to_owned(),
                    resource_names_subscribe: names,
                    initial_resource_versions,
                    ..Default::default()
                })
            } else {
                Request::Sotw(DiscoveryRequest {
                    node: node.take(),
                    version_info: if versions {
                        state.version_info.clone()
                    } else {
                        String::new()
                    },
                    resource_names: names,
                    type_url: (*type_url).to_owned(),
                    ..Default::default()
                })
            });
        }
        requests
    }

    /// The stream failed: timers stop (they restart with the next request on
    /// a new stream), the cache stays, and watchers hear of the error unless
    /// it is `None` (a fallback server is tried first: gRFC A71 reports a
    /// connectivity failure only once every server has failed).
    pub(crate) fn on_disconnected(&mut self, error: Option<&str>) {
        self.connected = false;
        for state in self.types.values_mut() {
            for entry in state.entries.values_mut() {
                entry.deadline = None;
                if let Some(error) = error {
                    entry
                        .sender
                        .send_modify(|s| s.error = Some(format!("xDS stream: {error}")));
                }
            }
        }
    }

    /// The control plane answered: the stream opened (its response
    /// headers came), or a response came. The first time on a stream, the
    /// failure watchers were told of is over, and each hears its own state
    /// again (no error, or why its latest version was refused). Without
    /// this, a resource the new stream does not resend (delta, same
    /// version; a SotW type with no change) would report the outage for ever.
    pub(crate) fn on_answer(&mut self) {
        if std::mem::replace(&mut self.answered_on_stream, true) {
            return;
        }
        for state in self.types.values_mut() {
            for entry in state.entries.values_mut() {
                let refused = &entry.refused;
                entry.sender.send_if_modified(|s| {
                    let stale = s.error != *refused;
                    if stale {
                        s.error.clone_from(refused);
                    }
                    stale
                });
            }
        }
    }

    /// The earliest running does-not-exist deadline.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.types
            .values()
            .flat_map(|s| s.entries.values())
            .filter_map(|e| e.deadline)
            .min()
    }

    /// Marks every resource whose deadline has passed as not existing.
    pub(crate) fn on_time(&mut self, now: Instant) {
        for state in self.types.values_mut() {
            for (name, entry) in &mut state.entries {
                if entry.deadline.is_some_and(|d| d <= now) {
                    entry.deadline = None;
                    tracing::warn!(type_url = state.kind.type_url, %name, "xDS resource does not exist (no answer in time)");
                    entry
                        .sender
                        .send_modify(|s| s.status = Presence::DoesNotExist);
                }
            }
        }
    }

    /// A state-of-the-world response: apply it, and return the ACK or NACK.
    pub(crate) fn on_sotw_response(&mut self, response: DiscoveryResponse) -> Vec<Request> {
        self.on_answer();
        let ignore_deletion = self.ignore_resource_deletion;
        let Some(state) = self.types.get_mut(response.type_url.as_str()) else {
            tracing::warn!(type_url = %response.type_url, "xDS response for a type never subscribed; ignored");
            return Vec::new();
        };
        state.nonce = response.nonce.clone();
        state.versions_from_server = true;
        let mut errors = Vec::new();
        let mut seen = BTreeSet::new();
        // Taken by value: each resource's bytes move into the cache rather
        // than being copied while the whole response is still held.
        for any in response.resources {
            // Twice in one response: decoded, so the error names it.
            if let Some(name) = state.unchanged(&any)
                && seen.insert(name.clone())
            {
                if let Some(entry) = state.entries.get_mut(&name) {
                    entry.deadline = None;
                    entry.sender.send_if_modified(|s| {
                        s.version = response.version_info.clone();
                        false
                    });
                }
                continue;
            }
            let outcome = decode_any(&state.kind, &any);
            apply(
                state,
                outcome,
                any,
                &response.version_info,
                &mut seen,
                &mut errors,
            );
        }
        // A resource that could not even be named might be any of ours:
        // such a response deletes nothing rather than the wrong thing.
        let all_named = errors.iter().all(|e| e.name.is_some());
        if state.kind.all_in_each_response && all_named {
            // LDS and CDS responses carry every subscribed resource: one
            // missing has been deleted (or, never sent, does not exist).
            let missing: Vec<String> = state
                .entries
                .iter()
                .filter(|(name, e)| !seen.contains(*name) && (e.watchers > 0 || e.has_resource()))
                .map(|(name, _)| name.clone())
                .collect();
            for name in missing {
                remove(state, &name, ignore_deletion);
            }
        }
        state.publish_all();
        if errors.is_empty() {
            state.version_info = response.version_info.clone();
        }
        let error_detail = nack_detail(&errors);
        let type_url = state.kind.type_url;
        match self.sotw_request(type_url) {
            Some(Request::Sotw(mut request)) => {
                request.error_detail = error_detail;
                vec![Request::Sotw(request)]
            }
            _ => Vec::new(),
        }
    }

    /// A delta response: apply it, and return the ACK or NACK.
    pub(crate) fn on_delta_response(&mut self, response: DeltaDiscoveryResponse) -> Vec<Request> {
        self.on_answer();
        let ignore_deletion = self.ignore_resource_deletion;
        let node = self.node_once();
        let Some(state) = self.types.get_mut(response.type_url.as_str()) else {
            tracing::warn!(type_url = %response.type_url, "xDS response for a type never subscribed; ignored");
            return Vec::new();
        };
        state.versions_from_server = true;
        let mut errors = Vec::new();
        let mut seen = BTreeSet::new();
        for resource in response.resources {
            // The wrapper names the resource: a refusal names it even when
            // what is inside cannot be read, so that its watchers hear why
            // (as they do of any other refusal).
            let Some(any) = resource.resource else {
                let error = ResourceError::named(
                    canonical_name(&resource.name),
                    "the Resource wrapper has no resource",
                );
                refuse(state, error, &mut seen, &mut errors);
                continue;
            };
            let outcome = decode_any(&state.kind, &any)
                .map_err(|error| match error.name {
                    Some(_) => error,
                    None => ResourceError::named(canonical_name(&resource.name), error.reason),
                })
                .and_then(|(name, decoded)| {
                    if name == canonical_name(&resource.name) {
                        Ok((name, decoded))
                    } else {
                        Err(ResourceError::named(
                            &resource.name,
                            format!("the resource inside is named {name:?}"),
                        ))
                    }
                });
            apply(
                state,
                outcome,
                any,
                &resource.version,
                &mut seen,
                &mut errors,
            );
        }
        for name in &response.removed_resources {
            remove(state, &canonical_name(name), ignore_deletion);
        }
        state.publish_all();
        vec![Request::Delta(DeltaDiscoveryRequest {
            node,
            type_url: response.type_url.clone(),
            response_nonce: response.nonce.clone(),
            error_detail: nack_detail(&errors),
            ..Default::default()
        })]
    }

    /// What every resource's state is, for a configuration dump.
    pub(crate) fn dump(&self) -> Vec<DumpEntry> {
        self.types
            .iter()
            .flat_map(|(type_url, state)| {
                state.entries.iter().map(move |(name, entry)| {
                    let snapshot = entry.snapshot();
                    DumpEntry {
                        type_url: (*type_url).to_owned(),
                        name: name.clone(),
                        presence: snapshot.status,
                        version: snapshot.version,
                        raw: entry.raw.clone(),
                        error: snapshot.error,
                    }
                })
            })
            .collect()
    }
}

const RESOURCE_WRAPPER: &str = "type.googleapis.com/envoy.service.discovery.v3.Resource";

fn decode_any(kind: &ResourceType, any: &Any) -> Result<(String, Erased), ResourceError> {
    if any.type_url == RESOURCE_WRAPPER {
        // Some control planes wrap SotW resources too (as delta always does).
        use prost::Message;
        let wrapper =
            crate::pb::envoy::service::discovery::v3::Resource::decode(any.value.as_slice())
                .map_err(|e| {
                    ResourceError::unnamed(format!("cannot decode the Resource wrapper: {e}"))
                })?;
        let inner = wrapper.resource.ok_or_else(|| {
            ResourceError::named(&wrapper.name, "the Resource wrapper has no resource")
        })?;
        return decode_any(kind, &inner);
    }
    if any.type_url != kind.type_url {
        return Err(ResourceError::unnamed(format!(
            "type URL {:?} in a response for {:?}",
            any.type_url, kind.type_url
        )));
    }
    kind.decode(&any.value)
}

/// Applies one decoded (or refused) resource of a response.
fn apply(
    state: &mut TypeState,
    outcome: Result<(String, Erased), ResourceError>,
    any: Any,
    version: &str,
    seen: &mut BTreeSet<String>,
    errors: &mut Vec<ResourceError>,
) {
    let wildcard = state.is_wildcard();
    match outcome {
        Ok((name, resource)) => {
            if !seen.insert(name.clone()) {
                errors.push(ResourceError::named(name, "appears twice in the response"));
                return;
            }
            // Resources nobody asked for are not cached (a server may send
            // more than was asked); under a wildcard everything is wanted.
            let entry = match state.entries.get_mut(&name) {
                Some(entry) => entry,
                None if wildcard => state.entries.entry(name.clone()).or_insert_with(Entry::new),
                None => return,
            };
            entry.deadline = None;
            let unchanged =
                entry.raw.as_ref() == Some(&any) && entry.sender.borrow().error.is_none();
            if unchanged {
                // SotW re-sends every resource of a type with any change: an
                // identical one only moves its version, and wakes no watcher.
                entry.sender.send_if_modified(|s| {
                    s.version = version.to_owned();
                    false
                });
                return;
            }
            let hash = bytes_hash(&any);
            if let Some(old) = entry.raw.replace(any) {
                state.names_by_bytes.remove(&bytes_hash(&old));
            }
            state.names_by_bytes.insert(hash, name.clone());
            entry.refused = None;
            entry.sender.send_replace(Snapshot {
                resource: Some(resource),
                version: version.to_owned(),
                status: Presence::Exists,
                error: None,
            });
        }
        Err(error) => refuse(state, error, seen, errors),
    }
}

/// One refused resource of a response: its watchers hear why, the last good
/// copy stays in force (A46), and the NACK will name it.
fn refuse(
    state: &mut TypeState,
    error: ResourceError,
    seen: &mut BTreeSet<String>,
    errors: &mut Vec<ResourceError>,
) {
    if let Some(name) = &error.name {
        seen.insert(name.clone());
        if let Some(entry) = state.entries.get_mut(name) {
            entry.deadline = None;
            entry.refused = Some(error.reason.clone());
            let reason = error.reason.clone();
            entry.sender.send_modify(|s| s.error = Some(reason));
        }
    }
    errors.push(error);
}

/// The control plane removed `name` (explicitly in delta, by omission in
/// SotW for LDS/CDS).
fn remove(state: &mut TypeState, name: &str, ignore_deletion: bool) {
    let Some(entry) = state.entries.get_mut(name) else {
        return;
    };
    if ignore_deletion && entry.has_resource() {
        tracing::warn!(type_url = state.kind.type_url, %name, "xDS resource deleted by the control plane; kept (ignore_resource_deletion)");
        return;
    }
    entry.deadline = None;
    entry.refused = None;
    if let Some(old) = entry.raw.take() {
        state.names_by_bytes.remove(&bytes_hash(&old));
    }
    entry.sender.send_modify(|s| {
        s.resource = None;
        s.status = Presence::DoesNotExist;
        s.error = None;
    });
    if entry.watchers == 0 {
        state.entries.remove(name);
    }
}

fn bytes_hash(any: &Any) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    any.type_url.hash(&mut hasher);
    any.value.hash(&mut hasher);
    hasher.finish()
}

/// The NACK's `error_detail`, naming each refused resource; `None` to ACK.
fn nack_detail(errors: &[ResourceError]) -> Option<Status> {
    if errors.is_empty() {
        return None;
    }
    let list: Vec<String> = errors.iter().map(ToString::to_string).collect();
    Some(Status {
        code: INVALID_ARGUMENT,
        message: format!("xDS response validation errors: [{}]", list.join("; ")),
        details: Vec::new(),
    })
}

#[cfg(test)]
mod tests;
