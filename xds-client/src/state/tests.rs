use std::time::Duration;

use prost::Message;
use tokio::time::Instant;

use super::*;
use crate::pb::envoy::config::cluster::v3::Cluster;
use crate::pb::envoy::config::endpoint::v3::ClusterLoadAssignment;
use crate::pb::envoy::service::discovery::v3::Resource as DeltaResource;
use crate::resource::{Resource, ResourceType};

fn cds() -> ResourceType {
    ResourceType::of::<Cluster>()
}

fn cluster(name: &str) -> Any {
    let message = Cluster {
        name: name.into(),
        ..Default::default()
    };
    Any {
        type_url: Cluster::TYPE_URL.into(),
        value: message.encode_to_vec(),
    }
}

fn nameless() -> Any {
    Any {
        type_url: Cluster::TYPE_URL.into(),
        value: Cluster::default().encode_to_vec(),
    }
}

fn sotw(requests: Vec<Request>) -> DiscoveryRequest {
    assert_eq!(requests.len(), 1, "{requests:?}");
    match requests.into_iter().next() {
        Some(Request::Sotw(r)) => r,
        other => panic!("expected a SotW request, got {other:?}"),
    }
}

fn delta(requests: Vec<Request>) -> DeltaDiscoveryRequest {
    assert_eq!(requests.len(), 1, "{requests:?}");
    match requests.into_iter().next() {
        Some(Request::Delta(r)) => r,
        other => panic!("expected a delta request, got {other:?}"),
    }
}

fn response(version: &str, nonce: &str, resources: Vec<Any>) -> DiscoveryResponse {
    DiscoveryResponse {
        version_info: version.into(),
        nonce: nonce.into(),
        type_url: Cluster::TYPE_URL.into(),
        resources,
        ..Default::default()
    }
}

fn node() -> Node {
    Node {
        id: "test-node".into(),
        ..Default::default()
    }
}

fn name_of(snapshot: &Snapshot) -> Option<String> {
    snapshot
        .resource
        .as_ref()
        .and_then(|r| r.downcast_ref::<Cluster>())
        .map(|c| c.name.clone())
}

#[test]
fn sotw_subscribes_on_connect_applies_then_acks() {
    let now = Instant::now();
    let mut state = AdsState::new(node(), false, false);
    let a = state.watch(cds(), "a").unwrap();
    let requests = state.flush(now);
    assert!(requests.is_empty(), "nothing is sent before a stream is up");

    let first = sotw(state.on_connected(now));
    assert_eq!(first.resource_names, ["a"]);
    assert_eq!(
        first.node.as_ref().map(|n| n.id.as_str()),
        Some("test-node")
    );
    assert_eq!(
        (first.version_info.as_str(), first.response_nonce.as_str()),
        ("", "")
    );

    let ack = sotw(state.on_sotw_response(response("1", "n1", vec![cluster("a")])));
    assert_eq!(name_of(&a.borrow()), Some("a".into()));
    assert_eq!(a.borrow().status, Presence::Exists);
    assert_eq!(
        (ack.version_info.as_str(), ack.response_nonce.as_str()),
        ("1", "n1")
    );
    assert!(ack.error_detail.is_none());
    assert!(
        ack.node.is_none(),
        "the node goes in the stream's first request only"
    );
}

#[test]
fn a_bad_resource_is_nacked_by_name_while_good_siblings_apply() {
    let now = Instant::now();
    let mut state = AdsState::new(node(), false, false);
    let a = state.watch(cds(), "a").unwrap();
    let b = state.watch(cds(), "b").unwrap();
    state.on_connected(now);
    state.on_sotw_response(response("1", "n1", vec![cluster("a"), cluster("b")]));

    // Version 2 brings a good `a` and an undecodable `b`.
    let bad_b = Any {
        type_url: Cluster::TYPE_URL.into(),
        value: vec![0x0a, 0x01, 0x62, 0xff],
    };
    let nack =
        sotw(state.on_sotw_response(response("2", "n2", vec![cluster("a"), bad_b, nameless()])));
    assert_eq!(
        nack.version_info, "1",
        "a NACK carries the last accepted version"
    );
    assert_eq!(nack.response_nonce, "n2");
    let detail = nack.error_detail.expect("a NACK has an error_detail");
    assert_eq!(detail.code, 3);
    assert!(
        detail
            .message
            .starts_with("xDS response validation errors: [unnamed resource: cannot decode"),
        "{}",
        detail.message
    );
    assert!(
        detail
            .message
            .contains("unnamed resource: the resource has an empty name"),
        "{}",
        detail.message
    );

    assert_eq!(a.borrow().version, "2", "the good sibling applies");
    assert_eq!(
        name_of(&b.borrow()),
        Some("b".into()),
        "the last good b stays"
    );
    assert_eq!(b.borrow().version, "1");
}

