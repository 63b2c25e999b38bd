//! Follows one listener's dependency tree through xDS and applies each
//! complete configuration to a [`MeshClient`].
//!
//! Listener → (RDS) RouteConfiguration → the Clusters its routes name → the
//! ClusterLoadAssignment of each EDS cluster. Watches come and go as routes
//! and clusters change. A configuration is applied only when every resource
//! it depends on has been answered (gRFC A74: no route ever points at a
//! cluster whose endpoints are not yet known); a cluster that does not exist
//! is applied as one with no endpoint, so its requests fail with UNAVAILABLE
//! as gRPC's do.
//!
//! An EDS cluster's endpoints are not part of the configuration: each
//! ClusterLoadAssignment is published to the clusters that use it (see
//! `discovery`), which updates their balancers in place. A burst of changes
//! that only moves endpoints therefore builds no configuration at all; one
//! that changes an assignment's locality weights or overprovisioning factor
//! (part of the cluster's policy) does.

use std::collections::{BTreeMap, BTreeSet};

use futures_util::future::FutureExt;
use futures_util::stream::{self, AbortHandle, BoxStream, SelectAll, StreamExt};
use meshlib_xds::{Presence, Resource, ResourceState, XdsClient};
use tokio::sync::watch;

use super::convert::{EndpointSource, ListenerRoutes};
use super::resources::{XdsCluster, XdsEndpoints, XdsListener, XdsRoutes};
use crate::client::WeakMeshClient;
use crate::config::{self, Destination, MeshConfig};

/// How far the first configuration got: `None` while waiting; then `Ok`
/// once one is applied, or the reason none can be yet.
pub(super) type Readiness = Option<Result<(), String>>;

enum Update {
    Listener(ResourceState<XdsListener>),
    Routes(String, ResourceState<XdsRoutes>),
    Cluster(String, ResourceState<XdsCluster>),
    Endpoints(String, ResourceState<XdsEndpoints>),
}

/// Every watch's changes, merged into one stream the task drains in bursts.
type Changes = SelectAll<BoxStream<'static, Update>>;

/// One watched resource: its latest state, and the handle that ends its
/// stream of changes (dropping the watch, which unsubscribes).
struct Tracked<T> {
    stop: AbortHandle,
    state: Option<ResourceState<T>>,
}

impl<T> Drop for Tracked<T> {
    fn drop(&mut self) {
        self.stop.abort();
    }
}

impl<T: Resource> Tracked<T> {
    /// Watches all of `names` with one subscription request; their changes
    /// arrive on `changes`.
    async fn start_many(
        xds: &XdsClient,
        names: &[String],
        changes: &mut Changes,
        wrap: fn(String, ResourceState<T>) -> Update,
    ) -> Result<Vec<Self>, String> {
        let watches = xds
            .watch_many::<T>(names)
            .await
            .map_err(|e| e.to_string())?;
        Ok(watches
            .into_iter()
            .map(|watch| {
                // The state on the first poll, then each change: one small
                // stream per watch (a mesh has tens of thousands of them).
                let states = stream::unfold((watch, true), move |(mut watch, first)| async move {
                    let state = if first {
                        watch.current()
                    } else {
                        watch.changed().await.ok()?
                    };
                    Some((wrap(watch.name().to_owned(), state), (watch, false)))
                });
                let (watched, stop) = stream::abortable(states);
                changes.push(watched.boxed());
                Tracked { stop, state: None }
            })
            .collect())
    }

    /// Whether the control plane has answered for it, one way or another: it
    /// exists, does not exist, or cannot be had (refused, or no control plane).
    fn answered(&self) -> bool {
        self.state.as_ref().is_some_and(|s| {
            s.presence != Presence::Requested || (s.resource.is_none() && s.error.is_some())
        })
    }

    fn resource(&self) -> Option<&T> {
        self.state.as_ref().and_then(|s| s.resource.as_deref())
    }

