//! The weighted pick among a route's clusters (Envoy's `weighted_clusters`).

use std::sync::Arc;

/// A route's clusters with their cumulative weights, ready for a pick in
/// O(log n) with one random number.
#[derive(Debug, Clone)]
pub(crate) struct WeightedClusters {
    /// `(cluster, running total of weights up to and including it)`; zero-weight
    /// clusters are left out, as they can never be picked.
    cumulative: Vec<(Arc<str>, u64)>,
    total: u64,
}

impl WeightedClusters {
    pub(crate) fn new(clusters: impl IntoIterator<Item = (Arc<str>, u32)>) -> Self {
        let mut total = 0u64;
        let cumulative = clusters
            .into_iter()
            .filter(|(_, weight)| *weight > 0)
            .map(|(name, weight)| {
                total += u64::from(weight);
                (name, total)
            })
            .collect();
        WeightedClusters { cumulative, total }
    }

    /// The cluster that `roll`, uniform in `0..total()`, falls on.
    pub(crate) fn pick(&self, roll: u64) -> Option<&Arc<str>> {
        let i = self.cumulative.partition_point(|(_, upto)| *upto <= roll);
        self.cumulative.get(i).map(|(name, _)| name)
    }

    /// A pick with the thread's random number generator.
    pub(crate) fn pick_random(&self) -> Option<&Arc<str>> {
        if self.total == 0 {
            return None;
        }
        self.pick(rand::random_range(0..self.total))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split() -> WeightedClusters {
        WeightedClusters::new([
            (Arc::from("a"), 90),
            (Arc::from("never"), 0),
            (Arc::from("b"), 10),
        ])
    }

    #[test]
    fn each_roll_lands_on_the_cluster_whose_share_it_falls_in() {
        let split = split();
        assert_eq!(split.total, 100);
        assert_eq!(split.pick(0).map(|c| &**c), Some("a"));
        assert_eq!(split.pick(89).map(|c| &**c), Some("a"));
        assert_eq!(split.pick(90).map(|c| &**c), Some("b"));
        assert_eq!(split.pick(99).map(|c| &**c), Some("b"));
        assert_eq!(split.pick(100), None);
    }

    #[test]
    fn zero_weight_clusters_are_never_picked() {
        let picks: Vec<_> = (0..100).filter_map(|r| split().pick(r).cloned()).collect();
        assert!(picks.iter().all(|c| &**c != "never"));
        assert_eq!(split().cumulative.len(), 2);
    }
}