#[test]
fn a_validation_error_with_a_name_is_reported_to_that_resources_watchers() {
    #[derive(Debug)]
    struct Strict;
    impl Resource for Strict {
        const TYPE_URL: &'static str = Cluster::TYPE_URL;
        const ALL_IN_EACH_RESPONSE: bool = true;
        fn decode_resource(bytes: &[u8]) -> Result<Self, ResourceError> {
            let c = Cluster::decode(bytes).map_err(|e| ResourceError::unnamed(e.to_string()))?;
            Err(ResourceError::named(
                c.name,
                "lb_policy MAGLEV is not supported",
            ))
        }
        fn resource_name(&self) -> &str {
            ""
        }
    }
    let now = Instant::now();
    let mut state = AdsState::new(node(), false, false);
    let w = state.watch(ResourceType::of::<Strict>(), "x").unwrap();
    state.on_connected(now);
    let nack = sotw(state.on_sotw_response(response("1", "n1", vec![cluster("x")])));
    assert_eq!(
        nack.error_detail.unwrap().message,
        "xDS response validation errors: [resource \"x\": lb_policy MAGLEV is not supported]"
    );
    assert_eq!(
        w.borrow().error.as_deref(),
        Some("lb_policy MAGLEV is not supported")
    );
    assert_eq!(
        w.borrow().status,
        Presence::Requested,
        "refused before any good version"
    );
    assert!(
        matches!(
            state.watch(cds(), "y"),
            Err(WatchError::TypeConflict { .. })
        ),
        "one Rust type per type URL"
    );
}

#[test]
fn lds_and_cds_omission_deletes_unless_deletion_is_ignored() {
    for ignore in [false, true] {
        let now = Instant::now();
        let mut state = AdsState::new(node(), false, ignore);
        let a = state.watch(cds(), "a").unwrap();
        let b = state.watch(cds(), "b").unwrap();
        state.on_connected(now);
        state.on_sotw_response(response("1", "n1", vec![cluster("a"), cluster("b")]));
        state.on_sotw_response(response("2", "n2", vec![cluster("a")]));
        assert_eq!(a.borrow().status, Presence::Exists);
        if ignore {
            assert_eq!(
                name_of(&b.borrow()),
                Some("b".into()),
                "kept under ignore_resource_deletion"
            );
        } else {
            assert_eq!(b.borrow().status, Presence::DoesNotExist);
            assert!(b.borrow().resource.is_none());
        }
    }
}

#[test]
fn eds_omission_is_not_deletion() {
    let now = Instant::now();
    let mut state = AdsState::new(node(), false, false);
    let eds = ResourceType::of::<ClusterLoadAssignment>();
    let cla = |name: &str| Any {
        type_url: ClusterLoadAssignment::TYPE_URL.into(),
        value: ClusterLoadAssignment {
            cluster_name: name.into(),
            ..Default::default()
        }
        .encode_to_vec(),
    };
    let a = state.watch(eds, "a").unwrap();
    let b = state.watch(eds, "b").unwrap();
    state.on_connected(now);
    let mut r = response("1", "n1", vec![cla("a"), cla("b")]);
    r.type_url = ClusterLoadAssignment::TYPE_URL.into();
    state.on_sotw_response(r.clone());
    r.resources = vec![cla("a")];
    r.version_info = "2".into();
    state.on_sotw_response(r);
    assert_eq!(a.borrow().version, "2");
    assert_eq!(
        (b.borrow().status, b.borrow().version.as_str()),
        (Presence::Exists, "1")
    );
}

