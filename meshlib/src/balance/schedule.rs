//! The round-robin schedule: which endpoint takes each turn.

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
    fn huge_weights_are_scaled_in_proportion() {
        let schedule = smooth_weighted(&[3_000_000, 1_000_000, 7]);
        assert!(schedule.len() as u64 <= MAX_TURNS + 3);
        let t = turns(&schedule, 3);
        assert_eq!(t[2], 1, "a tiny weight keeps one turn");
        let ratio = t[0] as f64 / t[1] as f64;
        assert!((2.9..3.1).contains(&ratio), "{t:?}");
    }
}
