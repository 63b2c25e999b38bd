//! A cluster's balancing configuration, read once when its balancer is made.

use std::collections::HashMap;

use super::load::Clock;
use super::peak_ewma::Ewma;
use crate::config::{
    Cluster, Endpoint, LbPolicy, Locality, MAGLEV_SLOT_BYTES, MAX_CLUSTER_HASH_BYTES,
    RING_ENTRY_BYTES,
};

/// Envoy's bounds: `maximum_ring_size` is at most 8M, and 5,000,011 is the
/// largest maglev table it accepts.
const MAX_RING_SIZE: u64 = 8 * 1024 * 1024;
const MAX_MAGLEV_TABLE_SIZE: u64 = 5_000_011;

/// Up to this many localities, an endpoint's is found by scanning the list.
const SCANNED_LOCALITIES: usize = 8;

/// What a balancer needs of its cluster's configuration: the policy within a
/// group of endpoints, the locality weights and the overprovisioning factor.
#[derive(Debug)]
pub(super) struct Policy {
    pub(super) kind: Kind,
    /// Listed localities in configuration order, with their weights.
    pub(super) localities: Box<[(Locality, u32)]>,
    /// The same by locality, when there are too many to scan; a cluster has
    /// one or a few, and 10,000 clusters should not pay for 10,000 maps.
    by_locality: Option<HashMap<Locality, u32>>,
    pub(super) overprovisioning_factor: u32,
}

/// The policy that picks within one group of healthy endpoints, with its
/// parameters.
#[derive(Debug, Clone, Copy)]
pub(super) enum Kind {
    RoundRobin,
    Random,
    LeastRequest {
        choice_count: u32,
    },
    RingHash {
        minimum_size: u64,
        maximum_size: u64,
    },
    Maglev {
        table_size: u64,
    },
    PeakEwma(Ewma),
}

impl Kind {
    /// This policy for one of `levels` priority levels that each build a
    /// ring or table, shrunk so that together they stay within
    /// [`MAX_CLUSTER_HASH_BYTES`] (to within an entry per level). Endpoints
    /// from EDS or DNS skip validation's check of that bound; sizes within
    /// it are left alone.
    pub(super) fn within_hash_budget(self, levels: usize) -> Kind {
        let levels = u64::try_from(levels.max(1)).unwrap_or(u64::MAX);
        match self {
            Kind::RingHash {
                minimum_size,
                maximum_size,
            } => {
                let share = (MAX_CLUSTER_HASH_BYTES / RING_ENTRY_BYTES / levels).max(1);
                let maximum_size = maximum_size.min(share);
                Kind::RingHash {
                    minimum_size: minimum_size.min(maximum_size),
                    maximum_size,
                }
            }
            Kind::Maglev { table_size } => {
                let share = MAX_CLUSTER_HASH_BYTES / MAGLEV_SLOT_BYTES / levels;
                if table_size <= share {
                    return self;
                }
                Kind::Maglev {
                    table_size: super::maglev::prime_at_most(share),
                }
            }
            other => other,
        }
    }
}

impl Policy {
    pub(super) fn new(cluster: &Cluster, clock: Clock) -> Self {
        let kind = match cluster.lb_policy {
            LbPolicy::RoundRobin => Kind::RoundRobin,
            LbPolicy::Random => Kind::Random,
            LbPolicy::LeastRequest { choice_count } => Kind::LeastRequest {
                choice_count: choice_count.min(crate::config::MAX_CHOICE_COUNT),
            },
            LbPolicy::RingHash {
                minimum_ring_size,
                maximum_ring_size,
            } => Kind::RingHash {
                // Validation refuses sizes out of these bounds; a cluster
                // built in code skips it, and must not make a ring or table
                // that cannot be allocated.
                minimum_size: minimum_ring_size.clamp(1, MAX_RING_SIZE),
                maximum_size: maximum_ring_size.clamp(1, MAX_RING_SIZE),
            },
            LbPolicy::Maglev { table_size } => Kind::Maglev {
                table_size: table_size.min(MAX_MAGLEV_TABLE_SIZE),
            },
            LbPolicy::PeakEwma { decay, default_rtt } => {
                Kind::PeakEwma(Ewma::new(decay, default_rtt, clock))
            }
        };
        let localities: Box<[(Locality, u32)]> = cluster
            .locality_weights
            .iter()
            .filter(|lw| lw.weight > 0)
            .map(|lw| (lw.locality.clone(), lw.weight))
            .collect();
        Policy {
            kind,
            by_locality: (localities.len() > SCANNED_LOCALITIES)
                .then(|| localities.iter().cloned().collect()),
            localities,
            overprovisioning_factor: cluster.overprovisioning_factor,
        }
    }

    /// Whether picks follow the request's hash (`ring_hash`, `maglev`).
    pub(super) fn hashes(&self) -> bool {
        matches!(self.kind, Kind::RingHash { .. } | Kind::Maglev { .. })
    }

    /// The peak-EWMA parameters, for `peak_ewma`.
    pub(super) fn ewma(&self) -> Option<&Ewma> {
        match &self.kind {
            Kind::PeakEwma(ewma) => Some(ewma),
            _ => None,
        }
    }

    /// Whether locality weights are configured.
    pub(super) fn weighs_localities(&self) -> bool {
        !self.localities.is_empty()
    }

    /// The weight of `endpoint`'s locality: 1 without locality weights, `None`
    /// when they are configured and its locality is not among them. Such an
    /// endpoint is left out altogether, from the priority health too, as gRPC
    /// leaves out a locality of weight 0.
    pub(super) fn locality_weight(&self, endpoint: &Endpoint) -> Option<u32> {
        if self.localities.is_empty() {
            return Some(1);
        }
        match &self.by_locality {
            Some(by_locality) => by_locality.get(&endpoint.locality).copied(),
            None => self
                .localities
                .iter()
                .find(|(locality, _)| *locality == endpoint.locality)
                .map(|(_, weight)| *weight),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::LocalityWeight;

    fn zone(name: &str) -> Locality {
        Locality {
            zone: name.to_owned(),
            ..Locality::default()
        }
    }

    /// A cluster weighting zones `z0..z{count}` by `index + 1`.
    fn policy(count: u32) -> Policy {
        let mut cluster = Cluster::new("c", Vec::new());
        cluster.locality_weights = (0..count)
            .map(|i| LocalityWeight {
                locality: zone(&format!("z{i}")),
                weight: i + 1,
            })
            .collect();
        Policy::new(&cluster, Clock::new())
    }

    fn weight_of(policy: &Policy, locality: &str) -> Option<u32> {
        let mut endpoint = Endpoint::new(([127, 0, 0, 1], 80).into());
        endpoint.locality = zone(locality);
        policy.locality_weight(&endpoint)
    }

    #[test]
    fn a_locality_weight_is_found_by_scan_and_by_map_alike() {
        let few = policy(SCANNED_LOCALITIES as u32);
        let many = policy(SCANNED_LOCALITIES as u32 * 4);
        assert!(few.by_locality.is_none() && many.by_locality.is_some());
        for policy in [&few, &many] {
            assert_eq!(weight_of(policy, "z0"), Some(1));
            assert_eq!(weight_of(policy, "z7"), Some(8));
            assert_eq!(weight_of(policy, "elsewhere"), None, "unlisted: left out");
        }
        assert_eq!(weight_of(&many, "z31"), Some(32));
        assert_eq!(
            weight_of(&policy(0), "anywhere"),
            Some(1),
            "no weights: all 1"
        );
    }
}