#[test]
fn does_not_exist_fires_after_15s_on_a_connected_stream_only() {
    let start = Instant::now();
    let mut state = AdsState::new(node(), false, false);
    let a = state.watch(cds(), "a").unwrap();
    assert_eq!(
        state.next_deadline(),
        None,
        "no timer before the request is sent"
    );

    state.on_connected(start);
    assert_eq!(state.next_deadline(), Some(start + Duration::from_secs(15)));
    state.on_time(start + Duration::from_secs(14));
    assert_eq!(a.borrow().status, Presence::Requested);

    // The stream drops: the timer stops, and restarts with the new stream.
    state.on_disconnected(Some("connection reset"));
    assert_eq!(state.next_deadline(), None);
    assert_eq!(
        a.borrow().error.as_deref(),
        Some("xDS stream: connection reset")
    );
    let later = start + Duration::from_secs(20);
    state.on_connected(later);
    state.on_time(later + Duration::from_secs(14));
    assert_eq!(a.borrow().status, Presence::Requested);
    state.on_time(later + Duration::from_secs(15));
    assert_eq!(a.borrow().status, Presence::DoesNotExist);
    assert_eq!(state.next_deadline(), None);
}

#[test]
fn two_watchers_share_one_subscription() {
    let now = Instant::now();
    let mut state = AdsState::new(node(), false, false);
    state.on_connected(now);
    let w1 = state.watch(cds(), "a").unwrap();
    let requests = state.flush(now);
    assert_eq!(sotw(requests).resource_names, ["a"]);
    let w2 = state.watch(cds(), "a").unwrap();
    let requests = state.flush(now);
    assert!(requests.is_empty(), "the second watcher sends nothing");
    state.on_sotw_response(response("1", "n1", vec![cluster("a")]));
    assert!(w1.borrow().resource.is_some() && w2.borrow().resource.is_some());

    assert!(
        {
            state.unwatch(Cluster::TYPE_URL, "a");
            state.flush(now)
        }
        .is_empty(),
        "one watcher remains"
    );
    let last = sotw({
        state.unwatch(Cluster::TYPE_URL, "a");
        state.flush(now)
    });
    assert!(last.resource_names.is_empty());
    assert_eq!(
        (last.version_info.as_str(), last.response_nonce.as_str()),
        ("1", "n1")
    );
}

#[test]
fn a_wildcard_watch_sees_every_resource() {
    let now = Instant::now();
    let mut state = AdsState::new(node(), false, false);
    let all = state.watch_all(cds()).unwrap();
    assert_eq!(sotw(state.on_connected(now)).resource_names, ["*"]);
    state.on_sotw_response(response("1", "n1", vec![cluster("a"), cluster("b")]));
    assert_eq!(all.borrow().keys().collect::<Vec<_>>(), ["a", "b"]);
    state.on_sotw_response(response("2", "n2", vec![cluster("b")]));
    assert_eq!(all.borrow().keys().collect::<Vec<_>>(), ["b"]);
    assert!(matches!(
        state.watch_all(ResourceType::of::<ClusterLoadAssignment>()),
        Err(WatchError::NoWildcard(_))
    ));
}

