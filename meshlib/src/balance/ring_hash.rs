//! `ring_hash`: consistent hashing on a ring (Envoy's `RING_HASH`, gRPC's A42),
//! built exactly as both build it, so a request hash picks the same endpoint
//! here, in Envoy and in gRPC for the same endpoint set.
//!
//! Weights are normalized to sum to one; the ring is scaled so that the
//! lightest endpoint gets `ceil(min_weight × minimum_ring_size)` entries,
//! capped at `maximum_ring_size` in all; walking the endpoints in order,
//! each contributes entries up to its running share of that scale, entry `i`
//! of the endpoint at `address` being at `xxHash64("{address}_{i}", seed 0)`.
//! A request takes the first entry whose hash is at or above its own,
//! wrapping to the first. The ring is built when the endpoint set changes,
//! never per request, and a pick is a binary search.
//!
//! Removing one of `n` endpoints moves its keys, and also some others: the
//! ring's size stays near `minimum_ring_size`, so each remaining endpoint
//! gains entries, and a key moves when one of those new entries lands just
//! before it. A key never moves to an entry that was on the ring before. In
//! all, about `2/n` of the keys move (this is so in Envoy and gRPC too).

use std::fmt::Write;

use xxhash_rust::xxh64::xxh64;

use super::group::{AddressOf, Member};

/// The ring over one group's members.
#[derive(Debug)]
pub(super) struct Ring {
    /// Entry hashes, ascending.
    hashes: Box<[u64]>,
    /// The member position of each entry.
    positions: Box<[u32]>,
}

impl Ring {
    /// The ring over `members` by their weights, each keyed by its address;
    /// `None` if none has weight.
    pub(super) fn new(
        members: &[Member],
        address_of: AddressOf<'_>,
        minimum_size: u64,
        maximum_size: u64,
    ) -> Option<Self> {
        let total: f64 = members.iter().map(|m| m.weight as f64).sum();
        if total <= 0.0 {
            return None;
        }
        // Normalized first and scaled after, in this order, as Envoy and gRPC
        // compute it: the targets land on whole numbers, so the rounding of
        // `scale * w / total` would give some members one entry more or less.
        let normalized: Vec<f64> = members.iter().map(|m| m.weight as f64 / total).collect();
        let min_weight = normalized
            .iter()
            .copied()
            .filter(|w| *w > 0.0)
            .fold(f64::INFINITY, f64::min);
        let scale = ((min_weight * minimum_size.max(1) as f64).ceil() / min_weight)
            .min(maximum_size.max(1) as f64);

        let mut entries: Vec<(u64, u32)> = Vec::with_capacity(scale.ceil() as usize);
        let mut key = String::new();
        let (mut current, mut target) = (0.0f64, 0.0f64);
        for ((position, member), weight) in (0u32..).zip(members).zip(normalized) {
            target += scale * weight;
            key.clear();
            // Writing to a String cannot fail.
            let _ = write!(key, "{}_", address_of(member.index));
            let prefix = key.len();
            let mut i: u64 = 0;
            while current < target {
                key.truncate(prefix);
                let _ = write!(key, "{i}");
                entries.push((xxh64(key.as_bytes(), 0), position));
                i += 1;
                current += 1.0;
            }
        }
        if entries.is_empty() {
            return None;
        }
        entries.sort_unstable();
        let (hashes, positions) = entries.into_iter().unzip::<_, _, Vec<_>, Vec<_>>();
        Some(Ring {
            hashes: hashes.into_boxed_slice(),
            positions: positions.into_boxed_slice(),
        })
    }

