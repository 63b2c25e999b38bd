//! The `grpc-timeout` request header, in gRPC's wire format
//! (`PROTOCOL-HTTP2.md`): at most eight ASCII digits and a unit, `H` hours,
//! `M` minutes, `S` seconds, `m` milliseconds, `u` microseconds or `n`
//! nanoseconds: `100m`, `5S`, `1H`.

use std::time::Duration;

/// The timeout `value` carries, or `None` when it is not well formed (the
/// header is then ignored, as Envoy's `Grpc::Common::getGrpcTimeout` does).
pub(crate) fn parse(value: &[u8]) -> Option<Duration> {
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
            assert_eq!(parse(text.as_bytes()), expected, "{text}");
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
            assert_eq!(parse(text.as_bytes()), None, "{text:?}");
        }
    }
}