#[test]
fn delta_resubscribes_with_initial_versions_and_acks_by_nonce() {
    let now = Instant::now();
    let mut state = AdsState::new(node(), true, false);
    let a = state.watch(cds(), "a").unwrap();
    let b = state.watch(cds(), "b").unwrap();
    let first = delta(state.on_connected(now));
    assert_eq!(first.resource_names_subscribe, ["a", "b"]);
    assert!(first.initial_resource_versions.is_empty());
    assert!(first.node.is_some());

    let resource = |name: &str, version: &str| DeltaResource {
        name: name.into(),
        version: version.into(),
        resource: Some(cluster(name)),
        ..Default::default()
    };
    let ack = delta(state.on_delta_response(DeltaDiscoveryResponse {
        type_url: Cluster::TYPE_URL.into(),
        nonce: "d1".into(),
        resources: vec![resource("a", "v1"), resource("b", "v7")],
        ..Default::default()
    }));
    assert_eq!(ack.response_nonce, "d1");
    assert!(ack.error_detail.is_none());
    assert_eq!(
        (a.borrow().version.as_str(), b.borrow().version.as_str()),
        ("v1", "v7")
    );

    state.on_delta_response(DeltaDiscoveryResponse {
        type_url: Cluster::TYPE_URL.into(),
        nonce: "d2".into(),
        removed_resources: vec!["b".into()],
        ..Default::default()
    });
    assert_eq!(b.borrow().status, Presence::DoesNotExist);

    state.on_disconnected(Some("gone"));
    let again = delta(state.on_connected(now));
    assert_eq!(again.resource_names_subscribe, ["a", "b"]);
    assert_eq!(
        again
            .initial_resource_versions
            .into_iter()
            .collect::<Vec<_>>(),
        [("a".to_owned(), "v1".to_owned())]
    );

    let _ = state.watch(cds(), "c").unwrap();
    let requests = state.flush(now);
    let subscribe = delta(requests);
    assert_eq!(subscribe.resource_names_subscribe, ["c"]);
    assert!(subscribe.response_nonce.is_empty());
    let nack = delta(state.on_delta_response(DeltaDiscoveryResponse {
        type_url: Cluster::TYPE_URL.into(),
        nonce: "d3".into(),
        resources: vec![DeltaResource {
            name: "c".into(),
            resource: Some(cluster("not-c")),
            ..Default::default()
        }],
        ..Default::default()
    }));
    assert_eq!(
        nack.error_detail.unwrap().message,
        "xDS response validation errors: [resource \"c\": the resource inside is named \"not-c\"]"
    );
    let unsubscribe = delta({
        state.unwatch(Cluster::TYPE_URL, "c");
        state.flush(now)
    });
    assert_eq!(unsubscribe.resource_names_unsubscribe, ["c"]);
}

#[test]
fn a_delta_resource_that_cannot_be_read_is_refused_by_its_wrappers_name() {
    let now = Instant::now();
    let mut state = AdsState::new(node(), true, false);
    let a = state.watch(cds(), "a").unwrap();
    let b = state.watch(cds(), "b").unwrap();
    let c = state.watch(cds(), "c").unwrap();
    let _ = state.on_connected(now);
    let wrapped = |name: &str, resource: Option<Any>| DeltaResource {
        name: name.into(),
        version: "v1".into(),
        resource,
        ..Default::default()
    };
    let ack = delta(
        state.on_delta_response(DeltaDiscoveryResponse {
            type_url: Cluster::TYPE_URL.into(),
            nonce: "d1".into(),
            resources: ["a", "b", "c"]
                .map(|name| wrapped(name, Some(cluster(name))))
                .into(),
            ..Default::default()
        }),
    );
    assert!(ack.error_detail.is_none());

    let garbled = Any {
        type_url: Cluster::TYPE_URL.into(),
        value: vec![0x0a, 0xff, 0xff],
    };
    let mislabelled = Any {
        type_url: ClusterLoadAssignment::TYPE_URL.into(),
        value: cluster("b").value,
    };
    let nack = delta(state.on_delta_response(DeltaDiscoveryResponse {
        type_url: Cluster::TYPE_URL.into(),
        nonce: "d2".into(),
        resources: vec![
            wrapped("a", Some(garbled)),
            wrapped("b", Some(mislabelled)),
            wrapped("c", None),
        ],
        ..Default::default()
    }));
    let message = nack.error_detail.unwrap().message;
    assert!(
        message.contains("resource \"a\": cannot decode envoy.config.cluster.v3.Cluster"),
        "{message}"
    );
    assert!(
        message.contains(&format!(
            "resource \"b\": type URL {:?} in a response for {:?}",
            ClusterLoadAssignment::TYPE_URL,
            Cluster::TYPE_URL
        )),
        "{message}"
    );
    assert!(
        message.contains("resource \"c\": the Resource wrapper has no resource"),
        "{message}"
    );
    // Each keeps its last good copy, and its watchers hear why.
    for watch in [&a, &b, &c] {
        let snapshot = watch.borrow();
        assert!(snapshot.resource.is_some(), "{snapshot:?}");
        assert!(snapshot.error.is_some(), "{snapshot:?}");
    }
}

