//! `maglev`: consistent hashing with Maglev's lookup table (Envoy's `MAGLEV`),
//! built as Envoy builds it, so the same hash picks the same endpoint.
//!
//! Each endpoint, taken in order of its address string, has a permutation of
//! the table's `M` slots: it starts at `xxHash64(address, seed 0) % M` and
//! steps by `xxHash64(address, seed 1) % (M − 1) + 1`. Endpoints take turns
//! claiming their next free slot until the table is full; with weights, an
//! endpoint takes a turn only in the rounds its weight (relative to the
//! heaviest) allows, so it fills its share of the table. A pick is
//! `table[hash % M]`: O(1).
//!
//! Rounds are not walked one by one: each endpoint waits in a queue keyed by
//! the round its weight next lets it claim in (then by its place in address
//! order), so a build costs `M log n` however uneven the weights, where a
//! walk of every round spent `M × n` on one heavy endpoint among light ones.
//! The claims, and so the table, are the same as Envoy's walk makes.
//!
//! `M` must be a prime for every step to visit every slot (the configuration
//! is checked for this); a table size that is not one is rounded up to the
//! next prime rather than risk a table that never fills.
//!
//! Removing one of `n` endpoints moves its keys and, as the Maglev paper
//! measures, a small fraction of the others: the remaining endpoints'
//! permutations claim the freed slots in a different order.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use xxhash_rust::xxh64::xxh64;

use super::group::{AddressOf, Member};

/// The lookup table over one group's members.
#[derive(Debug)]
pub(super) struct Maglev {
    /// Member positions, one per slot.
    table: Box<[u32]>,
}

/// A slot not claimed yet (no group has `u32::MAX` members).
const EMPTY: u32 = u32::MAX;

struct Permutation {
    position: u32,
    slot: u64,
    skip: u64,
    weight: f64,
    target: f64,
}

impl Permutation {
    /// The first round from `from` on in which Envoy's walk lets this
    /// endpoint claim: the first whose `round × weight` reaches its target.
    fn next_round(&self, from: u64) -> u64 {
        let claims = |round: u64| (round as f64) * self.weight >= self.target;
        if claims(from) {
            return from;
        }
        // An estimate, then corrected to exactly the walk's test.
        let mut round = ((self.target / self.weight).ceil() as u64).max(from + 1);
        while round > from + 1 && claims(round - 1) {
            round -= 1;
        }
        while !claims(round) {
            round += 1;
        }
        round
    }
}

impl Maglev {
    /// The table of `table_size` slots over `members` by their weights;
    /// `None` if none has weight.
    pub(super) fn new(
        members: &[Member],
        address_of: AddressOf<'_>,
        table_size: u64,
    ) -> Option<Self> {
        let size = next_prime(table_size.max(2));
        let total: f64 = members.iter().map(|m| m.weight as f64).sum();
        if total <= 0.0 {
            return None;
        }
        let mut sorted: Vec<(String, u32, f64)> = (0u32..)
            .zip(members)
            .filter(|(_, m)| m.weight > 0)
            .map(|(position, m)| {
                let key = address_of(m.index).to_string();
                (key, position, m.weight as f64 / total)
            })
            .collect();
        sorted.sort_by(|a, b| a.0.cmp(&b.0));
        let max_weight = sorted.iter().map(|e| e.2).fold(0.0, f64::max);
        let mut permutations: Vec<Permutation> = sorted
            .into_iter()
            .map(|(key, position, weight)| Permutation {
                position,
                slot: xxh64(key.as_bytes(), 0) % size,
                skip: xxh64(key.as_bytes(), 1) % (size - 1) + 1,
                weight,
                target: 0.0,
            })
            .collect();

        let size_usize = usize::try_from(size).ok()?;
        let mut table: Vec<u32> = vec![EMPTY; size_usize];
        // Every endpoint claims in round 1; then (round, place in address
        // order) orders the claims as a walk of every round would.
        let mut queue: BinaryHeap<Reverse<(u64, usize)>> =
            (0..permutations.len()).map(|i| Reverse((1, i))).collect();
        let mut filled: usize = 0;
        while filled < size_usize {
            let Some(Reverse((round, i))) = queue.pop() else {
                break;
            };
            let p = &mut permutations[i];
            p.target += max_weight;
            while table[p.slot as usize] != EMPTY {
                p.slot = (p.slot + p.skip) % size;
            }
            table[p.slot as usize] = p.position;
            p.slot = (p.slot + p.skip) % size;
            filled += 1;
            queue.push(Reverse((p.next_round(round + 1), i)));
        }
        Some(Maglev {
            table: table.into_boxed_slice(),
        })
    }

