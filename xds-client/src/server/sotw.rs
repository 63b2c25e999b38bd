//! One state-of-the-world ADS stream.

use std::collections::{BTreeMap, BTreeSet};

use tokio::sync::mpsc;
use tokio_stream::wrappers::UnboundedReceiverStream;

use super::{Ack, ResponseStream, SnapshotServer, all_in_each_response};
use crate::pb::envoy::service::discovery::v3::{DiscoveryRequest, DiscoveryResponse};

/// What one stream subscribed to for one type, and what was last sent.
#[derive(Default)]
struct Subscription {
    names: BTreeSet<String>,
    wildcard: bool,
    /// Whether the client ever named resources: after that, an empty list
    /// means "nothing", not "everything".
    ever_named: bool,
    sent_version: Option<String>,
    nonce: String,
}

pub(super) fn stream(
    server: SnapshotServer,
    mut requests: tonic::Streaming<DiscoveryRequest>,
) -> ResponseStream<DiscoveryResponse> {
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
                    let sub = types.entry(type_url.clone()).or_default();
                    // A nonce before this stream sent anything of the type is
                    // an earlier stream's (clients may keep theirs across a
                    // reconnect): the request subscribes afresh, as
                    // go-control-plane takes it.
                    if !request.response_nonce.is_empty() && !sub.nonce.is_empty() {
                        if request.response_nonce != sub.nonce {
                            // An answer to an older response: superseded.
                            continue;
                        }
                        server.record(Ack {
                            node: node.clone(),
                            type_url: type_url.clone(),
                            version_info: request.version_info.clone(),
                            nonce: request.response_nonce.clone(),
                            error: request.error_detail.as_ref().map(|s| s.message.clone()),
                            delta: false,
                        });
                    }
                    let names: BTreeSet<String> =
                        request.resource_names.iter().filter(|n| *n != "*").cloned().collect();
                    let wildcard = request.resource_names.iter().any(|n| n == "*")
                        || (request.resource_names.is_empty()
                            && !sub.ever_named
                            && all_in_each_response(&type_url));
                    sub.ever_named |= !names.is_empty();
                    let changed =
                        sub.sent_version.is_none() || wildcard != sub.wildcard || names != sub.names;
                    sub.wildcard = wildcard;
                    sub.names = names;
                    server.set_subscribed(&node, &type_url, &sub.names, sub.wildcard);
                    if changed {
                        respond(&server, &node, &type_url, sub, &tx);
                    }
                }
                changed = generation.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    let version = server.snapshot_for(&node).version().to_owned();
                    for (type_url, sub) in &mut types {
                        if sub.sent_version.as_deref() != Some(version.as_str()) {
                            respond(&server, &node, type_url, sub, &tx);
                        }
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

fn respond(
    server: &SnapshotServer,
    node: &str,
    type_url: &str,
    sub: &mut Subscription,
    tx: &mpsc::UnboundedSender<Result<DiscoveryResponse, tonic::Status>>,
) {
    let snapshot = server.snapshot_for(node);
    let resources = match snapshot.of_type(type_url) {
        None => Vec::new(),
        Some(all) if sub.wildcard => all.values().cloned().collect(),
        Some(all) => sub
            .names
            .iter()
            .filter_map(|n| all.get(n).cloned())
            .collect(),
    };
    let nonce = server.next_nonce();
    sub.nonce = nonce.clone();
    sub.sent_version = Some(snapshot.version().to_owned());
    let _ = tx.send(Ok(DiscoveryResponse {
        version_info: snapshot.version().to_owned(),
        resources,
        type_url: type_url.to_owned(),
        nonce,
        ..Default::default()
    }));
}
