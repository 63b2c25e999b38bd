//! Durations as the file writes them: `5s`, `0.25s`, `250ms`, `1m` (Envoy's JSON
//! form is seconds with an `s` suffix; the others are for people).

use std::time::Duration;

use serde::{Deserialize, Deserializer, Serializer};

/// Parses `5s`, `1.5s`, `250ms`, `100us` or `2m`.
pub(crate) fn parse(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let (number, unit_secs) = if let Some(n) = text.strip_suffix("ms") {
        (n, 1e-3)
    } else if let Some(n) = text.strip_suffix("us") {
        (n, 1e-6)
    } else if let Some(n) = text.strip_suffix('s') {
        (n, 1.0)
    } else if let Some(n) = text.strip_suffix('m') {
        (n, 60.0)
    } else {
        return Err(format!(
            "duration {text:?} needs a unit: `s`, `ms`, `us` or `m` (e.g. \"1.5s\")"
        ));
    };
    let value: f64 = number
        .parse()
        .map_err(|_| format!("duration {text:?} is not a number followed by a unit"))?;
    // `-0s` is negative zero, which `Duration` would take for zero.
    if value.is_sign_negative() {
        return Err(format!("duration {text:?} is negative"));
    }
    Duration::try_from_secs_f64(value * unit_secs)
        .map_err(|_| format!("duration {text:?} is negative or too large"))
}

/// Writes the shortest exact form: whole seconds as `5s`, otherwise milliseconds
/// or microseconds when exact, otherwise fractional seconds.
pub(crate) fn format(d: Duration) -> String {
    let nanos = d.as_nanos();
    if nanos.is_multiple_of(1_000_000_000) {
        format!("{}s", d.as_secs())
    } else if nanos.is_multiple_of(1_000_000) {
        format!("{}ms", d.as_millis())
    } else if nanos.is_multiple_of(1_000) {
        format!("{}us", d.as_micros())
    } else {
        format!("{}s", d.as_secs_f64())
    }
}

pub(crate) fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format(*d))
}

pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let text = String::deserialize(d)?;
    parse(&text).map_err(serde::de::Error::custom)
}

/// The same for an optional duration.
pub(crate) mod option {
    use super::*;

    pub(crate) fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => super::serialize(d, s),
            None => s.serialize_none(),
        }
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Duration>, D::Error> {
        let text = Option::<String>::deserialize(d)?;
        text.map(|t| parse(&t).map_err(serde::de::Error::custom))
            .transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_units_people_write() {
        assert_eq!(parse("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse("100us"), Ok(Duration::from_micros(100)));
        assert_eq!(parse("2m"), Ok(Duration::from_secs(120)));
    }

    #[test]
    fn refuses_what_it_cannot_read_and_says_why() {
        assert!(parse("5").unwrap_err().contains("needs a unit"));
        assert!(parse("fives").unwrap_err().contains("not a number"));
        assert!(parse("-1s").unwrap_err().contains("negative"));
        // Negative zero: `Duration` would read it as zero.
        assert!(parse("-0s").unwrap_err().contains("negative"));
        assert!(parse("-0.0ms").unwrap_err().contains("negative"));
    }

    #[test]
    fn formats_round_trip() {
        for d in [
            Duration::from_secs(5),
            Duration::from_millis(250),
            Duration::from_micros(7),
            Duration::from_millis(1500),
        ] {
            assert_eq!(parse(&format(d)), Ok(d));
        }
    }
}