#[test]
fn the_first_response_after_an_outage_ends_it_for_every_watcher_but_a_refusal_stays() {
    let now = Instant::now();
    let mut state = AdsState::new(node(), true, false);
    let a = state.watch(cds(), "a").unwrap();
    let b = state.watch(cds(), "b").unwrap();
    let _ = state.on_connected(now);
    let wrapped = |name: &str, version: &str, inner: &str| DeltaResource {
        name: name.into(),
        version: version.into(),
        resource: Some(cluster(inner)),
        ..Default::default()
    };
    let respond = |state: &mut AdsState, nonce: &str, resources: Vec<DeltaResource>| {
        delta(state.on_delta_response(DeltaDiscoveryResponse {
            type_url: Cluster::TYPE_URL.into(),
            nonce: nonce.into(),
            resources,
            ..Default::default()
        }))
    };
    respond(
        &mut state,
        "d1",
        vec![wrapped("a", "1", "a"), wrapped("b", "1", "b")],
    );
    let nack = respond(&mut state, "d2", vec![wrapped("b", "2", "not-b")]);
    assert!(nack.error_detail.is_some());
    let refusal = "the resource inside is named \"not-b\"".to_owned();
    assert_eq!(b.borrow().error.as_ref(), Some(&refusal));

    state.on_disconnected(Some("gone"));
    let outage = Some("xDS stream: gone".to_owned());
    assert_eq!((&a.borrow().error, &b.borrow().error), (&outage, &outage));
    // Connected is not yet working: the call may still fail to open.
    let _ = state.on_connected(now);
    assert_eq!(a.borrow().error, outage);
    // The server resends neither (it has their versions); its first
    // response, of anything, shows it reachable.
    respond(&mut state, "d3", Vec::new());
    assert_eq!(a.borrow().error, None);
    assert_eq!(b.borrow().error, Some(refusal), "b's refusal still stands");
    assert!(a.borrow().resource.is_some() && b.borrow().resource.is_some());
}

#[test]
fn sotw_resources_may_come_wrapped() {
    let now = Instant::now();
    let mut state = AdsState::new(node(), false, false);
    let a = state.watch(cds(), "a").unwrap();
    state.on_connected(now);
    let wrapped = Any {
        type_url: "type.googleapis.com/envoy.service.discovery.v3.Resource".into(),
        value: DeltaResource {
            name: "a".into(),
            resource: Some(cluster("a")),
            ..Default::default()
        }
        .encode_to_vec(),
    };
    let ack = sotw(state.on_sotw_response(response("1", "n1", vec![wrapped])));
    assert!(ack.error_detail.is_none());
    assert_eq!(name_of(&a.borrow()), Some("a".into()));
}

#[test]
fn a_burst_of_watches_goes_out_as_one_request_per_type() {
    for delta_variant in [false, true] {
        let now = Instant::now();
        let mut state = AdsState::new(node(), delta_variant, false);
        state.on_connected(now);
        let watches: Vec<_> = (0..100)
            .map(|i| state.watch(cds(), &format!("c{i}")).unwrap())
            .collect();
        let gone = state.watch(cds(), "gone").unwrap();
        state.unwatch(Cluster::TYPE_URL, "gone");
        drop(gone);
        let requests = state.flush(now);
        assert_eq!(requests.len(), 1);
        match &requests[0] {
            Request::Sotw(r) => assert_eq!(r.resource_names.len(), 100),
            Request::Delta(r) => {
                assert_eq!(r.resource_names_subscribe.len(), 100);
                assert!(
                    r.resource_names_unsubscribe.is_empty(),
                    "a name added and removed in one burst is never sent"
                );
            }
        }
        assert!(state.flush(now).is_empty());
        drop(watches);
    }
}

/// Decodes as a Cluster, counting the decodes.
#[derive(Debug)]
struct Counted(String);

