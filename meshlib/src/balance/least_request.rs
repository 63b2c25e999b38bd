//! `least_request`: the fewest requests in flight among `choice_count`
//! endpoints drawn at random (Envoy's `LEAST_REQUEST`, gRPC's A48).
//!
//! Candidates are drawn with replacement, as both Envoy and gRPC draw them.
//! With equal weights this is exactly their power of `choice_count` choices.
//! With unequal weights Envoy switches to an earliest-deadline-first schedule
//! over `weight / (active + 1)` and gRPC ignores weights; here candidates are
//! drawn in proportion to weight and compared on `active / weight`, so idle
//! endpoints share traffic by weight and busy ones are compared by load per
//! unit of weight: the same aim as Envoy's, keeping one lock-free pick for
//! every case (an EDF schedule is a shared, mutable heap).

use rand::Rng;

use super::group::Member;
use super::sampler::WeightedIndex;

/// The `least_request` picker over one group's members.
#[derive(Debug)]
pub(super) struct LeastRequest {
    candidates: WeightedIndex,
    choices: u32,
}

impl LeastRequest {
    /// The picker over `members` comparing `choice_count` candidates (at
    /// least one); `None` if no member has weight.
    pub(super) fn new(members: &[Member], choice_count: u32) -> Option<Self> {
        Some(LeastRequest {
            candidates: WeightedIndex::new(members.iter().map(|m| m.weight))?,
            choices: choice_count.max(1),
        })
    }

    /// The position in `members` of the least loaded candidate; the first
    /// drawn among equals.
    pub(super) fn pick<R: Rng + ?Sized>(&self, members: &[Member], rng: &mut R) -> usize {
        let mut best = self.candidates.sample(rng);
        for _ in 1..self.choices {
            let candidate = self.candidates.sample(rng);
            if less_loaded(&members[candidate], &members[best]) {
                best = candidate;
            }
        }
        best
    }
}

/// Whether `a` has fewer requests in flight per unit of weight than `b`.
fn less_loaded(a: &Member, b: &Member) -> bool {
    // active_a / weight_a < active_b / weight_b, without dividing; u128 as
    // hashing groups' weights may use all 64 bits.
    u128::from(a.load.active()) * u128::from(b.weight)
        < u128::from(b.load.active()) * u128::from(a.weight)
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    use super::*;
    use crate::balance::group::tests::members;

    fn shares(picker: &LeastRequest, members: &[Member], draws: usize) -> Vec<f64> {
        let mut rng = StdRng::seed_from_u64(11);
        let mut counts = vec![0usize; members.len()];
        for _ in 0..draws {
            counts[picker.pick(members, &mut rng)] += 1;
        }
        counts
            .iter()
            .map(|c| *c as f64 * 100.0 / draws as f64)
            .collect()
    }

    #[test]
    fn idle_endpoints_share_by_weight() {
        let members = members(&[1, 1, 2]);
        let picker = LeastRequest::new(&members, 2).unwrap();
        let s = shares(&picker, &members, 40_000);
        for (share, expected) in s.iter().zip([25.0, 25.0, 50.0]) {
            assert!((share - expected).abs() <= 2.0, "{s:?}");
        }
    }

    #[test]
    fn the_candidate_with_fewer_requests_in_flight_wins() {
        let members = members(&[1, 1]);
        let picker = LeastRequest::new(&members, 2).unwrap();
        let _busy = members[0].load.start(None);
        // The busy endpoint is picked only when both draws are it: 1/4.
        let s = shares(&picker, &members, 40_000);
        assert!((s[0] - 25.0).abs() <= 2.0, "{s:?}");
        // Five choices: only when all five are it, 1/32.
        let picker = LeastRequest::new(&members, 5).unwrap();
        let s = shares(&picker, &members, 40_000);
        assert!((s[0] - 100.0 / 32.0).abs() <= 1.0, "{s:?}");
    }

    #[test]
    fn load_is_compared_per_unit_of_weight() {
        let members = members(&[1, 4]);
        let picker = LeastRequest::new(&members, 10).unwrap();
        // 3 in flight on weight 4 is less loaded than 1 on weight 1.
        let _light = members[0].load.start(None);
        let _heavy: Vec<_> = (0..3).map(|_| members[1].load.start(None)).collect();
        assert!(less_loaded(&members[1], &members[0]));
        let s = shares(&picker, &members, 10_000);
        assert!(s[1] > 99.0, "{s:?}");
    }
}
