//! What the fuzz targets (property tests standing in for cargo-fuzz, which
//! needs nightly) share: a bound on each case's time.
//!
//! Each target runs proptest's default 256 cases under `cargo test`; set
//! `PROPTEST_CASES` for a longer run (`PROPTEST_CASES=20000 cargo test -p
//! meshlib --lib fuzz`).

use std::time::{Duration, Instant};

/// Far above what any case takes (milliseconds in a debug build), so only a
/// runaway, quadratic or worse, fails it.
pub(crate) const CASE_BOUND: Duration = Duration::from_secs(2);

/// Runs `case`, failing when it took longer than [`CASE_BOUND`].
pub(crate) fn bounded<T>(case: impl FnOnce() -> T) -> T {
    let start = Instant::now();
    let out = case();
    let took = start.elapsed();
    assert!(took < CASE_BOUND, "one case took {took:?}");
    out
}
