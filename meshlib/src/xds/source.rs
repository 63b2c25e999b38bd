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

use std::collections::{BTreeMap, BTreeSet};

use meshlib_xds::{Presence, Resource, ResourceState, XdsClient};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

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

/// One watched resource: the task forwarding its changes, and its state.
struct Tracked<T> {
    forwarder: JoinHandle<()>,
    state: Option<ResourceState<T>>,
}

impl<T> Drop for Tracked<T> {
    fn drop(&mut self) {
        // Dropping the forwarder drops its watch, which unsubscribes.
        self.forwarder.abort();
    }
}

impl<T: Resource> Tracked<T> {
    async fn start(
        xds: &XdsClient,
        name: &str,
        updates: &mpsc::UnboundedSender<Update>,
        wrap: fn(String, ResourceState<T>) -> Update,
    ) -> Result<Self, String> {
        let mut watch = xds.watch::<T>(name).await.map_err(|e| e.to_string())?;
        let updates = updates.clone();
        let name = name.to_owned();
        let forwarder = tokio::spawn(async move {
            let mut state = watch.current();
            loop {
                if updates.send(wrap(name.clone(), state)).is_err() {
                    return;
                }
                match watch.changed().await {
                    Ok(next) => state = next,
                    Err(_) => return,
                }
            }
        });
        Ok(Tracked {
            forwarder,
            state: None,
        })
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
    applied: Option<MeshConfig>,
}

pub(super) async fn run(
    xds: XdsClient,
    listener_name: String,
    mut mesh: WeakMeshClient,
    ready: watch::Sender<Readiness>,
) {
    let (updates, mut incoming) = mpsc::unbounded_channel();
    let listener =
        match Tracked::start(&xds, &listener_name, &updates, |_, s| Update::Listener(s)).await {
            Ok(tracked) => tracked,
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
        applied: None,
    };
    loop {
        let update = tokio::select! {
            update = incoming.recv() => update,
            _ = mesh.closed() => return,
        };
        let Some(update) = update else { return };
        tree.record(update);
        // Drain what else arrived, so a burst applies once.
        while let Ok(update) = incoming.try_recv() {
            tree.record(update);
        }
        if let Err(error) = tree.follow(&xds, &updates).await {
            ready.send_replace(Some(Err(error)));
            return;
        }
        let Some(client) = mesh.upgrade() else { return };
        match tree.complete(&listener_name) {
            Ok(config) => {
                if tree.applied.as_ref() != Some(&config) {
                    match client.update(config.clone()) {
                        Ok(version) => {
                            tracing::info!(listener = %listener_name, version, "xDS configuration applied");
                            tree.applied = Some(config);
                            ready.send_replace(Some(Ok(())));
                        }
                        // Conversions check what validation checks; should a
                        // case slip through, the previous configuration stays.
                        Err(error) => tracing::error!(%error, "xDS configuration refused"),
                    }
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

enum Pending {
    /// Some resource has not been answered yet.
    Waiting,
    /// The listener cannot be used; why.
    Unusable(String),
}

impl Tree {
    fn record(&mut self, update: Update) {
        match update {
            Update::Listener(s) => self.listener.state = Some(s),
            Update::Routes(name, s) => {
                if let Some((tracked_name, tracked)) = &mut self.routes
                    && *tracked_name == name
                {
                    tracked.state = Some(s);
                }
            }
            Update::Cluster(name, s) => {
                if let Some(t) = self.clusters.get_mut(&name) {
                    t.state = Some(s);
                }
            }
            Update::Endpoints(name, s) => {
                if let Some(t) = self.endpoints.get_mut(&name) {
                    t.state = Some(s);
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

    /// Starts and stops watches to match what the current resources name.
    async fn follow(
        &mut self,
        xds: &XdsClient,
        updates: &mpsc::UnboundedSender<Update>,
    ) -> Result<(), String> {
        let rds = match self.listener.resource().map(|l| &l.routes) {
            Some(ListenerRoutes::Rds(name)) => Some(name.clone()),
            _ => None,
        };
        if self.routes.as_ref().map(|(n, _)| n) != rds.as_ref() {
            self.routes = match rds {
                Some(name) => {
                    let tracked = Tracked::start(xds, &name, updates, Update::Routes).await?;
                    Some((name, tracked))
                }
                None => None,
            };
        }
        let wanted: BTreeSet<String> = self
            .virtual_hosts()
            .map(referenced_clusters)
            .unwrap_or_default();
        self.clusters.retain(|name, _| wanted.contains(name));
        for name in &wanted {
            if !self.clusters.contains_key(name) {
                let tracked = Tracked::start(xds, name, updates, Update::Cluster).await?;
                self.clusters.insert(name.clone(), tracked);
            }
        }
        let services: BTreeSet<String> = self
            .clusters
            .values()
            .filter_map(|t| match &t.resource()?.endpoints {
                EndpointSource::Eds(service) => Some(service.clone()),
                EndpointSource::Static(_) => None,
            })
            .collect();
        self.endpoints.retain(|name, _| services.contains(name));
        for name in &services {
            if !self.endpoints.contains_key(name) {
                let tracked = Tracked::start(xds, name, updates, Update::Endpoints).await?;
                self.endpoints.insert(name.clone(), tracked);
            }
        }
        Ok(())
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
            cluster.endpoints = match &resource.endpoints {
                EndpointSource::Static(endpoints) => endpoints.clone(),
                EndpointSource::Eds(service) => {
                    let Some(tracked) = self.endpoints.get(service) else {
                        return Err(Pending::Waiting);
                    };
                    if !tracked.answered() {
                        return Err(Pending::Waiting);
                    }
                    tracked
                        .resource()
                        .map(|e| e.endpoints.clone())
                        .unwrap_or_default()
                }
            };
            clusters.push(cluster);
        }
        Ok(MeshConfig {
            virtual_hosts,
            clusters,
        })
    }
}

fn referenced_clusters(virtual_hosts: &[config::VirtualHost]) -> BTreeSet<String> {
    virtual_hosts
        .iter()
        .flat_map(|v| &v.routes)
        .flat_map(|r| match &r.action.destination {
            Destination::Cluster(name) => vec![name.clone()],
            Destination::WeightedClusters(clusters) => {
                clusters.iter().map(|c| c.name.clone()).collect()
            }
        })
        .collect()
}
