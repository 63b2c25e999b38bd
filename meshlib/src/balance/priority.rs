//! Priority levels: how much of a cluster's traffic each priority takes, as
//! Envoy computes it ("priority levels" in its load balancing docs).
//!
//! A level's health is its healthy share of endpoints inflated by the
//! overprovisioning factor, capped at 100 %: with the default 140 %, a level
//! keeps all its traffic while at least 1/1.4 ≈ 72 % of it is healthy. Level 0
//! takes its health in percent of the traffic, level 1 the rest up to its own
//! health, and so on. When the levels' healths sum to less than 100 % the
//! loads are scaled up to sum to 100 % (Envoy's normalized total health).
//! Arithmetic is in whole percents, as Envoy's, with the rounding remainder
//! given to the first level with any health.
//!
//! There is no panic mode: gRPC has none, and Envoy's (sending to every
//! endpoint, healthy or not, once too few are healthy) would send requests to
//! endpoints the control plane said are down. With no healthy endpoint at all
//! the cluster fails the request instead. One corner differs from Envoy for
//! the same reason: when every level's health rounds down to 0 % while some
//! level has a healthy endpoint (say 1 of 1,000 at 140 %), where Envoy would
//! panic, the first such level takes all the traffic.

/// One priority level's endpoints: how many may take traffic, of how many.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct LevelHealth {
    pub(super) healthy: u64,
    pub(super) total: u64,
}

/// Each level's share of the traffic in percent, summing to 100; `None` when
/// no level has a healthy endpoint.
pub(super) fn loads(levels: &[LevelHealth], overprovisioning_factor: u32) -> Option<Vec<u32>> {
    let health: Vec<u64> = levels
        .iter()
        .map(|level| {
            (u64::from(overprovisioning_factor) * level.healthy)
                .checked_div(level.total)
                .map_or(0, |health| health.min(100))
        })
        .collect();
    let total_health: u64 = health.iter().sum();
    if total_health == 0 {
        let first = levels.iter().position(|level| level.healthy > 0)?;
        let mut loads = vec![0; levels.len()];
        loads[first] = 100;
        return Some(loads);
    }
    let normalized = total_health.min(100);
    let mut remaining: u64 = 100;
    let mut loads: Vec<u32> = health
        .iter()
        .map(|h| {
            let load = (h * 100 / normalized).min(remaining);
            remaining -= load;
            load as u32
        })
        .collect();
    if remaining > 0 {
        let first = health.iter().position(|h| *h > 0)?;
        loads[first] += remaining as u32;
    }
    Some(loads)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn level(healthy: u64, total: u64) -> LevelHealth {
        LevelHealth { healthy, total }
    }

    #[test]
    fn loads_follow_envoys_priority_table() {
        type Case<'a> = (&'a str, &'a [LevelHealth], u32, Option<&'a [u32]>);
        let cases: &[Case] = &[
            (
                "P0 all healthy keeps everything",
                &[level(4, 4), level(4, 4)],
                140,
                Some(&[100, 0]),
            ),
            (
                "P0 3/4 healthy: 105 % caps at 100",
                &[level(3, 4), level(4, 4)],
                140,
                Some(&[100, 0]),
            ),
            (
                "P0 2/4 healthy at 140 %",
                &[level(2, 4), level(4, 4)],
                140,
                Some(&[70, 30]),
            ),
            (
                "P0 2/4 healthy at 100 %",
                &[level(2, 4), level(4, 4)],
                100,
                Some(&[50, 50]),
            ),
            (
                "all P0 unhealthy",
                &[level(0, 4), level(4, 4)],
                140,
                Some(&[0, 100]),
            ),
            (
                "P1 takes the rest up to its own health",
                &[level(2, 4), level(1, 4), level(4, 4)],
                140,
                Some(&[70, 30, 0]),
            ),
            (
                "spills to P2 when P1 cannot take it all",
                &[level(1, 4), level(1, 4), level(4, 4)],
                140,
                Some(&[35, 35, 30]),
            ),
            (
                "sum below 100 is normalized",
                &[level(1, 4), level(1, 4)],
                140,
                Some(&[50, 50]),
            ),
            (
                "one level degraded alone takes all",
                &[level(1, 4)],
                140,
                Some(&[100]),
            ),
            (
                "rounding remainder to the first healthy level",
                &[level(1, 3), level(0, 1), level(1, 7)],
                140,
                Some(&[70, 0, 30]),
            ),
            (
                "an empty level takes nothing",
                &[level(0, 0), level(2, 2)],
                140,
                Some(&[0, 100]),
            ),
            (
                "health rounding to 0 % still serves",
                &[level(0, 5), level(1, 1000)],
                140,
                Some(&[0, 100]),
            ),
            ("nothing healthy", &[level(0, 4), level(0, 2)], 140, None),
            ("no levels", &[], 140, None),
        ];
        for (name, levels, factor, expected) in cases {
            let loads = loads(levels, *factor);
            assert_eq!(loads.as_deref(), *expected, "{name}");
            if let Some(loads) = loads {
                assert_eq!(loads.iter().sum::<u32>(), 100, "{name}");
            }
        }
    }

    #[test]
    fn load_returns_to_p0_as_it_recovers() {
        let mut previous = 0;
        for healthy in 0..=10 {
            let loads = loads(&[level(healthy, 10), level(10, 10)], 140).unwrap();
            assert!(loads[0] >= previous, "{healthy}/10: {loads:?}");
            previous = loads[0];
        }
        assert_eq!(previous, 100);
    }
}
