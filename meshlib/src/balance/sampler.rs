//! Weighted random choice of an index: the `random` policy, and the candidates
//! of the power-of-two-choices policies and of weighted localities.

use rand::{Rng, RngExt};

/// Picks an index in proportion to its weight, in O(1) when all weights are
/// equal and O(log n) otherwise (a binary search over cumulative weights).
/// Built off the request path, on each endpoint change.
#[derive(Debug)]
pub(super) enum WeightedIndex {
    /// `n` indices, all of the same weight.
    Uniform(usize),
    /// `cumulative[i]` is the sum of the weights of indices `0..=i`.
    Cumulative(Box<[u64]>),
}

impl WeightedIndex {
    /// A sampler over `weights`; `None` when they are empty or sum to zero.
    /// Indices of weight zero are never picked.
    pub(super) fn new(weights: impl IntoIterator<Item = u64>) -> Option<Self> {
        let mut cumulative = Vec::new();
        let mut total: u64 = 0;
        let mut first = None;
        let mut equal = true;
        for weight in weights {
            total = total.saturating_add(weight);
            cumulative.push(total);
            match first {
                None => first = Some(weight),
                Some(w) => equal &= w == weight,
            }
        }
        if total == 0 {
            return None;
        }
        Some(if equal {
            WeightedIndex::Uniform(cumulative.len())
        } else {
            WeightedIndex::Cumulative(cumulative.into_boxed_slice())
        })
    }

    /// How many indices there are (including those of weight zero).
    #[cfg(test)]
    fn len(&self) -> usize {
        match self {
            WeightedIndex::Uniform(n) => *n,
            WeightedIndex::Cumulative(c) => c.len(),
        }
    }

    /// An index, in proportion to weight.
    pub(super) fn sample<R: Rng + ?Sized>(&self, rng: &mut R) -> usize {
        match self {
            WeightedIndex::Uniform(n) => rng.random_range(0..*n),
            WeightedIndex::Cumulative(c) => {
                let total = c.last().copied().unwrap_or(0);
                Self::find(c, rng.random_range(0..total))
            }
        }
    }

    /// An index other than `excluded`, in proportion to weight (sampling
    /// without replacement); `excluded` itself when no other has weight.
    pub(super) fn sample_other<R: Rng + ?Sized>(&self, rng: &mut R, excluded: usize) -> usize {
        match self {
            WeightedIndex::Uniform(n) if *n > 1 => {
                let i = rng.random_range(0..*n - 1);
                if i >= excluded { i + 1 } else { i }
            }
            WeightedIndex::Uniform(_) => excluded,
            WeightedIndex::Cumulative(c) => {
                let total = c.last().copied().unwrap_or(0);
                let start = excluded
                    .checked_sub(1)
                    .and_then(|i| c.get(i))
                    .copied()
                    .unwrap_or(0);
                let weight = c.get(excluded).copied().unwrap_or(start) - start;
                if total == weight {
                    return excluded;
                }
                // Draw over the other indices' weights, stepping over the
                // excluded one's span.
                let mut x = rng.random_range(0..total - weight);
                if x >= start {
                    x += weight;
                }
                Self::find(c, x)
            }
        }
    }

    /// The index whose span of the cumulative weights holds `x`.
    fn find(cumulative: &[u64], x: u64) -> usize {
        cumulative.partition_point(|&sum| sum <= x)
    }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    use super::*;

    fn shares(
        sampler: &WeightedIndex,
        draws: usize,
        pick: impl Fn(&mut StdRng) -> usize,
    ) -> Vec<f64> {
        let mut rng = StdRng::seed_from_u64(7);
        let mut counts = vec![0usize; sampler.len()];
        for _ in 0..draws {
            counts[pick(&mut rng)] += 1;
        }
        counts
            .iter()
            .map(|c| *c as f64 * 100.0 / draws as f64)
            .collect()
    }

    fn assert_close(actual: &[f64], expected: &[f64]) {
        for (a, e) in actual.iter().zip(expected) {
            assert!((a - e).abs() <= 2.0, "{actual:?} vs {expected:?}");
        }
    }

    #[test]
    fn equal_weights_sample_uniformly() {
        let sampler = WeightedIndex::new([5, 5, 5, 5]).unwrap();
        assert!(matches!(sampler, WeightedIndex::Uniform(4)));
        let s = shares(&sampler, 40_000, |rng| sampler.sample(rng));
        assert_close(&s, &[25.0; 4]);
    }

    #[test]
    fn samples_in_proportion_to_weight_and_never_a_zero_weight() {
        let sampler = WeightedIndex::new([1, 0, 3, 6]).unwrap();
        let s = shares(&sampler, 40_000, |rng| sampler.sample(rng));
        assert_eq!(s[1], 0.0);
        assert_close(&s, &[10.0, 0.0, 30.0, 60.0]);
    }

    #[test]
    fn sampling_another_index_never_returns_the_excluded_one() {
        for weights in [&[1u64, 1, 1, 1][..], &[1, 0, 3, 6]] {
            let sampler = WeightedIndex::new(weights.iter().copied()).unwrap();
            for excluded in 0..weights.len() {
                let s = shares(&sampler, 20_000, |rng| sampler.sample_other(rng, excluded));
                let others: u64 = weights.iter().sum::<u64>() - weights[excluded];
                let expected: Vec<f64> = weights
                    .iter()
                    .enumerate()
                    .map(|(i, w)| {
                        if i == excluded {
                            0.0
                        } else {
                            *w as f64 * 100.0 / others as f64
                        }
                    })
                    .collect();
                assert_eq!(s[excluded], 0.0, "{weights:?} excluding {excluded}");
                assert_close(&s, &expected);
            }
        }
    }

    #[test]
    fn a_lone_index_is_returned_when_no_other_has_weight() {
        let mut rng = StdRng::seed_from_u64(1);
        assert_eq!(
            WeightedIndex::new([4]).unwrap().sample_other(&mut rng, 0),
            0
        );
        assert_eq!(
            WeightedIndex::new([0, 4])
                .unwrap()
                .sample_other(&mut rng, 1),
            1
        );
    }

    #[test]
    fn no_weight_no_sampler() {
        assert!(WeightedIndex::new([]).is_none());
        assert!(WeightedIndex::new([0, 0]).is_none());
    }
}
