//! Which attempts are retried: a route's [`RetryPolicy`] compiled, and its
//! decisions, with the semantics of Envoy's router (`x-envoy-retry-on` and
//! `x-envoy-retry-grpc-on` in the router docs).

use http::{HeaderMap, Request, StatusCode};

use crate::config::{RetryCondition as C, RetryPolicy};
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
    pub(crate) fn retries_response(&self, status: StatusCode, headers: &HeaderMap) -> bool {
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
        let grpc = headers
            .get("grpc-status")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u32>().ok());
        match grpc {
            Some(1) => on.contains(C::Cancelled),
            Some(4) => on.contains(C::DeadlineExceeded),
            Some(8) => on.contains(C::ResourceExhausted),
            Some(13) => on.contains(C::Internal),
            Some(14) => on.contains(C::Unavailable),
            _ => false,
        }
    }

    /// Whether an attempt that failed with `failure` is retried.
    pub(crate) fn retries_failure(&self, failure: Failure) -> bool {
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
        p.retries_response(status(code), &HeaderMap::new())
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
        assert!(!p.retries_response(status(200), &headers));
        assert!(p.retries_response(status(425), &headers));
        headers.insert("x-retry", "yes".parse().unwrap());
        assert!(p.retries_response(status(200), &headers));
        let mut limited = HeaderMap::new();
        limited.insert("x-envoy-ratelimited", "true".parse().unwrap());
        assert!(p.retries_response(status(429), &limited));
    }

    #[test]
    fn grpc_conditions_read_grpc_status_in_the_headers() {
        let p = policy("{ retry_on: 'unavailable,cancelled,deadline-exceeded,internal' }");
        let with = |code: &str| {
            let mut headers = HeaderMap::new();
            headers.insert("grpc-status", code.parse().unwrap());
            p.retries_response(StatusCode::OK, &headers)
        };
        assert!(with("14") && with("1") && with("4") && with("13"));
        assert!(!with("8"), "resource-exhausted not asked for");
        assert!(!with("0") && !with("2") && !with("x"));
        let exhausted = policy("{ retry_on: resource-exhausted }");
        let mut headers = HeaderMap::new();
        headers.insert("grpc-status", "8".parse().unwrap());
        assert!(exhausted.retries_response(StatusCode::OK, &headers));
        assert!(!policy("{ retry_on: 5xx }").retries_response(StatusCode::OK, &headers));
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
            let got = [Connect, Reset, PerTryTimeout, Local].map(|f| p.retries_failure(f));
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
}