    /// The member position of the slot `hash` falls in.
    pub(super) fn pick(&self, hash: u64) -> usize {
        self.table[(hash % self.table.len() as u64) as usize] as usize
    }
}

/// The largest prime at most `n`, or 2 below it: a table size that keeps
/// within a bound.
pub(super) fn prime_at_most(mut n: u64) -> u64 {
    while n > 2 && !is_prime(n) {
        n -= 1;
    }
    n.max(2)
}

fn next_prime(mut n: u64) -> u64 {
    while !is_prime(n) {
        n += 1;
    }
    n
}

fn is_prime(n: u64) -> bool {
    if n < 4 {
        return n >= 2;
    }
    if n.is_multiple_of(2) {
        return false;
    }
    let mut d = 3;
    while d * d <= n {
        if n.is_multiple_of(d) {
            return false;
        }
        d += 2;
    }
    true
}

#[cfg(test)]
mod tests {

    use super::*;
    use crate::balance::group::tests::{address, all_but, keys, members};

    #[test]
    fn the_same_hash_picks_the_same_endpoint_in_any_member_order() {
        let members = members(&[1; 5]);
        let table = Maglev::new(&members, &address, 65_537).unwrap();
        let mut reversed = members.clone();
        reversed.reverse();
        let again = Maglev::new(&reversed, &address, 65_537).unwrap();
        for key in keys(1000) {
            assert_eq!(
                members[table.pick(key)].index,
                reversed[again.pick(key)].index,
                "the table is built in address order"
            );
        }
    }

    #[test]
    fn the_first_slots_follow_each_endpoints_permutation() {
        let table = Maglev::new(&members(&[1]), &address, 7).unwrap();
        assert_eq!(&*table.table, &[0; 7], "one endpoint takes every slot");
        // Two endpoints: each claims its offset first, if free.
        let table = Maglev::new(&members(&[1, 1]), &address, 13).unwrap();
        let offset = |a: &str| (xxh64(a.as_bytes(), 0) % 13) as usize;
        assert_eq!(table.table[offset("10.0.0.1:80")], 0);
        if offset("10.0.0.1:80") != offset("10.0.0.2:80") {
            assert_eq!(table.table[offset("10.0.0.2:80")], 1);
        }
        let zeros = table.table.iter().filter(|p| **p == 0).count();
        assert_eq!(zeros, 7, "13 slots taken in turns: 7 and 6");
    }

    #[test]
    fn slots_and_keys_follow_weights() {
        let weights = [1, 2, 3, 4];
        let table = Maglev::new(&members(&weights), &address, 65_537).unwrap();
        for (position, weight) in weights.iter().enumerate() {
            let slots = table
                .table
                .iter()
                .filter(|p| **p as usize == position)
                .count();
            let share = slots as f64 * 100.0 / 65_537.0;
            assert!(
                (share - *weight as f64 * 10.0).abs() <= 0.5,
                "{position}: {share}"
            );
        }
        let keys = keys(20_000);
        let mut counts = [0usize; 4];
        for key in &keys {
            counts[table.pick(*key)] += 1;
        }
        for (count, weight) in counts.iter().zip(weights) {
            let share = *count as f64 * 100.0 / keys.len() as f64;
            assert!((share - weight as f64 * 10.0).abs() <= 2.0, "{counts:?}");
        }
    }

    #[test]
    fn removing_an_endpoint_moves_its_keys_and_few_others() {
        for n in [5usize, 10, 20] {
            let before_members = members(&vec![1; n]);
            let removed = n / 2;
            let after_members = all_but(&before_members, removed);
            let before = Maglev::new(&before_members, &address, 65_537).unwrap();
            let after = Maglev::new(&after_members, &address, 65_537).unwrap();
            let keys = keys(10_000);
            let (mut moved, mut others_moved, mut others) = (0, 0, 0);
            for key in &keys {
                let was = before_members[before.pick(*key)].index;
                let now = after_members[after.pick(*key)].index;
                assert_ne!(now as usize, removed);
                if was as usize != removed {
                    others += 1;
                    others_moved += usize::from(was != now);
                }
                moved += usize::from(was != now);
            }
            let share = moved as f64 / keys.len() as f64;
            assert!(share < 1.5 / n as f64, "n={n}: {moved} keys moved");
            let others_share = others_moved as f64 / others as f64;
            assert!(
                others_share < 0.05,
                "n={n}: {others_moved} of {others} other keys moved"
            );
        }
    }