static DECODES: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

impl Resource for Counted {
    const TYPE_URL: &'static str = Cluster::TYPE_URL;
    const ALL_IN_EACH_RESPONSE: bool = true;

    fn decode_resource(bytes: &[u8]) -> Result<Self, crate::ResourceError> {
        DECODES.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let cluster =
            Cluster::decode(bytes).map_err(|e| crate::ResourceError::unnamed(e.to_string()))?;
        Ok(Counted(cluster.name))
    }

    fn resource_name(&self) -> &str {
        &self.0
    }
}

#[test]
fn a_sotw_resend_of_unchanged_bytes_is_not_decoded_again_but_a_change_is() {
    use std::sync::atomic::Ordering::SeqCst;
    let now = Instant::now();
    let mut state = AdsState::new(node(), false, false);
    let kind = ResourceType::of::<Counted>();
    let a = state.watch(kind, "a").unwrap();
    let _b = state.watch(kind, "b").unwrap();
    state.on_connected(now);
    state.on_sotw_response(response("1", "n1", vec![cluster("a"), cluster("b")]));
    assert_eq!(DECODES.load(SeqCst), 2);

    // Version 2 re-sends a unchanged and changes b.
    let mut changed = Cluster {
        name: "b".into(),
        ..Default::default()
    };
    changed.alt_stat_name = "v2".into();
    let changed = Any {
        type_url: Cluster::TYPE_URL.into(),
        value: changed.encode_to_vec(),
    };
    let ack = sotw(state.on_sotw_response(response("2", "n2", vec![cluster("a"), changed])));
    assert!(ack.error_detail.is_none());
    assert_eq!(DECODES.load(SeqCst), 3, "only b was decoded again");
    assert_eq!(a.borrow().version, "2", "a moved to the new version");
    assert_eq!(a.borrow().status, Presence::Exists);

    // The same resource twice in one response is still refused by name.
    let nack = sotw(state.on_sotw_response(response("3", "n3", vec![cluster("a"), cluster("a")])));
    let detail = nack.error_detail.map(|d| d.message).unwrap_or_default();
    assert!(detail.contains("appears twice"), "{detail}");
}

#[test]
fn a_switch_of_control_plane_offers_no_version_of_the_previous_one() {
    let now = Instant::now();
    let mut state = AdsState::new(node(), false, false);
    let _a = state.watch(cds(), "a").unwrap();
    assert!(state.has_uncached_watch());
    state.on_connected(now);
    state.on_sotw_response(response("7", "n1", vec![cluster("a")]));
    assert!(!state.has_uncached_watch(), "a received resource is cached");
    assert_eq!(sotw(state.fresh_requests(false, true)).version_info, "7");
    // A probe of another control plane offers no version.
    assert_eq!(sotw(state.fresh_requests(false, false)).version_info, "");

    // To another control plane: its "7" would not be this one's.
    state.on_disconnected(None);
    state.forget_versions();
    let first = sotw(state.on_connected(now));
    assert_eq!(
        (first.version_info.as_str(), first.resource_names.as_slice()),
        ("", &["a".to_owned()][..])
    );
    assert!(
        first.node.is_some(),
        "the new stream's first request carries the node"
    );

    // Delta: no initial_resource_versions until the new server has answered.
    state.use_server(true, false);
    let first = delta(state.fresh_requests(true, true));
    assert!(first.initial_resource_versions.is_empty());
    assert_eq!(first.resource_names_subscribe, ["a"]);
}

#[test]
fn a_quiet_disconnect_tells_watchers_nothing() {
    let now = Instant::now();
    let mut state = AdsState::new(node(), false, false);
    let a = state.watch(cds(), "a").unwrap();
    state.on_connected(now);
    state.on_disconnected(None);
    assert_eq!(a.borrow().error, None);
    assert_eq!(state.next_deadline(), None, "timers stop with the stream");
    // Known not to exist counts as cached (gRFC A71).
    state.on_connected(now);
    state.on_time(now + DOES_NOT_EXIST_TIMEOUT);
    assert!(!state.has_uncached_watch());
}
