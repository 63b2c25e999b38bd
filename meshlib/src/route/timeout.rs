//! Which timeout a request gets, decided with its route: the route's
//! `timeout`, or, once the route has a `max_stream_duration` (Envoy's
//! `RouteAction.MaxStreamDuration`, gRPC's A31), that instead, whose
//! `grpc_timeout_header_max` lets a gRPC client's own deadline, sent in its
//! `grpc-timeout` header, set the timeout, capped. The `timeout` layer
//! enforces what is decided here.

use std::time::Duration;

use http::HeaderMap;

use crate::config::MaxStreamDuration;

/// The time a request may wait for its response headers, from its route's
/// `timeout` and `max_stream_duration` and its `grpc-timeout` header, as
/// Envoy decides it:
///
/// 1. With `grpc_timeout_header_max` set and a well-formed `grpc-timeout`
///    header: the header's value, capped at `grpc_timeout_header_max` unless
///    that is zero (no cap).
/// 2. Else, with `max_stream_duration` set: that, zero meaning no timeout.
/// 3. Else, if the route has a `max_stream_duration` message at all: no
///    timeout. Envoy then takes the "new timeouts" path, which never reads the
///    route's `timeout` (and falls back to the HttpConnectionManager's own
///    `max_stream_duration`, which meshlib does not take); gRPC never reads
///    the route's `timeout` either.
/// 4. Else the route's `timeout` (zero meaning none).
///
/// ```
/// use std::time::Duration;
/// use meshlib::config::MaxStreamDuration;
/// use meshlib::route::request_timeout;
///
/// let limits = MaxStreamDuration::new(Some(Duration::from_secs(30)), Some(Duration::from_secs(5)));
/// let route_timeout = Some(Duration::from_secs(15));
/// let mut headers = http::HeaderMap::new();
/// assert_eq!(request_timeout(route_timeout, Some(&limits), &headers), Some(Duration::from_secs(30)));
/// headers.insert("grpc-timeout", "250m".parse()?);
/// assert_eq!(request_timeout(route_timeout, Some(&limits), &headers), Some(Duration::from_millis(250)));
/// headers.insert("grpc-timeout", "1H".parse()?);
/// assert_eq!(request_timeout(route_timeout, Some(&limits), &headers), Some(Duration::from_secs(5)));
/// assert_eq!(request_timeout(route_timeout, None, &headers), route_timeout);
/// # Ok::<(), http::header::InvalidHeaderValue>(())
/// ```
pub fn request_timeout(
    route_timeout: Option<Duration>,
    max_stream_duration: Option<&MaxStreamDuration>,
    headers: &HeaderMap,
) -> Option<Duration> {
    let route_timeout = route_timeout.filter(|t| !t.is_zero());
    let Some(limits) = max_stream_duration else {
        return route_timeout;
    };
    if let Some(cap) = limits.grpc_timeout_header_max
        && let Some(requested) = headers
            .get("grpc-timeout")
            .and_then(|value| parse_grpc_timeout(value.as_bytes()))
    {
        return Some(if cap.is_zero() {
            requested
        } else {
            requested.min(cap)
        });
    }
    limits.max_stream_duration.filter(|limit| !limit.is_zero())
}

/// The timeout a `grpc-timeout` header's `value` carries, in gRPC's wire
/// format (`PROTOCOL-HTTP2.md`): at most eight ASCII digits and a unit, `H`
/// hours, `M` minutes, `S` seconds, `m` milliseconds, `u` microseconds or `n`
/// nanoseconds: `100m`, `5S`, `1H`. `None` when it is not well formed (the header is then ignored, as Envoy's `Grpc::Common::getGrpcTimeout` does).
pub(crate) fn parse_grpc_timeout(value: &[u8]) -> Option<Duration> {
    let (unit, digits) = value.split_last()?;
    if digits.is_empty() || digits.len() > 8 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let n = digits
        .iter()
        .fold(0u64, |n, digit| n * 10 + u64::from(digit - b'0'));
    Some(match unit {
        b'H' => Duration::from_secs(n * 3600),
        b'M' => Duration::from_secs(n * 60),
        b'S' => Duration::from_secs(n),
        b'm' => Duration::from_millis(n),
        b'u' => Duration::from_micros(n),
        b'n' => Duration::from_nanos(n),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn grpc_timeouts_parse_in_every_unit() {
        let cases = [
            ("1H", Some(Duration::from_secs(3600))),
            ("2M", Some(Duration::from_secs(120))),
            ("5S", Some(Duration::from_secs(5))),
            ("100m", Some(Duration::from_millis(100))),
            ("250u", Some(Duration::from_micros(250))),
            ("7n", Some(Duration::from_nanos(7))),
            ("0m", Some(Duration::ZERO)),
            ("99999999S", Some(Duration::from_secs(99_999_999))),
        ];
        for (text, expected) in cases {
            assert_eq!(parse_grpc_timeout(text.as_bytes()), expected, "{text}");
        }
    }

    #[test]
    fn malformed_grpc_timeouts_are_ignored() {
        for text in [
            "",
            "S",
            "5",
            "5s",
            "5 S",
            "-5S",
            "123456789S",
            "1.5S",
            "5SS",
        ] {
            assert_eq!(parse_grpc_timeout(text.as_bytes()), None, "{text:?}");
        }
    }

    /// The timeout a well-formed value means, computed apart from the parser.
    fn expected(digits: &[u8], unit: u8) -> Option<Duration> {
        let nanos_per_unit: u128 = match unit {
            b'H' => 3_600_000_000_000,
            b'M' => 60_000_000_000,
            b'S' => 1_000_000_000,
            b'm' => 1_000_000,
            b'u' => 1_000,
            b'n' => 1,
            _ => return None,
        };
        if !(1..=8).contains(&digits.len()) || !digits.iter().all(u8::is_ascii_digit) {
            return None;
        }
        let n: u128 = std::str::from_utf8(digits).ok()?.parse().ok()?;
        let nanos = n * nanos_per_unit;
        Some(Duration::new(
            u64::try_from(nanos / 1_000_000_000).ok()?,
            u32::try_from(nanos % 1_000_000_000).ok()?,
        ))
    }

    // Fuzz target (issue 10): 256 cases under `cargo test`, `PROPTEST_CASES=N`
    // for N. Parsing is one pass over at most nine bytes, so no case needs a
    // time bound.
    proptest! {
        #[test]
        fn fuzzed_grpc_timeouts_parse_as_the_wire_format_says(
            value in prop_oneof![
                proptest::collection::vec(any::<u8>(), 0..16),
                // Mostly well formed: digits, sometimes too many, and a unit.
                ("[0-9]{0,10}", proptest::sample::select(b"HMSmunhs0 ".to_vec()))
                    .prop_map(|(digits, unit)| [digits.as_bytes(), &[unit]].concat()),
            ],
        ) {
            let parsed = parse_grpc_timeout(&value);
            let want = value.split_last().and_then(|(unit, digits)| expected(digits, *unit));
            prop_assert_eq!(parsed, want);
            if let Ok(header) = http::HeaderValue::from_bytes(&value) {
                let mut headers = HeaderMap::new();
                headers.insert("grpc-timeout", header);
                let limits = MaxStreamDuration::new(None, Some(Duration::from_secs(5)));
                let timeout = request_timeout(None, Some(&limits), &headers);
                prop_assert_eq!(timeout, want.map(|t| t.min(Duration::from_secs(5))));
            }
        }
    }
}
