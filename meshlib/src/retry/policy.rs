//! Which attempts are retried: a route's [`RetryPolicy`] compiled, and its
//! decisions, with the semantics of Envoy's router (`x-envoy-retry-on` and
//! `x-envoy-retry-grpc-on` in the router docs), or, for a gRPC call under
//! [`GrpcRetryRules::Proxyless`], of gRPC's xDS clients (gRFC A44 on A6).

use std::time::Duration;

use http::{HeaderMap, Request, StatusCode};

use crate::config::{GrpcRetryRules, RetryCondition as C, RetryPolicy};
use crate::error::ErrorKind;
use crate::matcher::{HeaderCheck, ResponseHeaderCheck, compile_header, compile_response_header};

/// A [`RetryPolicy`] with its header rules compiled.
#[derive(Debug)]
pub(crate) struct Policy {
    config: RetryPolicy,
    retriable_headers: Vec<ResponseHeaderCheck>,
    retriable_request_headers: Vec<HeaderCheck>,
}

/// How an attempt failed without a response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Failure {
    /// Connecting failed: nothing reached the endpoint.
    Connect,
    /// The connection failed or was reset after the request was sent.
    Reset,
    /// The attempt's `per_try_timeout` passed.
    PerTryTimeout,
    /// The mesh failed the attempt by itself (no endpoint, …): not retried,
    /// as Envoy answers those locally.
    Local,
}

impl Failure {
    pub(crate) fn of(kind: ErrorKind) -> Self {
        match kind {
            ErrorKind::Connect => Failure::Connect,
            ErrorKind::Upstream => Failure::Reset,
            _ => Failure::Local,
        }
    }
}

/// The rules one request is judged by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Rules {
    /// Envoy's router.
    Envoy,
    /// gRPC's proxyless clients: a gRPC call under a proxyless policy.
    Grpc,
}

/// gRFC A6: `maxAttempts` above 5 is treated as 5.
const GRPC_MAX_ATTEMPTS: u32 = 5;

/// What a server's `grpc-retry-pushback-ms` says of the next retry (A6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Pushback {
    /// No pushback: the backoff decides.
    None,
    /// Retry after exactly this long.
    After(Duration),
    /// Do not retry (a negative or malformed value).
    Stop,
}