    /// The member position of the first entry at or after `hash`.
    pub(super) fn pick(&self, hash: u64) -> usize {
        let entry = self.hashes.partition_point(|&h| h < hash);
        let entry = if entry == self.hashes.len() { 0 } else { entry };
        self.positions[entry] as usize
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.hashes.len()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;
    use crate::balance::group::tests::{address, all_but, keys, members};

    #[test]
    fn the_same_hash_picks_the_same_endpoint() {
        let members = members(&[1; 5]);
        let ring = Ring::new(&members, &address, 1024, 8 << 20).unwrap();
        let again = Ring::new(&members, &address, 1024, 8 << 20).unwrap();
        for key in keys(1000) {
            assert_eq!(
                ring.pick(key),
                again.pick(key),
                "rebuilt, the ring is the same"
            );
        }
    }

    #[test]
    fn entries_per_member_round_as_envoys_normalized_weights_do() {
        // Weights 1 and 2, 25 times over, at the default minimum of 1024:
        // Envoy's and gRPC's `scale * (w / total)` give the first member 15
        // entries and 1051 in all; `(scale * w) / total` would give 14 and
        // 1050, and keys near the missing entry would land elsewhere.
        let weights: Vec<u64> = [1, 2].repeat(25);
        let ring = Ring::new(&members(&weights), &address, 1024, 8 << 20).unwrap();
        assert_eq!(ring.len(), 1051);
        let per_member = |p: u32| ring.positions.iter().filter(|q| **q == p).count();
        assert_eq!((per_member(0), per_member(1), per_member(2)), (15, 28, 14));
    }

    #[test]
    fn entries_are_envoys_and_a_hash_takes_the_next_one_wrapping() {
        let members = members(&[1, 1]);
        let ring = Ring::new(&members, &address, 4, 8 << 20).unwrap();
        // min weight 1/2: ceil(1/2 × 4) / (1/2) = 4 entries, two each.
        assert_eq!(ring.len(), 4);
        let mut expected: Vec<(u64, usize)> = Vec::new();
        for (p, member) in members.iter().enumerate() {
            for i in 0..2 {
                let key = format!("{}_{i}", address(member.index));
                expected.push((xxh64(key.as_bytes(), 0), p));
            }
        }
        expected.sort();
        assert_eq!(
            &*ring.hashes,
            expected.iter().map(|e| e.0).collect::<Vec<_>>()
        );
        for (hash, position) in &expected {
            assert_eq!(
                ring.pick(*hash),
                *position,
                "a hash equal to an entry's takes it"
            );
            assert_eq!(ring.pick(hash.wrapping_sub(1)), *position);
        }
        let (last, _) = expected[3];
        if last < u64::MAX {
            assert_eq!(
                ring.pick(last + 1),
                expected[0].1,
                "past the last entry, the first"
            );
        }
    }

    #[test]
    fn ring_size_follows_the_lightest_weight_and_the_maximum() {
        let ring = Ring::new(&members(&[1, 3]), &address, 1024, 8 << 20).unwrap();
        // min weight 1/4: ceil(256) × 4 = 1024 entries: 256 and 768.
        assert_eq!(ring.len(), 1024);
        assert_eq!(ring.positions.iter().filter(|p| **p == 0).count(), 256);
        // Capped at 2000, the targets add up to 2000.0000000000002 in
        // doubles, so the walk makes one entry more: Envoy's and gRPC's rings,
        // which add the same doubles, have 2001 entries too.
        let capped = Ring::new(&members(&[1, 1000]), &address, 1024, 2000).unwrap();
        assert_eq!(capped.len(), 2001);
    }

    #[test]
    fn keys_spread_in_proportion_to_weight() {
        let weights = [1, 2, 3, 4];
        let ring = Ring::new(&members(&weights), &address, 100_000, 8 << 20).unwrap();
        let keys = keys(20_000);
        let mut counts = [0usize; 4];
        for key in &keys {
            counts[ring.pick(*key)] += 1;
        }
        for (count, weight) in counts.iter().zip(weights) {
            let share = *count as f64 * 100.0 / keys.len() as f64;
            let expected = weight as f64 * 10.0;
            assert!((share - expected).abs() <= 2.0, "{counts:?}");
        }
    }

    #[test]
    fn removing_an_endpoint_moves_its_keys_and_keys_onto_new_entries_only() {
        for n in [5usize, 10, 20] {
            let before_members = members(&vec![1; n]);
            let removed = n / 2;
            let after_members = all_but(&before_members, removed);
            let before = Ring::new(&before_members, &address, 1024, 8 << 20).unwrap();
            let after = Ring::new(&after_members, &address, 1024, 8 << 20).unwrap();
            let old_entries: HashSet<u64> = before.hashes.iter().copied().collect();

            let keys = keys(10_000);
            let mut moved = 0;
            for key in &keys {
                let was = before_members[before.pick(*key)].index;
                let now = after_members[after.pick(*key)].index;
                assert_ne!(now as usize, removed);
                if was == now {
                    continue;
                }
                moved += 1;
                if was as usize != removed {
                    // It moved because a remaining endpoint gained an entry
                    // just before it, never to an entry that was there.
                    let entry = after.hashes.partition_point(|h| h < key) % after.hashes.len();
                    assert!(
                        !old_entries.contains(&after.hashes[entry]),
                        "n={n} key={key}"
                    );
                }
            }
            let share = moved as f64 / keys.len() as f64;
            assert!(
                share < 2.5 / n as f64,
                "n={n}: {moved} of {} keys moved",
                keys.len()
            );
        }
    }

    #[test]
    fn no_weight_no_ring() {
        assert!(Ring::new(&[], &address, 1024, 8 << 20).is_none());
        assert!(Ring::new(&members(&[0, 0]), &address, 1024, 8 << 20).is_none());
    }
}