    #[test]
    fn a_table_size_that_is_not_prime_is_rounded_up_to_one() {
        assert_eq!(next_prime(65_536), 65_537);
        assert_eq!(next_prime(2), 2);
        assert_eq!(
            Maglev::new(&members(&[1, 1]), &address, 10)
                .unwrap()
                .table
                .len(),
            11
        );
        assert!(is_prime(5_000_011) && !is_prime(1) && !is_prime(9));
    }

    /// Envoy's walk of every round, every endpoint each round: the reference.
    fn walked(members: &[Member], address_of: AddressOf<'_>, table_size: u64) -> Vec<u32> {
        let size = next_prime(table_size.max(2));
        let total: f64 = members.iter().map(|m| m.weight as f64).sum();
        let mut sorted: Vec<(String, u32, f64)> = (0u32..)
            .zip(members)
            .filter(|(_, m)| m.weight > 0)
            .map(|(position, m)| {
                (
                    address_of(m.index).to_string(),
                    position,
                    m.weight as f64 / total,
                )
            })
            .collect();
        sorted.sort_by(|a, b| a.0.cmp(&b.0));
        let max_weight = sorted.iter().map(|e| e.2).fold(0.0, f64::max);
        let mut permutations: Vec<Permutation> = sorted
            .into_iter()
            .map(|(key, position, weight)| Permutation {
                position,
                slot: xxh64(key.as_bytes(), 0) % size,
                skip: xxh64(key.as_bytes(), 1) % (size - 1) + 1,
                weight,
                target: 0.0,
            })
            .collect();
        let mut table = vec![EMPTY; size as usize];
        let (mut filled, mut round) = (0, 1u64);
        while filled < table.len() {
            for p in permutations.iter_mut() {
                if filled == table.len() {
                    break;
                }
                if (round as f64) * p.weight < p.target {
                    continue;
                }
                p.target += max_weight;
                while table[p.slot as usize] != EMPTY {
                    p.slot = (p.slot + p.skip) % size;
                }
                table[p.slot as usize] = p.position;
                p.slot = (p.slot + p.skip) % size;
                filled += 1;
            }
            round += 1;
        }
        table
    }

    /// An address for each of up to 65,536 members.
    fn wide_address(index: u32) -> std::net::SocketAddr {
        std::net::SocketAddr::from(([10, 1, (index >> 8) as u8, index as u8], 80))
    }

    #[test]
    fn the_table_is_the_one_envoys_walk_of_every_round_builds() {
        use rand::{RngExt, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(11);
        for round in 0..60 {
            let n = rng.random_range(1..30);
            let top = [2, 5, 100, 1_000_000][round % 4];
            let weights: Vec<u64> = (0..n).map(|_| rng.random_range(1..top)).collect();
            let members = members(&weights);
            let table = Maglev::new(&members, &wide_address, 1031).unwrap();
            assert_eq!(
                &*table.table,
                &walked(&members, &wide_address, 1031)[..],
                "{weights:?}"
            );
        }
    }

    #[test]
    fn one_heavy_endpoint_among_light_ones_builds_in_m_log_n() {
        // One of weight 2^32 − 1 and 999 of weight 1: 2.8 s (release) when
        // every round visited every endpoint, almost always to skip it. With
        // 4,999 of weight 1, that walk takes 2 s in a debug build.
        let mut weights = vec![1u64; 5000];
        weights[0] = u64::from(u32::MAX);
        let members = members(&weights);
        let start = std::time::Instant::now();
        let table = Maglev::new(&members, &wide_address, 65_537).unwrap();
        let took = start.elapsed();
        eprintln!("maglev, one heavy among 5,000: {took:?}");
        assert!(took < std::time::Duration::from_millis(500), "{took:?}");
        let light = table.table.iter().filter(|p| **p != 0).count();
        assert_eq!(
            light, 4999,
            "each light endpoint claims its first round's slot"
        );
    }

    #[test]
    fn no_weight_no_table() {
        assert!(Maglev::new(&[], &address, 65_537).is_none());
        assert!(Maglev::new(&members(&[0]), &address, 65_537).is_none());
    }
}
