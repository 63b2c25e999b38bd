//! A group of healthy endpoints a policy picks among: all of a priority level,
//! or one locality of it when localities are weighted.

use std::net::SocketAddr;
use std::sync::Arc;

use rand::Rng;

use super::least_request::LeastRequest;
use super::load::EndpointLoad;
use super::maglev::Maglev;
use super::peak_ewma::PeakEwma;
use super::policy::Kind;
use super::ring_hash::Ring;
use super::sampler::WeightedIndex;
use super::schedule::RoundRobin;

/// One endpoint of a group.
#[derive(Debug, Clone)]
pub(super) struct Member {
    /// Its index in the cluster's endpoint set.
    pub(super) index: u32,
    /// Its weight within the group, at least 1.
    pub(super) weight: u64,
    pub(super) load: Arc<EndpointLoad>,
}

/// A member's address by its endpoint index: what the hashing policies key it
/// by. Looked up while a group is built rather than kept in each member.
pub(super) type AddressOf<'a> = &'a dyn Fn(u32) -> SocketAddr;

/// Healthy endpoints and the policy's picker over them.
#[derive(Debug)]
pub(super) struct Group {
    members: Box<[Member]>,
    picker: Picker,
}

#[derive(Debug)]
enum Picker {
    RoundRobin(RoundRobin),
    Random(WeightedIndex),
    LeastRequest(LeastRequest),
    RingHash(Ring),
    Maglev(Maglev),
    PeakEwma(PeakEwma),
}

impl Group {
    /// The group of `members` under policy `kind`; a round robin resumes at
    /// `turn`; the hashing policies key each member by its address, found by
    /// its index with `address_of`. `None` if there is no member to pick.
    pub(super) fn new(
        kind: &Kind,
        members: Vec<Member>,
        turn: usize,
        address_of: AddressOf<'_>,
    ) -> Option<Self> {
        let picker = match *kind {
            Kind::RoundRobin => {
                let weights: Vec<u32> = members
                    .iter()
                    .map(|m| u32::try_from(m.weight).unwrap_or(u32::MAX))
                    .collect();
                Picker::RoundRobin(RoundRobin::new(&weights, turn)?)
            }
            Kind::Random => Picker::Random(WeightedIndex::new(members.iter().map(|m| m.weight))?),
            Kind::LeastRequest { choice_count } => {
                Picker::LeastRequest(LeastRequest::new(&members, choice_count)?)
            }
            Kind::RingHash {
                minimum_size,
                maximum_size,
            } => Picker::RingHash(Ring::new(&members, address_of, minimum_size, maximum_size)?),
            Kind::Maglev { table_size } => {
                Picker::Maglev(Maglev::new(&members, address_of, table_size)?)
            }
            Kind::PeakEwma(ewma) => Picker::PeakEwma(PeakEwma::new(&members, ewma)?),
        };
        Some(Group {
            members: members.into_boxed_slice(),
            picker,
        })
    }

    /// The endpoint index of the member picked for a request of `hash` (read
    /// by the hashing policies only).
    pub(super) fn pick<R: Rng + ?Sized>(&self, hash: u64, rng: &mut R) -> u32 {
        let position = match &self.picker {
            Picker::RoundRobin(rr) => rr.pick(),
            Picker::Random(sampler) => sampler.sample(rng),
            Picker::LeastRequest(lr) => lr.pick(&self.members, rng),
            Picker::RingHash(ring) => ring.pick(hash),
            Picker::Maglev(table) => table.pick(hash),
            Picker::PeakEwma(ewma) => ewma.pick(&self.members, rng),
        };
        self.members[position].index
    }

    /// The turn a round robin has reached, to resume from after an update.
    pub(super) fn turn(&self) -> usize {
        match &self.picker {
            Picker::RoundRobin(rr) => rr.turn(),
            _ => 0,
        }
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    /// Members `10.0.0.1:80`, `10.0.0.2:80`, … of these weights, idle.
    pub(in crate::balance) fn members(weights: &[u64]) -> Vec<Member> {
        (0u32..)
            .zip(weights)
            .map(|(index, weight)| Member {
                index,
                weight: *weight,
                load: Arc::default(),
            })
            .collect()
    }

    /// The address of the member of endpoint index `index` made by `members`.
    pub(in crate::balance) fn address(index: u32) -> SocketAddr {
        SocketAddr::from(([10, 0, 0, index as u8 + 1], 80))
    }

    /// `members` without the one whose endpoint index is `removed`.
    pub(in crate::balance) fn all_but(members: &[Member], removed: usize) -> Vec<Member> {
        members
            .iter()
            .filter(|m| m.index as usize != removed)
            .cloned()
            .collect()
    }

    /// `n` request hashes, the same ones every run.
    pub(in crate::balance) fn keys(n: usize) -> Vec<u64> {
        use rand::{RngExt, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(42);
        (0..n).map(|_| rng.random()).collect()
    }

    #[test]
    fn picks_return_endpoint_indices_not_positions() {
        let mut members = members(&[1, 1]);
        members[0].index = 7;
        members[1].index = 9;
        let group = Group::new(&Kind::RoundRobin, members, 0, &address).unwrap();
        let mut rng = rand::rng();
        assert_eq!(group.pick(0, &mut rng), 7);
        assert_eq!(group.pick(0, &mut rng), 9);
        assert_eq!(group.turn(), 2);
    }

    #[test]
    fn no_member_no_group() {
        for kind in [
            Kind::RoundRobin,
            Kind::Random,
            Kind::LeastRequest { choice_count: 2 },
            Kind::RingHash {
                minimum_size: 1024,
                maximum_size: 8 << 20,
            },
            Kind::Maglev { table_size: 65_537 },
        ] {
            assert!(
                Group::new(&kind, Vec::new(), 0, &address).is_none(),
                "{kind:?}"
            );
        }
    }
}
