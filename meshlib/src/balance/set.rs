//! One snapshot of a cluster's endpoints, ready to pick from: each endpoint's
//! client and load, its priority levels with their share of the traffic, the
//! weighted localities within a level, and a policy's picker per group.
//! Built off the request path whenever the endpoints change, and swapped in
//! whole.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Weak};

use rand::RngExt;

use super::connectivity::{Connectivity, Probes};
use super::group::{Group, Member};
use super::load::EndpointLoad;
use super::locality::effective_weight;
use super::policy::{Kind, Policy};
use super::priority::{LevelHealth, loads};
use super::sampler::WeightedIndex;
use crate::config::{Endpoint, Locality};

/// What is kept of an endpoint across updates: its client (and so its pooled
/// connections), its load and its reachability.
pub(super) struct EndpointState<C> {
    pub(super) client: Arc<C>,
    pub(super) load: Arc<EndpointLoad>,
    pub(super) connectivity: Arc<Connectivity>,
}

impl<C> EndpointState<C> {
    /// Whether `endpoint`, whose state this is, may take traffic now: healthy
    /// or of unknown health by EDS, of some weight, and not failing to
    /// connect.
    fn takes_traffic(&self, endpoint: &Endpoint) -> bool {
        endpoint.health.takes_traffic() && endpoint.weight > 0 && !self.connectivity.failing()
    }
}

impl<C> Clone for EndpointState<C> {
    fn clone(&self) -> Self {
        EndpointState {
            client: self.client.clone(),
            load: self.load.clone(),
            connectivity: self.connectivity.clone(),
        }
    }
}

/// A cluster's endpoints and how a request picks one.
pub(super) struct EndpointSet<C> {
    /// The endpoints as published: one list shared with their source (the
    /// xDS cache, a discovery feed), not a copy per balancer.
    pub(super) endpoints: Arc<[Endpoint]>,
    /// Each endpoint's state, by its index in `endpoints`.
    pub(super) states: Box<[EndpointState<C>]>,
    /// The levels that take traffic, in priority order.
    levels: Box<[Level]>,
}

/// A priority level that takes some traffic.
#[derive(Debug)]
struct Level {
    priority: u32,
    /// A pick of `0..100` below this, and not below the previous level's,
    /// lands here: the cumulative priority load.
    below: u32,
    groups: Groups,
}

#[derive(Debug)]
enum Groups {
    /// One group of all the level's healthy endpoints.
    All(Group),
    /// One group per locality with healthy endpoints, each with the index of
    /// its locality in [`Policy::localities`], picked by effective weight.
    Localities {
        by_weight: WeightedIndex,
        groups: Box<[(usize, Group)]>,
    },
}

impl<C> EndpointSet<C> {
    /// The set for `endpoints` under `policy`. Endpoints whose address was in
    /// `previous` keep their client, load and reachability; `client` makes
    /// the others' clients, and `balancer` is told when their reachability
    /// changes.
    pub(super) fn build(
        policy: &Policy,
        endpoints: Arc<[Endpoint]>,
        previous: Option<&EndpointSet<C>>,
        balancer: &Weak<dyn Probes>,
        mut client: impl FnMut(SocketAddr) -> C,
    ) -> Self {
        let kept: HashMap<SocketAddr, &EndpointState<C>> = previous
            .map(|p| {
                let addresses = p.endpoints.iter().map(|e| e.address);
                addresses.zip(p.states.iter()).collect()
            })
            .unwrap_or_default();
        let states = endpoints
            .iter()
            .map(|endpoint| {
                let address = endpoint.address;
                match kept.get(&address) {
                    Some(old) => (*old).clone(),
                    None => EndpointState {
                        client: Arc::new(client(address)),
                        load: Arc::default(),
                        connectivity: Arc::new(Connectivity::new(balancer.clone())),
                    },
                }
            })
            .collect();
        Self::levels(policy, endpoints, states, previous)
    }

    /// The same endpoints, their priority loads and groups computed again
    /// from their reachability now.
    pub(super) fn rebuilt(&self, policy: &Policy) -> Self {
        Self::levels(
            policy,
            self.endpoints.clone(),
            self.states.clone(),
            Some(self),
        )
    }

    fn levels(
        policy: &Policy,
        endpoints: Arc<[Endpoint]>,
        states: Box<[EndpointState<C>]>,
        previous: Option<&EndpointSet<C>>,
    ) -> Self {
        // Read once, so the priority health and the groups agree while a
        // probe flips an endpoint's reachability.
        let live: Vec<bool> = states
            .iter()
            .zip(endpoints.iter())
            .map(|(state, endpoint)| state.takes_traffic(endpoint))
            .collect();
        // Endpoints of unlisted localities are left out (see `Policy::locality_weight`).
        let mut by_priority: BTreeMap<u32, Vec<u32>> = BTreeMap::new();
        for (index, endpoint) in (0u32..).zip(endpoints.iter()) {
            if policy.locality_weight(endpoint).is_some() {
                by_priority
                    .entry(endpoint.priority)
                    .or_default()
                    .push(index);
            }
        }
        let health: Vec<LevelHealth> = by_priority
            .values()
            .map(|indices| LevelHealth {
                healthy: indices.iter().filter(|i| live[**i as usize]).count() as u64,
                total: indices.len() as u64,
            })
            .collect();
        let loads = loads(&health, policy.overprovisioning_factor).unwrap_or_default();

        // Each level that takes traffic builds its own ring or table: their
        // sizes share one bound.
        let kind = policy
            .kind
            .within_hash_budget(loads.iter().filter(|load| **load > 0).count());
        let mut below = 0;
        let levels = by_priority
            .iter()
            .zip(loads)
            .filter(|(_, load)| *load > 0)
            .filter_map(|((priority, indices), load)| {
                let members = Members {
                    endpoints: &endpoints,
                    states: &states,
                    live: &live,
                };
                let groups = Groups::build(policy, &kind, *priority, indices, members, previous)?;
                below += load;
                Some(Level {
                    priority: *priority,
                    below,
                    groups,
                })
            })
            .collect();
        EndpointSet {
            endpoints,
            states,
            levels,
        }
    }

