//! A request's hash for the hashing load balancers, from the route's hash
//! policies: Envoy's `RouteAction.HashPolicy` (`HashPolicyImpl::generateHash`),
//! which gRPC's A42 follows.
//!
//! Each input is hashed with xxHash64, seed 0, as Envoy's `HashUtil::xxHash64`;
//! the policies' hashes are combined in order as `hash.rotate_left(1) ^ next`
//! (the rotation keeps two equal inputs from cancelling out), and a `terminal`
//! policy ends the evaluation once a hash exists.

use std::io::Write;
use std::net::IpAddr;

use http::Request;
use xxhash_rust::xxh64::xxh64;

use super::SourceAddress;
use crate::balance::RequestHash;
use crate::config::{self, HashOn};
use crate::matcher as query;
use crate::matcher::{HeaderRef, RequestHeaders};

/// A route's compiled hash policies.
#[derive(Debug, Default)]
pub(crate) struct HashPolicies(Box<[Policy]>);

#[derive(Debug)]
struct Policy {
    input: Input,
    terminal: bool,
}

#[derive(Debug)]
enum Input {
    /// The header's values, joined with `,` when it is repeated (as gRPC
    /// does; Envoy hashes a repeated header's sorted values one after another,
    /// which gives the same hash for a header sent once).
    Header(HeaderRef),
    Cookie(Box<str>),
    /// The raw (not percent-decoded) first value, as Envoy's `parseQueryString`.
    QueryParameter(Box<str>),
    SourceIp,
}

impl HashPolicies {
    pub(super) fn compile(policies: &[config::HashPolicy]) -> Result<Self, String> {
        let policies = policies
            .iter()
            .map(|policy| {
                let input = match &policy.on {
                    HashOn::Header(name) => Input::Header(HeaderRef::parse(name)?),
                    HashOn::Cookie(name) => Input::Cookie(name.as_str().into()),
                    HashOn::QueryParameter(name) => Input::QueryParameter(name.as_str().into()),
                    HashOn::SourceIp => Input::SourceIp,
                };
                Ok(Policy {
                    input,
                    terminal: policy.terminal,
                })
            })
            .collect::<Result<_, String>>()?;
        Ok(HashPolicies(policies))
    }

    /// The request's hash, or `None` when no policy found its input (the
    /// balancer then picks at random, as Envoy and gRPC do). `path_and_query`
    /// is `:path` when normalisation changed it.
    pub(super) fn hash<B>(
        &self,
        request: &Request<B>,
        path_and_query: Option<&str>,
    ) -> Option<RequestHash> {
        if self.0.is_empty() {
            return None;
        }
        let mut headers = RequestHeaders::new(request);
        if let Some(path_and_query) = path_and_query {
            headers = headers.with_path(path_and_query);
        }
        let mut hash: Option<u64> = None;
        for policy in &*self.0 {
            if let Some(next) = policy.input.hash(request, &headers) {
                hash = Some(hash.map_or(0, |h| h.rotate_left(1)) ^ next);
            }
            // Envoy stops at a terminal policy once there is a hash, whichever
            // policy produced it.
            if policy.terminal && hash.is_some() {
                break;
            }
        }
        hash.map(RequestHash)
    }
}

impl Input {
    fn hash<B>(&self, request: &Request<B>, headers: &RequestHeaders<'_>) -> Option<u64> {
        match self {
            Input::Header(header) => headers.value(header).map(|value| xxh64(value.as_ref(), 0)),
            Input::Cookie(name) => cookie(request.headers(), name)
                .filter(|value| !value.is_empty())
                .map(|value| xxh64(value, 0)),
            Input::QueryParameter(name) => request
                .uri()
                .query()
                .and_then(|q| query::first_raw_value(q, name))
                .map(|value| xxh64(value.as_bytes(), 0)),
            Input::SourceIp => request
                .extensions()
                .get::<SourceAddress>()
                .map(|source| ip_hash(source.0.ip())),
        }
    }
}

/// The value of the first cookie named `name` in the request's `Cookie`
/// headers, without surrounding double quotes (Envoy's `parseCookieValue`).
fn cookie<'a>(headers: &'a http::HeaderMap, name: &str) -> Option<&'a [u8]> {
    headers
        .get_all(http::header::COOKIE)
        .iter()
        .flat_map(|header| header.as_bytes().split(|b| *b == b';'))
        .find_map(|pair| {
            let pair = pair.trim_ascii();
            let eq = pair.iter().position(|b| *b == b'=')?;
            let (key, value) = (&pair[..eq], &pair[eq + 1..]);
            (key == name.as_bytes()).then_some(match value {
                [b'"', inner @ .., b'"'] => inner,
                _ => value,
            })
        })
}

