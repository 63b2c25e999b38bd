//! Locality weights within a priority: Envoy's locality weighted load
//! balancing ("locality weighted load balancing" in its docs), gRPC's
//! `weighted_target` under `priority`.
//!
//! A locality's effective weight is its configured weight scaled by its
//! availability, `min(1, overprovisioning × healthy / total)`: a locality
//! keeps its full share while enough of it is healthy, and loses share as its
//! health falls. A request of the chosen priority picks a locality at random
//! in proportion to effective weight (gRPC's `weighted_target` picks at
//! random; Envoy walks an EDF schedule: the shares are the same), then an
//! endpoint within it by the cluster's policy.

/// Effective weights are fixed point, this many units per unit of weight and
/// percent of availability, so small availabilities keep their proportions.
const UNITS: u128 = 1024;

/// `weight × min(1, overprovisioning_factor / 100 × healthy / total)`, in
/// fixed point (only the proportions between localities matter). Zero only
/// when nothing in the locality is healthy.
pub(super) fn effective_weight(
    weight: u32,
    healthy: u64,
    total: u64,
    overprovisioning_factor: u32,
) -> u64 {
    if healthy == 0 || total == 0 {
        return 0;
    }
    // In percent × total: min(100 × total, factor × healthy).
    let available =
        (100 * u128::from(total)).min(u128::from(overprovisioning_factor) * u128::from(healthy));
    let weight = u128::from(weight) * available * UNITS / u128::from(total);
    u64::try_from(weight).unwrap_or(u64::MAX).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Envoy's documentation table: locality X of weight 1, Y of weight 2 and
    /// fully healthy, overprovisioning 140 %: X's share as its health falls.
    #[test]
    fn shares_follow_envoys_locality_table() {
        let y = effective_weight(2, 10, 10, 140);
        for (x_healthy, x_share) in [
            (10, 33.3),
            (8, 33.3),
            (7, 32.9),
            (5, 25.9),
            (4, 21.9),
            (0, 0.0),
        ] {
            let x = effective_weight(1, x_healthy, 10, 140);
            let share = x as f64 * 100.0 / (x + y) as f64;
            assert!(
                (share - x_share).abs() < 0.1,
                "{x_healthy}/10 healthy: {share}"
            );
        }
    }

    #[test]
    fn a_small_availability_keeps_its_proportion() {
        let one_in_a_thousand = effective_weight(1, 1, 1000, 140);
        let full = effective_weight(1, 1000, 1000, 140);
        assert!(one_in_a_thousand > 0);
        let ratio = full as f64 / one_in_a_thousand as f64;
        assert!((ratio - 100.0 / 0.14).abs() < 20.0, "{ratio}");
    }
}
