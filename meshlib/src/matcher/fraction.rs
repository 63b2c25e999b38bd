//! Fractions: a route's `runtime_fraction` or a mirror's, drawn per request.

/// Whether a request falls in a share of `per_million` parts per million,
/// drawn at random.
pub(crate) fn fraction_drawn(per_million: u32) -> bool {
    match per_million {
        0 => false,
        1_000_000.. => true,
        share => rand::random_range(0..1_000_000) < share,
    }
}