impl Policy {
    /// Compiles `config`; the error names the field.
    pub(crate) fn compile(
        config: &RetryPolicy,
        regexes: &crate::config::Regexes,
    ) -> Result<Self, (String, String)> {
        let retriable_headers = config
            .retriable_headers
            .iter()
            .map(|h| {
                compile_response_header(h, regexes)
                    .map_err(|e| (format!("retry_policy: retriable_headers: {:?}", h.name), e))
            })
            .collect::<Result<_, _>>()?;
        let retriable_request_headers = config
            .retriable_request_headers
            .iter()
            .map(|h| {
                compile_header(h, regexes).map_err(|e| {
                    (
                        format!("retry_policy: retriable_request_headers: {:?}", h.name),
                        e,
                    )
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(Policy {
            config: config.clone(),
            retriable_headers,
            retriable_request_headers,
        })
    }

    /// The policy as configured.
    pub(crate) fn config(&self) -> &RetryPolicy {
        &self.config
    }

    /// The rules `request` is judged by: gRPC's when it is a gRPC call and
    /// the policy says so, else Envoy's.
    pub(crate) fn rules_for<B>(&self, request: &Request<B>) -> Rules {
        if is_grpc_call(request.headers()) && self.config.grpc_rules == GrpcRetryRules::Proxyless {
            Rules::Grpc
        } else {
            Rules::Envoy
        }
    }

    /// The most retries after the first attempt under `rules`.
    pub(crate) fn max_retries(&self, rules: Rules) -> u32 {
        match rules {
            Rules::Envoy => self.config.num_retries,
            Rules::Grpc => self.config.num_retries.min(GRPC_MAX_ATTEMPTS - 1),
        }
    }

    /// Whether `request` may be retried at all: it matches one of the
    /// `retriable_request_headers`, when there are any.
    pub(crate) fn retries_request<B>(&self, request: &Request<B>) -> bool {
        if self.retriable_request_headers.is_empty() {
            return true;
        }
        let headers = crate::matcher::RequestHeaders::new(request);
        self.retriable_request_headers
            .iter()
            .any(|h| h.matches(&headers))
    }

    /// Whether an attempt answered with `status` and `headers` is retried.
    pub(crate) fn retries_response(
        &self,
        rules: Rules,
        status: StatusCode,
        headers: &HeaderMap,
    ) -> bool {
        if rules == Rules::Grpc {
            return grpc_status(status, headers).is_some_and(|code| self.retries_grpc(code));
        }
        let on = self.config.retry_on;
        let code = status.as_u16();
        if on.contains(C::FiveXx) && status.is_server_error() {
            return true;
        }
        if on.contains(C::GatewayError) && matches!(code, 502..=504) {
            return true;
        }
        if on.contains(C::Retriable4xx) && code == 409 {
            return true;
        }
        if on.contains(C::RetriableStatusCodes)
            && self.config.retriable_status_codes.contains(&code)
        {
            return true;
        }
        if on.contains(C::RetriableHeaders)
            && self
                .retriable_headers
                .iter()
                .any(|h| h.matches(status, headers))
        {
            return true;
        }
        if on.contains(C::EnvoyRateLimited) && headers.contains_key("x-envoy-ratelimited") {
            return true;
        }
        // gRPC: the status of a Trailers-Only response, in its headers, as
        // Envoy reads it; a status in trailers comes too late to retry.
        header_grpc_status(headers).is_some_and(|code| self.retries_grpc(code))
    }

    /// Whether gRPC status `code` is one `retry_on` names.
    fn retries_grpc(&self, code: u32) -> bool {
        let on = self.config.retry_on;
        match code {
            1 => on.contains(C::Cancelled),
            4 => on.contains(C::DeadlineExceeded),
            8 => on.contains(C::ResourceExhausted),
            13 => on.contains(C::Internal),
            14 => on.contains(C::Unavailable),
            _ => false,
        }
    }

    /// Whether an attempt that failed with `failure` is retried.
    pub(crate) fn retries_failure(&self, rules: Rules, failure: Failure) -> bool {
        if rules == Rules::Grpc {
            // As a gRPC client reports each to its caller.
            return match failure {
                Failure::Connect | Failure::Reset => self.retries_grpc(UNAVAILABLE),
                Failure::PerTryTimeout => self.retries_grpc(DEADLINE_EXCEEDED),
                Failure::Local => false,
            };
        }
        let on = self.config.retry_on;
        let no_response =
            on.contains(C::FiveXx) || on.contains(C::GatewayError) || on.contains(C::Reset);
        match failure {
            Failure::Connect => {
                no_response || on.contains(C::ConnectFailure) || on.contains(C::ResetBeforeRequest)
            }
            Failure::Reset | Failure::PerTryTimeout => no_response,
            Failure::Local => false,
        }
    }
}

/// Whether a request with `headers` is a gRPC call.
pub(crate) fn is_grpc_call(headers: &HeaderMap) -> bool {
    headers
        .get(http::header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"))
}

/// What a retriable response's `grpc-retry-pushback-ms` says (A6). Read
/// under gRPC's rules only: Envoy does not.
pub(crate) fn pushback(headers: &HeaderMap) -> Pushback {
    let Some(value) = headers.get("grpc-retry-pushback-ms") else {
        return Pushback::None;
    };
    match value
        .to_str()
        .ok()
        .and_then(|v| v.trim().parse::<u64>().ok())
    {
        Some(ms) => Pushback::After(Duration::from_millis(ms)),
        None => Pushback::Stop,
    }
}

const DEADLINE_EXCEEDED: u32 = 4;
const UNAVAILABLE: u32 = 14;

/// The `grpc-status` of a Trailers-Only response, in its headers.
fn header_grpc_status(headers: &HeaderMap) -> Option<u32> {
    headers
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u32>().ok())
}

/// The status a gRPC client gives a call answered with `status` and
/// `headers`, when the headers already end it: their `grpc-status`, or for a
/// non-200 answer without one, gRPC's mapping of HTTP statuses
/// (`doc/http-grpc-status-mapping.md`). `None` for a call still going.
fn grpc_status(status: StatusCode, headers: &HeaderMap) -> Option<u32> {
    if let Some(code) = header_grpc_status(headers) {
        return Some(code);
    }
    const INTERNAL: u32 = 13;
    const UNAUTHENTICATED: u32 = 16;
    const PERMISSION_DENIED: u32 = 7;
    const UNIMPLEMENTED: u32 = 12;
    const UNKNOWN: u32 = 2;
    match status.as_u16() {
        200 => None,
        400 => Some(INTERNAL),
        401 => Some(UNAUTHENTICATED),
        403 => Some(PERMISSION_DENIED),
        404 => Some(UNIMPLEMENTED),
        429 | 502..=504 => Some(UNAVAILABLE),
        _ => Some(UNKNOWN),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::MeshConfig;

    fn policy(yaml: &str) -> Policy {
        let config = MeshConfig::from_yaml(&format!(
            "clusters: [{{ name: c }}]\nvirtual_hosts: [{{ name: v, domains: ['*'], routes: [{{ match: {{ prefix: / }}, route: {{ cluster: c, retry_policy: {yaml} }} }}] }}]"
        ))
        .unwrap();
        let route = &config.virtual_hosts[0].routes[0];
        Policy::compile(route.action.retry_policy.as_ref().unwrap(), &config.regexes).unwrap()
    }

    fn status(n: u16) -> StatusCode {
        StatusCode::from_u16(n).unwrap()
    }

    fn retried(p: &Policy, code: u16) -> bool {
        p.retries_response(Rules::Envoy, status(code), &HeaderMap::new())
    }

    #[test]
    fn status_conditions_follow_envoy() {
        let five = policy("{ retry_on: 5xx }");
        assert!([500, 502, 503, 504, 599].iter().all(|c| retried(&five, *c)));
        assert!(![200, 404, 409, 429].iter().any(|c| retried(&five, *c)));

        let gateway = policy("{ retry_on: gateway-error }");
        assert!([502, 503, 504].iter().all(|c| retried(&gateway, *c)));
        assert!(!retried(&gateway, 500));

        let four = policy("{ retry_on: retriable-4xx }");
        assert!(retried(&four, 409) && !retried(&four, 429) && !retried(&four, 503));

        let codes =
            policy("{ retry_on: retriable-status-codes, retriable_status_codes: [429, 418] }");
        assert!(retried(&codes, 429) && retried(&codes, 418) && !retried(&codes, 500));
        let codes_unused = policy("{ retry_on: 5xx, retriable_status_codes: [429] }");
        assert!(
            !retried(&codes_unused, 429),
            "codes count only under retriable-status-codes"
        );
    }

    #[test]
    fn header_conditions_read_the_response() {
        let p = policy(
            "{ retry_on: 'retriable-headers,envoy-ratelimited', retriable_headers: [{ name: x-retry, exact: yes }, { name: ':status', range: { start: 420, end: 430 } }] }",
        );
        let mut headers = HeaderMap::new();
        assert!(!p.retries_response(Rules::Envoy, status(200), &headers));
        assert!(p.retries_response(Rules::Envoy, status(425), &headers));
        headers.insert("x-retry", "yes".parse().unwrap());
        assert!(p.retries_response(Rules::Envoy, status(200), &headers));
        let mut limited = HeaderMap::new();
        limited.insert("x-envoy-ratelimited", "true".parse().unwrap());
        assert!(p.retries_response(Rules::Envoy, status(429), &limited));
    }

    #[test]
    fn grpc_conditions_read_grpc_status_in_the_headers() {
        let p = policy("{ retry_on: 'unavailable,cancelled,deadline-exceeded,internal' }");
        let with = |code: &str| {
            let mut headers = HeaderMap::new();
            headers.insert("grpc-status", code.parse().unwrap());
            p.retries_response(Rules::Envoy, StatusCode::OK, &headers)
        };
        assert!(with("14") && with("1") && with("4") && with("13"));
        assert!(!with("8"), "resource-exhausted not asked for");
        assert!(!with("0") && !with("2") && !with("x"));
        let exhausted = policy("{ retry_on: resource-exhausted }");
        let mut headers = HeaderMap::new();
        headers.insert("grpc-status", "8".parse().unwrap());
        assert!(exhausted.retries_response(Rules::Envoy, StatusCode::OK, &headers));
        assert!(!policy("{ retry_on: 5xx }").retries_response(
            Rules::Envoy,
            StatusCode::OK,
            &headers
        ));
    }

    #[test]
    fn failures_without_a_response_follow_envoy() {
        use Failure::*;
        let cases: [(&str, [bool; 4]); 6] = [
            // Connect, Reset, PerTryTimeout, Local
            ("5xx", [true, true, true, false]),
            ("gateway-error", [true, true, true, false]),
            ("reset", [true, true, true, false]),
            ("connect-failure", [true, false, false, false]),
            ("reset-before-request", [true, false, false, false]),
            ("retriable-4xx", [false, false, false, false]),
        ];
        for (on, expected) in cases {
            let p = policy(&format!("{{ retry_on: {on} }}"));
            let got =
                [Connect, Reset, PerTryTimeout, Local].map(|f| p.retries_failure(Rules::Envoy, f));
            assert_eq!(got, expected, "retry_on: {on}");
        }
    }

    #[test]
    fn retriable_request_headers_limit_which_requests_retry() {
        let any = policy("{ retry_on: 5xx }");
        let only = policy(
            "{ retry_on: 5xx, retriable_request_headers: [{ name: ':method', exact: GET }] }",
        );
        let get = Request::get("http://a/").body(()).unwrap();
        let post = Request::post("http://a/").body(()).unwrap();
        assert!(any.retries_request(&post));
        assert!(only.retries_request(&get) && !only.retries_request(&post));
    }

    fn grpc_request() -> Request<()> {
        Request::post("http://a/pkg.Service/Method")
            .header("content-type", "application/grpc+proto")
            .body(())
            .unwrap()
    }

    fn trailers_only(code: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert("grpc-status", code.parse().unwrap());
        headers
    }

    #[test]
    fn a_grpc_call_under_a_proxyless_policy_follows_grpc() {
        let p =
            policy("{ retry_on: '5xx,reset,unavailable', num_retries: 9, grpc_rules: proxyless }");
        let http = Request::get("http://a/").body(()).unwrap();
        assert_eq!(p.rules_for(&http), Rules::Envoy, "not a gRPC call");
        assert_eq!(p.max_retries(Rules::Envoy), 9);
        let rules = p.rules_for(&grpc_request());
        assert_eq!(rules, Rules::Grpc);
        assert_eq!(p.max_retries(rules), 4, "five attempts at most (A6)");

        // Only the gRPC conditions count: UNAVAILABLE, but not a 500.
        assert!(p.retries_response(rules, StatusCode::OK, &trailers_only("14")));
        assert!(!p.retries_response(rules, StatusCode::OK, &trailers_only("13")));
        assert!(!p.retries_response(rules, status(500), &HeaderMap::new()));
        // Without grpc-status, an HTTP status maps as gRPC maps it: 503 is
        // UNAVAILABLE; plain response headers commit the call.
        assert!(p.retries_response(rules, status(503), &HeaderMap::new()));
        assert!(!p.retries_response(rules, StatusCode::OK, &HeaderMap::new()));
        // A failure without a response counts as UNAVAILABLE; a per-try
        // timeout as DEADLINE_EXCEEDED, not asked for here.
        assert!(p.retries_failure(rules, Failure::Connect));
        assert!(p.retries_failure(rules, Failure::Reset));
        assert!(!p.retries_failure(rules, Failure::PerTryTimeout));
        assert!(!p.retries_failure(rules, Failure::Local));

        let http_only = policy("{ retry_on: '5xx,connect-failure', grpc_rules: proxyless }");
        let rules = http_only.rules_for(&grpc_request());
        assert!(!http_only.retries_failure(rules, Failure::Connect));
        assert!(!http_only.retries_response(rules, status(503), &HeaderMap::new()));
    }

    #[test]
    fn a_grpc_call_under_an_envoy_policy_follows_envoy() {
        let p = policy("{ retry_on: '5xx', num_retries: 9 }");
        let rules = p.rules_for(&grpc_request());
        assert_eq!(rules, Rules::Envoy);
        assert_eq!(p.max_retries(rules), 9);
        assert!(p.retries_response(rules, status(500), &HeaderMap::new()));
    }

    #[test]
    fn pushback_sets_the_wait_or_stops_the_retries() {
        assert_eq!(pushback(&HeaderMap::new()), Pushback::None);
        let with = |v: &str| {
            let mut headers = HeaderMap::new();
            headers.insert("grpc-retry-pushback-ms", v.parse().unwrap());
            pushback(&headers)
        };
        assert_eq!(with("250"), Pushback::After(Duration::from_millis(250)));
        assert_eq!(with("0"), Pushback::After(Duration::ZERO));
        assert_eq!(with("-1"), Pushback::Stop);
        assert_eq!(with("soon"), Pushback::Stop);
    }
}