    /// Why it is not usable, for a message.
    fn why_missing(&self, what: &str) -> String {
        match &self.state {
            Some(s) if s.presence == Presence::DoesNotExist => format!("{what} does not exist"),
            Some(ResourceState {
                error: Some(error), ..
            }) => format!("{what}: {error}"),
            _ => format!("{what} has not arrived"),
        }
    }
}

/// What the task follows, and what it last applied.
struct Tree {
    listener: Tracked<XdsListener>,
    routes: Option<(String, Tracked<XdsRoutes>)>,
    clusters: BTreeMap<String, Tracked<XdsCluster>>,
    endpoints: BTreeMap<String, Tracked<XdsEndpoints>>,
    /// The clusters that use each EDS service: where its assignment goes.
    users: BTreeMap<String, Vec<String>>,
    /// The services whose assignment, or whose users, changed since it was
    /// last published.
    unpublished: BTreeSet<String>,
    /// Whether a configuration from this tree is in force.
    applied: bool,
}

pub(super) async fn run<C: crate::connect::Connect>(
    xds: XdsClient,
    listener_name: String,
    mut mesh: WeakMeshClient<C>,
    ready: watch::Sender<Readiness>,
) {
    let mut changes = Changes::new();
    let names = [listener_name.clone()];
    let listener =
        match Tracked::start_many(&xds, &names, &mut changes, |_, s| Update::Listener(s)).await {
            Ok(mut started) => match started.pop() {
                Some(tracked) => tracked,
                None => return,
            },
            Err(error) => {
                ready.send_replace(Some(Err(error)));
                return;
            }
        };
    let mut tree = Tree {
        listener,
        routes: None,
        clusters: BTreeMap::new(),
        endpoints: BTreeMap::new(),
        users: BTreeMap::new(),
        unpublished: BTreeSet::new(),
        applied: false,
    };
    loop {
        let change = tokio::select! {
            change = changes.next() => change,
            _ = mesh.closed() => return,
        };
        let Some(change) = change else { return };
        // One response changes many resources: take every change already
        // there, so the burst costs one pass.
        let mut changed = tree.record(change);
        loop {
            match changes.next().now_or_never() {
                Some(Some(change)) => changed = changed.max(tree.record(change)),
                Some(None) => break,
                // The merged stream hands out a few dozen changes per poll;
                // after a yield, nothing more means the burst is over.
                None => {
                    tokio::task::yield_now().await;
                    match changes.next().now_or_never() {
                        Some(Some(change)) => changed = changed.max(tree.record(change)),
                        _ => break,
                    }
                }
            }
        }
        if changed >= Changed::Clusters
            && let Err(error) = tree.follow(&xds, &mut changes, changed).await
        {
            ready.send_replace(Some(Err(error)));
            return;
        }
        let Some(client) = mesh.upgrade() else { return };
        // Before any configuration that adds a cluster, so its stack starts
        // from its endpoints.
        tree.publish(&client);
        if changed == Changed::Endpoints && tree.applied {
            continue;
        }
        match tree.complete(&listener_name) {
            Ok(config) => {
                // Compared with what is in force, so no second copy is kept.
                if tree.applied && *client.config() == config {
                    continue;
                }
                match client.update(config) {
                    Ok(version) => {
                        tracing::info!(listener = %listener_name, version, "xDS configuration applied");
                        client.retain_published(|name| tree.clusters.contains_key(name));
                        tree.applied = true;
                        ready.send_replace(Some(Ok(())));
                    }
                    // Conversions check what validation checks; should a
                    // case slip through, the previous configuration stays.
                    Err(error) => tracing::error!(%error, "xDS configuration refused"),
                }
            }
            Err(Pending::Waiting) => {}
            Err(Pending::Unusable(reason)) => {
                if ready.borrow().is_none() {
                    ready.send_replace(Some(Err(reason)));
                }
            }
        }
    }
}

