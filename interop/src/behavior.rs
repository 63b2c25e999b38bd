//! The `rpc-behavior` request metadata a test server obeys, as gRPC's xDS
//! interop servers do (grpc/grpc `doc/xds-test-descriptions.md`, "Server").
//!
//! Each value is a comma-separated list of behaviors, applied in order (and a
//! request may carry several values, applied in the order received):
//!
//! - `sleep-N`: wait N seconds, then go on with the next behavior;
//! - `keep-open`: never answer (until the client gives up); stop here;
//! - `error-code-N`: fail with gRPC status code N; stop here;
//! - `succeed-on-retry-attempt-N`: if `grpc-previous-rpc-attempts` is N (a
//!   missing header counts as 0), answer normally; stop here;
//! - `hostname=H <behavior>`: the behavior applies only on the server whose
//!   hostname is H.
//!
//! Parsing is separate from acting: [`plan`] turns the metadata into a
//! [`Plan`] (how long to sleep, then what to do), which the server carries out.

use std::time::Duration;

/// The metadata key that carries behaviors.
pub const RPC_BEHAVIOR: &str = "rpc-behavior";
/// The metadata key gRPC's retrying clients set on each retry attempt.
pub const PREVIOUS_ATTEMPTS: &str = "grpc-previous-rpc-attempts";

/// What a server does with one RPC.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// How long to wait first.
    pub sleep: Duration,
    /// Then what.
    pub then: Then,
}

/// How an RPC ends; see [`Plan`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Then {
    /// Answer normally.
    Respond,
    /// Fail with this gRPC status code and message.
    Fail(i32, String),
    /// Never answer.
    KeepOpen,
}

/// gRPC's `INVALID_ARGUMENT`, for malformed behaviors.
const INVALID_ARGUMENT: i32 = 3;

/// The plan for a request carrying the `rpc-behavior` values `values`, on a
/// server named `hostname`, at retry attempt `previous_attempts` (the value
/// of `grpc-previous-rpc-attempts`, if sent). A malformed behavior fails the
/// RPC with `INVALID_ARGUMENT`, as gRPC's servers do.
///
/// ```
/// use meshlib_interop::behavior::{plan, Then};
///
/// let p = plan(["sleep-1, hostname=b error-code-14", "error-code-5"], "a", None);
/// assert_eq!(p.sleep.as_secs(), 1);
/// assert_eq!(p.then, Then::Fail(5, "rpc-behavior error-code-5".to_owned()));
/// ```
pub fn plan<'a>(
    values: impl IntoIterator<Item = &'a str>,
    hostname: &str,
    previous_attempts: Option<&str>,
) -> Plan {
    let mut sleep = Duration::ZERO;
    let invalid = |sleep, what: &str| Plan {
        sleep,
        then: Then::Fail(INVALID_ARGUMENT, format!("invalid rpc-behavior {what:?}")),
    };
    let behaviors = values
        .into_iter()
        .flat_map(|value| value.split(','))
        .map(str::trim)
        .filter(|b| !b.is_empty());
    for behavior in behaviors {
        let behavior = match behavior.strip_prefix("hostname=") {
            Some(rest) => match rest.split_once(' ') {
                Some((host, rest)) if !rest.trim().is_empty() => {
                    if host != hostname {
                        continue;
                    }
                    rest.trim()
                }
                _ => return invalid(sleep, behavior),
            },
            None => behavior,
        };
        if let Some(seconds) = behavior.strip_prefix("sleep-") {
            match seconds.parse::<u64>() {
                Ok(s) => sleep += Duration::from_secs(s),
                Err(_) => return invalid(sleep, behavior),
            }
        } else if behavior == "keep-open" {
            return Plan {
                sleep,
                then: Then::KeepOpen,
            };
        } else if let Some(code) = behavior.strip_prefix("error-code-") {
            return match code.parse::<i32>() {
                Ok(0) => Plan {
                    sleep,
                    then: Then::Respond,
                },
                Ok(code) => Plan {
                    sleep,
                    then: Then::Fail(code, format!("rpc-behavior {behavior}")),
                },
                Err(_) => invalid(sleep, behavior),
            };
        } else if let Some(wanted) = behavior.strip_prefix("succeed-on-retry-attempt-") {
            let Ok(wanted) = wanted.parse::<u32>() else {
                return invalid(sleep, behavior);
            };
            let attempt = match previous_attempts.map(str::parse::<u32>) {
                None => 0,
                Some(Ok(n)) => n,
                Some(Err(_)) => return invalid(sleep, PREVIOUS_ATTEMPTS),
            };
            if attempt == wanted {
                return Plan {
                    sleep,
                    then: Then::Respond,
                };
            }
        }
        // Anything else is not a behavior this server knows: ignored, as
        // gRPC's servers ignore it.
    }
    Plan {
        sleep,
        then: Then::Respond,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn then(values: &[&str], attempts: Option<&str>) -> Then {
        plan(values.iter().copied(), "me", attempts).then
    }

    #[test]
    fn no_behavior_answers_at_once() {
        assert_eq!(
            plan([], "me", None),
            Plan {
                sleep: Duration::ZERO,
                then: Then::Respond
            }
        );
    }

    #[test]
    fn sleeps_add_up_until_an_ending_behavior() {
        let p = plan(["sleep-1,sleep-2", "keep-open", "sleep-7"], "me", None);
        assert_eq!(p.sleep, Duration::from_secs(3));
        assert_eq!(p.then, Then::KeepOpen);
    }

    #[test]
    fn error_code_fails_with_that_code() {
        assert!(matches!(then(&["error-code-14"], None), Then::Fail(14, _)));
    }

    #[test]
    fn hostname_prefix_limits_a_behavior_to_one_server() {
        assert_eq!(then(&["hostname=other error-code-2"], None), Then::Respond);
        assert!(matches!(
            then(&["hostname=me error-code-2"], None),
            Then::Fail(2, _)
        ));
    }

    #[test]
    fn succeed_on_retry_attempt_ends_matching_only_on_that_attempt() {
        let values = ["succeed-on-retry-attempt-2,error-code-14"];
        assert!(matches!(then(&values, None), Then::Fail(14, _)));
        assert!(matches!(then(&values, Some("1")), Then::Fail(14, _)));
        assert_eq!(then(&values, Some("2")), Then::Respond);
    }

    #[test]
    fn malformed_behaviors_are_invalid_arguments() {
        for bad in [
            "sleep-x",
            "error-code-",
            "hostname=me",
            "succeed-on-retry-attempt-z",
        ] {
            assert!(
                matches!(then(&[bad], None), Then::Fail(INVALID_ARGUMENT, _)),
                "{bad}"
            );
        }
    }

    #[test]
    fn unknown_behaviors_are_ignored() {
        assert_eq!(then(&["dance-3"], None), Then::Respond);
    }
}
