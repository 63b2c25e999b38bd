//! One incremental (delta) ADS stream.

use std::collections::{BTreeMap, BTreeSet};

use tokio::sync::mpsc;
use tokio_stream::wrappers::UnboundedReceiverStream;

use super::{Ack, ResponseStream, SnapshotServer, resource_version};
use crate::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, Resource,
};

/// What one stream subscribed to for one type, and what the client has.
#[derive(Default)]
struct Subscription {
    names: BTreeSet<String>,
    wildcard: bool,
    /// Name → the version the client has; `None` once it was told the
    /// resource does not exist.
    known: BTreeMap<String, Option<String>>,
}

pub(super) fn stream(
    server: SnapshotServer,
    mut requests: tonic::Streaming<DeltaDiscoveryRequest>,
) -> ResponseStream<DeltaDiscoveryResponse> {
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut generation = server.generation.subscribe();
        let mut node = String::new();
        let mut types: BTreeMap<String, Subscription> = BTreeMap::new();
        loop {
            tokio::select! {
                request = requests.message() => {
                    let Ok(Some(request)) = request else { return };
                    if let Some(n) = &request.node {
                        node = n.id.clone();
                    }
                    let type_url = request.type_url.clone();
                    let first = !types.contains_key(&type_url);
                    let sub = types.entry(type_url.clone()).or_default();
                    if !request.response_nonce.is_empty() {
                        server.record(Ack {
                            node: node.clone(),
                            type_url: type_url.clone(),
                            version_info: String::new(),
                            nonce: request.response_nonce.clone(),
                            error: request.error_detail.as_ref().map(|s| s.message.clone()),
                            delta: true,
                        });
                    }
                    if first {
                        sub.known = request
                            .initial_resource_versions
                            .iter()
                            .map(|(name, version)| (name.clone(), Some(version.clone())))
                            .collect();
                    }
                    for name in &request.resource_names_subscribe {
                        if name == "*" {
                            sub.wildcard = true;
                        } else {
                            sub.names.insert(name.clone());
                        }
                    }
                    for name in &request.resource_names_unsubscribe {
                        if name == "*" {
                            sub.wildcard = false;
                        } else {
                            sub.names.remove(name);
                            sub.known.remove(name);
                        }
                    }
                    server.set_subscribed(&node, &type_url, &sub.names, sub.wildcard);
                    let subscribing = first
                        || !request.resource_names_subscribe.is_empty()
                        || !request.resource_names_unsubscribe.is_empty();
                    if subscribing {
                        respond(&server, &node, &type_url, sub, &tx);
                    }
                }
                changed = generation.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    for (type_url, sub) in &mut types {
                        respond(&server, &node, type_url, sub, &tx);
                    }
                }
            }
            if tx.is_closed() {
                return;
            }
        }
    });
    Box::pin(UnboundedReceiverStream::new(rx))
}

/// Sends what the client lacks: changed resources, and removals.
fn respond(
    server: &SnapshotServer,
    node: &str,
    type_url: &str,
    sub: &mut Subscription,
    tx: &mpsc::UnboundedSender<Result<DeltaDiscoveryResponse, tonic::Status>>,
) {
    let snapshot = server.snapshot_for(node);
    let empty = BTreeMap::new();
    let all = snapshot.of_type(type_url).unwrap_or(&empty);
    let mut wanted: BTreeSet<&String> = sub.names.iter().collect();
    if sub.wildcard {
        wanted.extend(all.keys());
    }
    // Resources the client has that are gone from a wildcard view.
    let dropped: Vec<String> = sub
        .known
        .iter()
        .filter(|(name, version)| version.is_some() && !all.contains_key(*name))
        .map(|(name, _)| name.clone())
        .collect();
    let mut resources = Vec::new();
    let mut removed: BTreeSet<String> = dropped.into_iter().collect();
    for name in wanted {
        match all.get(name) {
            Some(any) => {
                let version = resource_version(any);
                if sub.known.get(name) != Some(&Some(version.clone())) {
                    sub.known.insert(name.clone(), Some(version.clone()));
                    resources.push(Resource {
                        name: name.clone(),
                        version,
                        resource: Some(any.clone()),
                        ..Default::default()
                    });
                }
            }
            // Delta tells a client a resource does not exist by removing it.
            None if sub.known.get(name) != Some(&None) => {
                removed.insert(name.clone());
            }
            None => {}
        }
    }
    for name in &removed {
        sub.known.insert(name.clone(), None);
    }
    if resources.is_empty() && removed.is_empty() {
        return;
    }
    let _ = tx.send(Ok(DeltaDiscoveryResponse {
        system_version_info: snapshot.version().to_owned(),
        resources,
        type_url: type_url.to_owned(),
        removed_resources: removed.into_iter().collect(),
        nonce: server.next_nonce(),
        ..Default::default()
    }));
}