/// How far up the tree a burst of changes reached: what must be re-followed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Changed {
    /// Endpoints only, of assignments already in use with the same balancing:
    /// publishing them is all there is to do.
    Endpoints,
    /// An assignment arrived for the first time, or with other locality
    /// weights or overprovisioning: the configuration changes, but no watch.
    EndpointPolicy,
    /// Clusters: their EDS watches may change.
    Clusters,
    /// The listener or its routes: the cluster watches may change too.
    Routes,
}

/// How deep aggregate clusters may nest, as in gRPC (gRFC A37).
const MAX_AGGREGATE_DEPTH: usize = 16;

/// Why an aggregate cluster cannot be flattened.
enum Flatten {
    /// One of its clusters has not been answered yet.
    Waiting,
    /// It contains itself, or nests too deep.
    Invalid(String),
}

enum Pending {
    /// Some resource has not been answered yet.
    Waiting,
    /// The listener cannot be used; why.
    Unusable(String),
}

impl Tree {
    fn record(&mut self, update: Update) -> Changed {
        match update {
            Update::Listener(s) => {
                self.listener.state = Some(s);
                Changed::Routes
            }
            Update::Routes(name, s) => {
                if let Some((tracked_name, tracked)) = &mut self.routes
                    && *tracked_name == name
                {
                    tracked.state = Some(s);
                }
                Changed::Routes
            }
            Update::Cluster(name, s) => {
                if let Some(t) = self.clusters.get_mut(&name) {
                    t.state = Some(s);
                }
                Changed::Clusters
            }
            Update::Endpoints(name, s) => {
                let Some(t) = self.endpoints.get_mut(&name) else {
                    return Changed::Endpoints;
                };
                let policy = |s: &ResourceState<XdsEndpoints>| {
                    s.resource.as_ref().map(|r| {
                        (
                            r.assignment.locality_weights.clone(),
                            r.assignment.overprovisioning_factor,
                        )
                    })
                };
                let same_policy = t.answered() && t.state.as_ref().map(policy) == Some(policy(&s));
                t.state = Some(s);
                self.unpublished.insert(name);
                if same_policy {
                    Changed::Endpoints
                } else {
                    Changed::EndpointPolicy
                }
            }
        }
    }

    /// The virtual hosts in force, if the listener (and its RDS) have them.
    fn virtual_hosts(&self) -> Option<&[config::VirtualHost]> {
        match &self.listener.resource()?.routes {
            ListenerRoutes::Inline(vhosts) => Some(vhosts),
            ListenerRoutes::Rds(_) => self
                .routes
                .as_ref()
                .and_then(|(_, t)| t.resource())
                .map(|r| r.virtual_hosts.as_slice()),
        }
    }

    /// Starts and stops watches to match what the current resources name;
    /// `changed` says how far up the tree to look.
    async fn follow(
        &mut self,
        xds: &XdsClient,
        changes: &mut Changes,
        changed: Changed,
    ) -> Result<(), String> {
        if changed >= Changed::Routes {
            let rds = match self.listener.resource().map(|l| &l.routes) {
                Some(ListenerRoutes::Rds(name)) => Some(name.clone()),
                _ => None,
            };
            if self.routes.as_ref().map(|(n, _)| n) != rds.as_ref() {
                self.routes = match rds {
                    Some(name) => {
                        let mut started = Tracked::start_many(
                            xds,
                            std::slice::from_ref(&name),
                            changes,
                            Update::Routes,
                        )
                        .await?;
                        started.pop().map(|tracked| (name, tracked))
                    }
                    None => None,
                };
            }
        }
        if changed >= Changed::Clusters {
            // An aggregate cluster's arrival or change moves which clusters
            // are wanted too: its clusters are.
            let wanted = self.wanted_clusters();
            self.clusters.retain(|name, _| wanted.contains(name));
            let new: Vec<String> = wanted
                .into_iter()
                .filter(|n| !self.clusters.contains_key(n))
                .collect();
            if !new.is_empty() {
                // All at once, so the xDS client subscribes them in one request.
                let started = Tracked::start_many(xds, &new, changes, Update::Cluster).await?;
                self.clusters.extend(new.into_iter().zip(started));
            }
        }
        let mut users: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (name, tracked) in &self.clusters {
            if let Some(EndpointSource::Eds(service)) = tracked.resource().map(|c| &c.endpoints) {
                users.entry(service.clone()).or_default().push(name.clone());
            }
        }
        // A service with a new user is published again, for that user.
        for (service, names) in &users {
            if self.users.get(service) != Some(names) {
                self.unpublished.insert(service.clone());
            }
        }
        self.users = users;
        let services: BTreeSet<String> = self.users.keys().cloned().collect();
        self.endpoints.retain(|name, _| services.contains(name));
        let new: Vec<String> = services
            .into_iter()
            .filter(|n| !self.endpoints.contains_key(n))
            .collect();
        if !new.is_empty() {
            let started = Tracked::start_many(xds, &new, changes, Update::Endpoints).await?;
            self.endpoints.extend(new.into_iter().zip(started));
        }
        Ok(())
    }

