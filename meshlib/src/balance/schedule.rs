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
pub(super) fn smooth_weighted(weights: &[u32]) -> Vec<u32> {
    let divisor = weights.iter().copied().filter(|w| *w > 0).fold(0, gcd);
    if divisor == 0 {
        return Vec::new();
    }
    let mut weights: Vec<u64> = weights.iter().map(|w| u64::from(w / divisor)).collect();
    let total: u64 = weights.iter().sum();
    if weights.iter().all(|w| *w <= 1) {
        return (0..weights.len() as u32)
            .filter(|i| weights[*i as usize] == 1)
            .collect();
    }
    if total > MAX_TURNS {
        for w in weights.iter_mut().filter(|w| **w > 0) {
            *w = (*w * MAX_TURNS / total).max(1);
        }
    }
    let total: i64 = weights.iter().sum::<u64>() as i64;
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
                .unwrap_or((0, &0));
            current[best] -= total;
            best as u32
        })
        .collect()
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
