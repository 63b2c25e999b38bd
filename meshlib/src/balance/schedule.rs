//! `round_robin`: the schedule of which endpoint takes each turn, and the
//! counter that walks it.

use std::sync::atomic::{AtomicUsize, Ordering};

/// Smooth weighted round robin over one group's members: a precomputed
/// schedule walked by one atomic counter, so a pick is one `fetch_add`.
#[derive(Debug)]
pub(super) struct RoundRobin {
    /// Positions in the group, one per turn.
    schedule: Box<[u32]>,
    next: AtomicUsize,
}

impl RoundRobin {
    /// The schedule for `weights`, its first pick at turn `start` (the turn
    /// the group's previous schedule had reached, so an endpoint update does
    /// not send the next request to the first endpoint again); `None` if no
    /// weight is above zero.
    pub(super) fn new(weights: &[u32], start: usize) -> Option<Self> {
        let schedule = smooth_weighted(weights);
        if schedule.is_empty() {
            return None;
        }
        Some(RoundRobin {
            schedule: schedule.into_boxed_slice(),
            next: AtomicUsize::new(start),
        })
    }

    /// The position in the group of the member whose turn it is.
    pub(super) fn pick(&self) -> usize {
        let turn = self.next.fetch_add(1, Ordering::Relaxed) % self.schedule.len();
        self.schedule[turn] as usize
    }

    /// The turn the next pick takes.
    pub(super) fn turn(&self) -> usize {
        self.next.load(Ordering::Relaxed)
    }
}

/// Turns beyond this are scaled down (weights kept in proportion, each
/// endpoint with weight at least one turn), bounding memory and rebuild time.
const MAX_TURNS: u64 = 4096;

/// Smooth weighted round robin (as nginx does it): over one cycle, endpoint `i`
/// takes `weights[i]` turns (after dividing all weights by their greatest common
/// divisor), spread out rather than consecutive. Zero-weight endpoints get no
/// turn. Built off the request path, on each endpoint change.
///
/// nginx gives each turn to the endpoint whose credit (`turn × weight −
/// total × turns taken`) is highest, the first one on a tie, which costs
/// every endpoint per turn: quadratic. Endpoints of one weight, though, take
/// their turns in order, one each, so only the next of each weight competes:
/// the same schedule at a cost of turns × distinct weights, and scaled
/// weights (at most [`MAX_TURNS`] turns beyond one per endpoint) have fewer
/// than a hundred distinct values.
pub(super) fn smooth_weighted(weights: &[u32]) -> Vec<u32> {
    let divisor = weights.iter().copied().filter(|w| *w > 0).fold(0, gcd);
    if divisor == 0 {
        return Vec::new();
    }
    let mut weights: Vec<u64> = weights.iter().map(|w| u64::from(w / divisor)).collect();
    let total: u64 = weights.iter().sum();
    if total > MAX_TURNS {
        for w in weights.iter_mut().filter(|w| **w > 0) {
            *w = (*w * MAX_TURNS / total).max(1);
        }
    }
    let mut classes = WeightClass::of(&weights);
    let total: u64 = weights.iter().sum();
    let mut schedule = Vec::with_capacity(usize::try_from(total).unwrap_or(0));
    for turn in 1..=total {
        let credit = |class: &WeightClass| class.next_credit(turn, total);
        let Some(best) = classes
            .iter_mut()
            .max_by_key(|c| (credit(c), std::cmp::Reverse(c.next_member())))
        else {
            break;
        };
        schedule.push(best.next_member());
        best.taken += 1;
    }
    schedule
}

/// The endpoints of one weight, in order, and how many turns they have
/// taken between them: they take turns one after another, so the next to go
/// is the one after the last that went.
#[derive(Debug)]
struct WeightClass {
    weight: u64,
    members: Vec<u32>,
    taken: u64,
}

impl WeightClass {
    /// The endpoints of each weight above zero.
    fn of(weights: &[u64]) -> Vec<WeightClass> {
        let mut by_weight: std::collections::BTreeMap<u64, Vec<u32>> = Default::default();
        for (i, w) in (0u32..).zip(weights) {
            if *w > 0 {
                by_weight.entry(*w).or_default().push(i);
            }
        }
        by_weight
            .into_iter()
            .map(|(weight, members)| WeightClass {
                weight,
                members,
                taken: 0,
            })
            .collect()
    }

    /// The endpoint whose turn comes next in this weight.
    fn next_member(&self) -> u32 {
        let at = self.taken % self.members.len() as u64;
        self.members[at as usize]
    }

    /// nginx's credit of that endpoint at `turn` (counted from 1) of a cycle
    /// of `total` turns: it has taken `taken / members` turns so far.
    fn next_credit(&self, turn: u64, total: u64) -> i128 {
        let own = self.taken / self.members.len() as u64;
        i128::from(turn) * i128::from(self.weight) - i128::from(total) * i128::from(own)
    }
}