    /// The clusters the routes name, and those of every aggregate among them.
    fn wanted_clusters(&self) -> BTreeSet<String> {
        let mut wanted = BTreeSet::new();
        let mut next: Vec<String> = self
            .virtual_hosts()
            .map(referenced_clusters)
            .unwrap_or_default()
            .into_iter()
            .collect();
        while let Some(name) = next.pop() {
            if let Some(EndpointSource::Aggregate(children)) = self
                .clusters
                .get(&name)
                .and_then(Tracked::resource)
                .map(|c| &c.endpoints)
            {
                next.extend(children.iter().filter(|c| !wanted.contains(*c)).cloned());
            }
            wanted.insert(name);
        }
        wanted
    }

    /// The plain clusters aggregate cluster `name` stands for: its clusters
    /// depth-first, aggregates replaced by theirs, each kept at its first
    /// place (gRFC A37). A cluster that does not exist stays, as a cluster
    /// with no endpoint.
    fn leaves(&self, name: &str) -> Result<Vec<String>, Flatten> {
        fn visit<'a>(
            tree: &'a Tree,
            name: &'a str,
            path: &mut Vec<&'a str>,
            leaves: &mut Vec<String>,
        ) -> Result<(), Flatten> {
            if path.contains(&name) {
                return Err(Flatten::Invalid(format!(
                    "aggregate cluster {name:?} contains itself (through {})",
                    path.join(" → ")
                )));
            }
            if path.len() > MAX_AGGREGATE_DEPTH {
                return Err(Flatten::Invalid(format!(
                    "aggregate clusters nest more than {MAX_AGGREGATE_DEPTH} deep (at {name:?})"
                )));
            }
            let tracked = tree.clusters.get(name).ok_or(Flatten::Waiting)?;
            if !tracked.answered() {
                return Err(Flatten::Waiting);
            }
            match tracked.resource().map(|c| &c.endpoints) {
                Some(EndpointSource::Aggregate(children)) => {
                    path.push(name);
                    for child in children {
                        visit(tree, child, path, leaves)?;
                    }
                    path.pop();
                }
                _ if leaves.iter().any(|l| l == name) => {}
                _ => leaves.push(name.to_owned()),
            }
            Ok(())
        }
        let mut leaves = Vec::new();
        visit(self, name, &mut Vec::new(), &mut leaves)?;
        Ok(leaves)
    }

    /// Publishes every assignment that changed since it was last published
    /// to the clusters that use it; one that does not exist leaves them no
    /// endpoint.
    fn publish<C: crate::connect::Connect>(&mut self, client: &crate::MeshClient<C>) {
        let pending = std::mem::take(&mut self.unpublished);
        for service in pending {
            let Some(tracked) = self.endpoints.get(&service) else {
                continue;
            };
            if !tracked.answered() {
                // Published once it is.
                self.unpublished.insert(service);
                continue;
            }
            let endpoints: std::sync::Arc<[config::Endpoint]> = tracked.resource().map_or_else(
                || std::sync::Arc::from([]),
                |r| r.assignment.endpoints.clone(),
            );
            for cluster in self.users.get(&service).into_iter().flatten() {
                client.publish_endpoints(cluster, endpoints.clone());
            }
        }
    }

    /// The configuration, once every resource it needs has been answered.
    fn complete(&self, listener_name: &str) -> Result<MeshConfig, Pending> {
        if !self.listener.answered() {
            return Err(Pending::Waiting);
        }
        if self.listener.resource().is_none() {
            let reason = self
                .listener
                .why_missing(&format!("listener {listener_name:?}"));
            return Err(Pending::Unusable(reason));
        }
        if let Some((name, routes)) = &self.routes {
            if !routes.answered() {
                return Err(Pending::Waiting);
            }
            if routes.resource().is_none() {
                return Err(Pending::Unusable(
                    routes.why_missing(&format!("route configuration {name:?}")),
                ));
            }
        }
        let virtual_hosts = self.virtual_hosts().ok_or(Pending::Waiting)?.to_vec();
        let mut clusters = Vec::new();
        for (name, tracked) in &self.clusters {
            if !tracked.answered() {
                return Err(Pending::Waiting);
            }
            let Some(resource) = tracked.resource() else {
                // Gone or never there: requests to it fail, others flow.
                clusters.push(config::Cluster::new(name.clone(), Vec::new()));
                continue;
            };
            let mut cluster = resource.cluster.clone();
            match &resource.endpoints {
                EndpointSource::Aggregate(_) => match self.leaves(name) {
                    Ok(leaves) => {
                        cluster.discovery = config::Discovery::Aggregate { clusters: leaves }
                    }
                    Err(Flatten::Waiting) => return Err(Pending::Waiting),
                    // Its requests fail; every other cluster is applied.
                    Err(Flatten::Invalid(reason)) => {
                        tracing::error!(cluster = %name, %reason, "aggregate cluster left without endpoints");
                    }
                },
                EndpointSource::Static(assignment) => assignment.apply_to(&mut cluster),
                EndpointSource::Dns(dns) => cluster.discovery = config::Discovery::Dns(dns.clone()),
                EndpointSource::Eds(service) => {
                    let Some(tracked) = self.endpoints.get(service) else {
                        return Err(Pending::Waiting);
                    };
                    if !tracked.answered() {
                        return Err(Pending::Waiting);
                    }
                    // The endpoints themselves are published (`publish`).
                    cluster.discovery = config::Discovery::Eds {
                        service_name: service.clone(),
                    };
                    if let Some(endpoints) = tracked.resource() {
                        endpoints.assignment.apply_policy_to(&mut cluster);
                    }
                }
            }
            clusters.push(cluster);
        }
        let mut config = MeshConfig::new(virtual_hosts, clusters);
        if let Some(listener) = self.listener.resource() {
            config.normalize_path = listener.normalize_path;
            config.merge_slashes = listener.merge_slashes;
            config.local_rate_limit = listener.local_rate_limit.clone();
        }
        Ok(config)
    }
}

fn referenced_clusters(virtual_hosts: &[config::VirtualHost]) -> BTreeSet<String> {
    virtual_hosts
        .iter()
        .flat_map(|v| &v.routes)
        .flat_map(|r| {
            let mut names = match &r.action.destination {
                Destination::Cluster(name) => vec![name.clone()],
                Destination::WeightedClusters(clusters) => {
                    clusters.iter().map(|c| c.name.clone()).collect()
                }
                // Conversion refuses cluster_header routes: which clusters to
                // fetch is not known in advance.
                Destination::ClusterHeader(_) => Vec::new(),
            };
            names.extend(
                r.action
                    .request_mirror_policies
                    .iter()
                    .map(|m| m.cluster.clone()),
            );
            names
        })
        .collect()
}