/// xxHash64 of the address as text (`10.0.0.1`, `2001:db8::1`), as Envoy
/// hashes `addressAsString()`; formatted on the stack.
fn ip_hash(ip: IpAddr) -> u64 {
    // The longest IPv6 text form is 45 bytes.
    let mut buffer = [0u8; 64];
    let mut cursor = std::io::Cursor::new(&mut buffer[..]);
    let written = match write!(cursor, "{ip}") {
        Ok(()) => usize::try_from(cursor.position()).unwrap_or(0),
        Err(_) => 0,
    };
    xxh64(&buffer[..written], 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::HashPolicy;

    fn policies(list: &[(HashOn, bool)]) -> HashPolicies {
        let list: Vec<HashPolicy> = list
            .iter()
            .map(|(on, terminal)| HashPolicy {
                on: on.clone(),
                terminal: *terminal,
            })
            .collect();
        HashPolicies::compile(&list).unwrap()
    }

    fn header(name: &str) -> HashOn {
        HashOn::Header(name.to_owned())
    }

    fn request(headers: &[(&str, &str)]) -> Request<()> {
        let mut builder = Request::get("http://svc/path?user=alice&team=a%20b&my%20key=k");
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        builder.body(()).unwrap()
    }

    fn hash_of(policies: &HashPolicies, request: &Request<()>) -> Option<u64> {
        policies.hash(request, None).map(|h| h.0)
    }

    #[test]
    fn each_input_is_hashed_with_xxhash64_seed_0() {
        let alice = xxh64(b"alice", 0);
        type Case<'a> = (HashOn, &'a [(&'a str, &'a str)], Option<u64>);
        let cases: &[Case<'_>] = &[
            (header("x-user"), &[("x-user", "alice")], Some(alice)),
            (header("x-user"), &[], None),
            (header("x-user"), &[("x-user", "")], Some(xxh64(b"", 0))),
            (
                header("x-user"),
                &[("x-user", "a"), ("x-user", "b")],
                Some(xxh64(b"a,b", 0)),
            ),
            (header(":authority"), &[], Some(xxh64(b"svc", 0))),
            (
                HashOn::Cookie("session".into()),
                &[("cookie", "theme=dark; session=alice")],
                Some(alice),
            ),
            (
                HashOn::Cookie("session".into()),
                &[("cookie", "theme=dark"), ("cookie", "session=\"alice\"")],
                Some(alice),
            ),
            (
                HashOn::Cookie("session".into()),
                &[("cookie", "session=")],
                None,
            ),
            (
                HashOn::Cookie("session".into()),
                &[("cookie", "xsession=alice")],
                None,
            ),
            (HashOn::QueryParameter("user".into()), &[], Some(alice)),
            (
                HashOn::QueryParameter("team".into()),
                &[],
                Some(xxh64(b"a%20b", 0)),
            ),
            (HashOn::QueryParameter("nobody".into()), &[], None),
            // Names are compared as sent, as Envoy's hash policy compares them.
            (
                HashOn::QueryParameter("my%20key".into()),
                &[],
                Some(xxh64(b"k", 0)),
            ),
            (HashOn::QueryParameter("my key".into()), &[], None),
            (HashOn::SourceIp, &[], None),
        ];
        for (on, headers, expected) in cases {
            let got = hash_of(&policies(&[(on.clone(), false)]), &request(headers));
            assert_eq!(got, *expected, "{on:?} with {headers:?}");
        }
    }

    #[test]
    fn the_source_ip_is_hashed_as_text() {
        let policies = policies(&[(HashOn::SourceIp, false)]);
        let mut request = request(&[]);
        request
            .extensions_mut()
            .insert(SourceAddress("10.1.2.3:4567".parse().unwrap()));
        assert_eq!(hash_of(&policies, &request), Some(xxh64(b"10.1.2.3", 0)));
        request
            .extensions_mut()
            .insert(SourceAddress("[2001:db8::1]:80".parse().unwrap()));
        assert_eq!(hash_of(&policies, &request), Some(xxh64(b"2001:db8::1", 0)));
    }

    #[test]
    fn the_same_input_gives_the_same_hash_and_another_input_another() {
        let policies = policies(&[(header("x-user"), false)]);
        let a = hash_of(&policies, &request(&[("x-user", "alice")]));
        assert_eq!(a, hash_of(&policies, &request(&[("x-user", "alice")])));
        assert_ne!(a, hash_of(&policies, &request(&[("x-user", "bob")])));
    }

    #[test]
    fn hashes_combine_by_rotating_the_previous_one() {
        let (a, b) = (xxh64(b"alice", 0), xxh64(b"blue", 0));
        let both = policies(&[(header("x-user"), false), (header("x-team"), false)]);
        let request = request(&[("x-user", "alice"), ("x-team", "blue")]);
        assert_eq!(hash_of(&both, &request), Some(a.rotate_left(1) ^ b));
        // The same input twice does not cancel out.
        let twice = policies(&[(header("x-user"), false), (header("x-user"), false)]);
        assert_eq!(hash_of(&twice, &request), Some(a.rotate_left(1) ^ a));
        assert_ne!(hash_of(&twice, &request), Some(0));
        // A policy without its input is skipped.
        let gap = policies(&[
            (header("x-missing"), false),
            (header("x-user"), false),
            (header("x-team"), false),
        ]);
        assert_eq!(hash_of(&gap, &request), Some(a.rotate_left(1) ^ b));
    }

    #[test]
    fn a_terminal_policy_ends_the_evaluation_once_there_is_a_hash() {
        let (a, b) = (xxh64(b"alice", 0), xxh64(b"blue", 0));
        let list = policies(&[(header("x-user"), true), (header("x-team"), false)]);
        let with_user = request(&[("x-user", "alice"), ("x-team", "blue")]);
        assert_eq!(hash_of(&list, &with_user), Some(a));
        // Without its input, the terminal policy falls through to the next.
        let without_user = request(&[("x-team", "blue")]);
        assert_eq!(hash_of(&list, &without_user), Some(b));
        // Envoy stops at a terminal policy when an earlier one produced the
        // hash, even if the terminal one did not.
        let list = policies(&[
            (header("x-team"), false),
            (header("x-missing"), true),
            (header("x-user"), false),
        ]);
        assert_eq!(hash_of(&list, &with_user), Some(b));
    }

    #[test]
    fn no_hash_when_no_policy_finds_its_input() {
        let list = policies(&[
            (header("x-user"), false),
            (HashOn::Cookie("session".into()), true),
        ]);
        assert_eq!(hash_of(&list, &request(&[])), None);
        assert_eq!(hash_of(&HashPolicies::default(), &request(&[])), None);
    }
}