fn gcd(a: u32, b: u32) -> u32 {
    if b == 0 { a } else { gcd(b, a % b) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn turns(schedule: &[u32], endpoints: usize) -> Vec<usize> {
        (0..endpoints as u32)
            .map(|i| schedule.iter().filter(|t| **t == i).count())
            .collect()
    }

    #[test]
    fn equal_weights_take_turns_in_order() {
        assert_eq!(smooth_weighted(&[1, 1, 1]), [0, 1, 2]);
        assert_eq!(smooth_weighted(&[5, 5]), [0, 1]);
    }

    #[test]
    fn weights_are_honoured_and_interleaved() {
        let schedule = smooth_weighted(&[5, 1, 1]);
        assert_eq!(turns(&schedule, 3), [5, 1, 1]);
        // nginx's smooth sequence: a a b a c a a, not a a a a a b c.
        assert_eq!(schedule, [0, 0, 1, 0, 2, 0, 0]);
    }

    #[test]
    fn endpoints_without_weight_get_no_turn() {
        assert_eq!(smooth_weighted(&[0, 2, 0]), [1]);
        assert!(smooth_weighted(&[0, 0]).is_empty());
        assert!(smooth_weighted(&[]).is_empty());
    }

    #[test]
    fn picks_walk_the_schedule_from_the_turn_given() {
        let rr = RoundRobin::new(&[2, 1], 0).unwrap();
        let picks: Vec<usize> = (0..6).map(|_| rr.pick()).collect();
        assert_eq!(picks, [0, 1, 0, 0, 1, 0]);
        assert_eq!(rr.turn(), 6);
        let resumed = RoundRobin::new(&[1, 1, 1], 4).unwrap();
        assert_eq!(resumed.pick(), 1);
        assert!(RoundRobin::new(&[0], 0).is_none());
    }

    /// nginx's smooth weighted round robin as it is written, every
    /// endpoint compared every turn: the reference.
    fn nginx(weights: &[u32]) -> Vec<u32> {
        let divisor = weights.iter().copied().filter(|w| *w > 0).fold(0, gcd);
        if divisor == 0 {
            return Vec::new();
        }
        let mut weights: Vec<u64> = weights.iter().map(|w| u64::from(w / divisor)).collect();
        let total: u64 = weights.iter().sum();
        if total > MAX_TURNS {
            for w in weights.iter_mut().filter(|w| **w > 0) {
                *w = (*w * MAX_TURNS / total).max(1);
            }
        }
        let total = weights.iter().sum::<u64>() as i64;
        let mut current = vec![0i64; weights.len()];
        (0..total)
            .map(|_| {
                for (c, w) in current.iter_mut().zip(&weights) {
                    *c += *w as i64;
                }
                let (best, _) = current
                    .iter()
                    .enumerate()
                    .max_by_key(|(i, c)| (**c, std::cmp::Reverse(*i)))
                    .unwrap();
                current[best] -= total;
                best as u32
            })
            .collect()
    }

    #[test]
    fn the_schedule_is_nginxs_turn_for_turn() {
        use rand::{RngExt, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        for round in 0..300 {
            let n = rng.random_range(1..40);
            let top = [3, 10, 1000, 5_000_000][round % 4];
            let weights: Vec<u32> = (0..n).map(|_| rng.random_range(0..top)).collect();
            assert_eq!(smooth_weighted(&weights), nginx(&weights), "{weights:?}");
        }
    }

    #[test]
    fn a_hundred_thousand_endpoints_of_two_weights_build_in_linear_time() {
        // Weights 1 and 2 alternating: 9.4 s (release) when every endpoint
        // was compared every turn.
        let weights: Vec<u32> = (0..100_000).map(|i| 1 + i % 2).collect();
        let start = std::time::Instant::now();
        let schedule = smooth_weighted(&weights);
        assert_eq!(schedule.len(), 100_000, "scaled to one turn each");
        // And with one heavy endpoint beside them, two weights still.
        let mut heavy = weights.clone();
        heavy[0] = 1_000_000;
        let schedule = smooth_weighted(&heavy);
        let took = start.elapsed();
        eprintln!("two schedules over 100,000 endpoints: {took:?}");
        assert!(schedule.iter().filter(|t| **t == 0).count() > 3000);
        assert!(took < std::time::Duration::from_secs(1), "{took:?}");
    }

    #[test]
    fn huge_weights_are_scaled_in_proportion() {
        let schedule = smooth_weighted(&[3_000_000, 1_000_000, 7]);
        assert!(schedule.len() as u64 <= MAX_TURNS + 3);
        let t = turns(&schedule, 3);
        assert_eq!(t[2], 1, "a tiny weight keeps one turn");
        let ratio = t[0] as f64 / t[1] as f64;
        assert!((2.9..3.1).contains(&ratio), "{t:?}");
    }
}