    /// Whether any endpoint takes traffic: some level has a healthy one.
    pub(super) fn takes_traffic(&self) -> bool {
        !self.levels.is_empty()
    }

    /// The index of the endpoint for a request of `hash` (random when `None`
    /// and the policy hashes); `None` if no endpoint takes traffic.
    pub(super) fn pick(&self, policy: &Policy, hash: Option<u64>) -> Option<usize> {
        let mut rng = rand::rng();
        let hash = match hash {
            Some(hash) if policy.hashes() => hash,
            None if policy.hashes() => rng.random(),
            _ => 0,
        };
        let level = match &*self.levels {
            [] => return None,
            [only] => only,
            levels => {
                // Hashing policies pick the priority by the hash too, as
                // Envoy does, so a key keeps its level while loads stay.
                let p = if policy.hashes() {
                    (hash % 100) as u32
                } else {
                    rng.random_range(0..100)
                };
                levels
                    .iter()
                    .find(|level| p < level.below)
                    .or(levels.last())?
            }
        };
        let group = match &level.groups {
            Groups::All(group) => group,
            Groups::Localities { by_weight, groups } => &groups[by_weight.sample(&mut rng)].1,
        };
        Some(group.pick(hash, &mut rng) as usize)
    }

    /// The turn the round robin of `priority` (and locality, by its index in
    /// [`Policy::localities`]) had reached.
    fn turn(&self, priority: u32, locality: Option<usize>) -> usize {
        let Some(level) = self.levels.iter().find(|l| l.priority == priority) else {
            return 0;
        };
        match (&level.groups, locality) {
            (Groups::All(group), None) => group.turn(),
            (Groups::Localities { groups, .. }, Some(locality)) => groups
                .iter()
                .find(|(l, _)| *l == locality)
                .map_or(0, |(_, group)| group.turn()),
            _ => 0,
        }
    }

    /// Each priority's share of the traffic in percent, for tests and
    /// diagnostics.
    #[cfg(test)]
    pub(super) fn priority_loads(&self) -> Vec<(u32, u32)> {
        let mut previous = 0;
        self.levels
            .iter()
            .map(|level| {
                let load = level.below - previous;
                previous = level.below;
                (level.priority, load)
            })
            .collect()
    }
}

/// The endpoints a level's groups are made of, by index.
#[derive(Clone, Copy)]
struct Members<'a, C> {
    endpoints: &'a [Endpoint],
    states: &'a [EndpointState<C>],
    /// Whether each takes traffic, read once for the whole build.
    live: &'a [bool],
}

impl Groups {
    /// The groups of the level `priority` made of the endpoints at `indices`;
    /// `None` if none of them takes traffic.
    /// `kind` is the policy's, sized for the number of levels.
    fn build<C>(
        policy: &Policy,
        kind: &Kind,
        priority: u32,
        indices: &[u32],
        Members {
            endpoints,
            states,
            live,
        }: Members<'_, C>,
        previous: Option<&EndpointSet<C>>,
    ) -> Option<Self> {
        let member = |index: u32, weight: u64| Member {
            index,
            weight,
            load: states[index as usize].load.clone(),
        };
        let address_of = |index: u32| endpoints[index as usize].address;
        let turn = |locality| previous.map_or(0, |p| p.turn(priority, locality));

        if policy.hashes() || !policy.weighs_localities() {
            // Hashing policies get one ring or table per level, each endpoint
            // weighted by its locality's weight too, as gRPC builds them.
            let members = indices
                .iter()
                .copied()
                .filter(|i| live[*i as usize])
                .map(|i| {
                    let endpoint = &endpoints[i as usize];
                    let locality = policy.locality_weight(endpoint).unwrap_or(0);
                    member(i, u64::from(endpoint.weight) * u64::from(locality))
                })
                .collect();
            return Some(Groups::All(Group::new(
                kind,
                members,
                turn(None),
                &address_of,
            )?));
        }

        let mut by_locality: HashMap<&Locality, (u64, Vec<Member>)> = HashMap::new();
        for &i in indices {
            let endpoint = &endpoints[i as usize];
            let (total, members) = by_locality.entry(&endpoint.locality).or_default();
            *total += 1;
            if live[i as usize] {
                members.push(member(i, u64::from(endpoint.weight)));
            }
        }
        let mut weights = Vec::new();
        let mut groups = Vec::new();
        for (position, (locality, weight)) in policy.localities.iter().enumerate() {
            let Some((total, members)) = by_locality.remove(locality) else {
                continue;
            };
            let healthy = members.len() as u64;
            let Some(group) = Group::new(kind, members, turn(Some(position)), &address_of) else {
                continue;
            };
            weights.push(effective_weight(
                *weight,
                healthy,
                total,
                policy.overprovisioning_factor,
            ));
            groups.push((position, group));
        }
        Some(Groups::Localities {
            by_weight: WeightedIndex::new(weights)?,
            groups: groups.into_boxed_slice(),
        })
    }
}
