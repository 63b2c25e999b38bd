//! Retries: each failed attempt the route's retry policy names is sent
//! again, after a jittered backoff, as Envoy's router does for
//! `RouteAction.retry_policy` / `VirtualHost.retry_policy`
//! (`route_components.proto`; the router docs' `x-envoy-retry-on`).
//!
//! [`Retry`] reads the policy from the request's
//! [`RouteDecision`]; a request without one passes straight through. It
//! sits between the cluster lookup and the cluster send, so every attempt
//! is balanced afresh on the same cluster (a retry usually lands on
//! another endpoint), and below the route's timeout, which bounds every
//! attempt and every wait together.
//!
//! What is retried (Envoy's conditions, by `retry_on`):
//!
//! - a response: `5xx`, `gateway-error` (502, 503, 504), `retriable-4xx`
//!   (409 only), `retriable-status-codes`, `retriable-headers`,
//!   `envoy-ratelimited`, and the gRPC status of a Trailers-Only response
//!   (`grpc-status` in the headers): `cancelled`, `deadline-exceeded`,
//!   `resource-exhausted`, `internal`, `unavailable`. The last response is
//!   returned when the retries run out, as Envoy does;
//! - no response: a connect failure (`connect-failure`,
//!   `reset-before-request`, `reset`, `5xx`, `gateway-error`), a connection
//!   failed or reset after the request went out, or a `per_try_timeout`
//!   (`reset`, `5xx`, `gateway-error`). When the retries run out the last
//!   error is returned, its [`Error::attempts`] and message saying how many
//!   attempts were made;
//! - never: a failure the mesh decided by itself (no endpoint, no route).
//!
//! At most `num_retries` retries follow the first attempt; with
//! `retriable_request_headers`, only matching requests are retried. The
//! wait before retry `n` (from 0) is drawn uniformly from
//! `[0, min(base_interval × 2ⁿ, max_interval))`. With the virtual host's
//! `include_request_attempt_count`, each attempt carries
//! `x-envoy-attempt-count`. The response of a retried request carries its
//! [`Attempts`] in its extensions.
//!
//! **Bodies.** A request body is kept for replay as it is sent, up to a
//! bound (64 KiB by default, as linkerd2-proxy's;
//! [`Retry::max_replay_bytes`], [`RetryLayer::with_max_replay_bytes`]). A body
//! larger than the bound, whether it says so up front or streams past it,
//! is sent once and not retried. An empty body (a `GET`) is always
//! replayable. A retry decided while the previous attempt still streamed
//! the body reads on from where it stopped.
//!
//! **gRPC calls.** Each retry of a gRPC call (`content-type:
//! application/grpc…`) carries `grpc-previous-rpc-attempts`, the number of
//! attempts before it (gRFC A6). Under a policy whose
//! [`grpc_rules`](crate::config::RetryPolicy::grpc_rules) are
//! [`Proxyless`](crate::config::GrpcRetryRules::Proxyless), which every
//! policy from xDS has, a gRPC call is retried as gRPC's own xDS clients
//! retry it (gRFC A44), so both kinds of client behave alike under one
//! control plane:
//!
//! | | Envoy's rules | gRPC's rules (A44) |
//! |---|---|---|
//! | conditions | every `retry_on` name | only `cancelled`, `deadline-exceeded`, `internal`, `resource-exhausted`, `unavailable` |
//! | a response without `grpc-status` | by its HTTP status | by gRPC's HTTP-to-status mapping (503 is `UNAVAILABLE`) |
//! | connect failure, reset | `connect-failure`, `reset`, … | as `UNAVAILABLE` |
//! | `per_try_timeout` passed | `reset`, `5xx`, `gateway-error` | as `DEADLINE_EXCEEDED` |
//! | attempts | `num_retries` + 1 | at most 5 |
//! | `grpc-retry-pushback-ms` | ignored | the next wait; negative or malformed: no retry |
//! | `num_retries: 0` over xDS | no retries | NACKed (meshlib NACKs it) |
//!
//! Both rules decide on the response headers: once a call's headers have
//! arrived without a status (the call is committed), it is not retried,
//! whatever its trailers say. The backoff is the same formula in both (A6's
//! `random(0, min(initialBackoff × 2ⁿ, maxBackoff))` with multiplier 2 is
//! the bound above), restarting after a pushback under gRPC's rules.
//! `per_try_timeout` is honoured for gRPC calls too, though gRPC's clients
//! ignore it: a team moving off a sidecar that set it expects it.
//!
//! **Limits.** The cluster's [`CircuitBreakers`](crate::config::CircuitBreakers)
//! bound the retries in flight to it at once: `max_retries`, or a
//! `retry_budget` (a share of the requests in flight, with a floor). A retry
//! they refuse is not sent: the attempt's answer is the request's, and
//! [`MeshClient::retries_refused`](crate::MeshClient::retries_refused)
//! counts it. A cluster without breakers gets Envoy's default (3 at once)
//! for requests under Envoy's rules, and no limit for gRPC calls under
//! gRPC's, whose clients have none.
//!
//! Not yet: a rate budget (linkerd's), `Retry-After` backoff, host
//! predicates, `per_try_idle_timeout`, gRPC's transparent retries,
//! `refused-stream` (no HTTP/2 reset reason reaches this layer yet, so it
//! retries nothing on its own).

mod backoff;
mod body;
mod future;
mod layer;
mod limit;
mod policy;

use std::sync::Arc;
use std::task::{Context, Poll};

use futures_util::future::Either;
use http::{HeaderValue, Request, Response};
use http_body::Body;
use tower::ServiceExt;
use tower_service::Service;

use crate::body::{BoxBody, boxed};
use crate::error::{Error, ErrorKind};
use crate::route::RouteDecision;

pub use body::DEFAULT_MAX_REPLAY_BYTES;
pub use future::ResponseFuture;
pub use layer::RetryLayer;
pub(crate) use limit::{Gate, InFlightRetry, RetryGate, RetryLimits};
pub(crate) use policy::{Policy, Rules};

use backoff::{Backoff, random_below};
use body::Replay;
pub(crate) use policy::is_grpc_call;
use policy::{Failure, Pushback, pushback};

/// How many attempts a request under a retry policy took: in its
/// response's extensions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attempts(pub u32);

/// Retries failed attempts as the request's route's retry policy says; see
/// the [module docs](self).
///
/// ```
/// use std::sync::Arc;
/// use std::sync::atomic::{AtomicU32, Ordering};
/// use meshlib::config::{RetryCondition, RetryOn, RetryPolicy};
/// use meshlib::retry::{Attempts, Retry};
/// use meshlib::route::RouteDecision;
/// use tower::ServiceExt;
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() -> Result<(), meshlib::Error> {
/// // Fails twice with 503, then answers 200.
/// let calls = Arc::new(AtomicU32::new(0));
/// let seen = calls.clone();
/// let flaky = tower::service_fn(move |_: http::Request<meshlib::BoxBody>| {
///     let n = seen.fetch_add(1, Ordering::SeqCst);
///     async move {
///         let status = if n < 2 { 503 } else { 200 };
///         Ok::<_, meshlib::Error>(http::Response::builder().status(status).body(()).unwrap())
///     }
/// });
///
/// let mut policy = RetryPolicy::new(RetryOn::none().with(RetryCondition::FiveXx));
/// policy.num_retries = 3;
/// let decision = RouteDecision::new("api", "orders", "orders").with_retry_policy(&policy)?;
/// let mut request = http::Request::new(meshlib::body::boxed(http_body_util::Empty::new()));
/// request.extensions_mut().insert(decision);
///
/// let response = Retry::new(flaky).oneshot(request).await?;
/// assert_eq!(response.status(), 200);
/// assert_eq!(response.extensions().get::<Attempts>(), Some(&Attempts(3)));
/// assert_eq!(calls.load(Ordering::SeqCst), 3);
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct Retry<S> {
    inner: S,
    max_replay_bytes: usize,
}

impl<S> Retry<S> {
    /// Retries through `inner`, keeping up to 64 KiB of a body for replay.
    pub fn new(inner: S) -> Self {
        Retry {
            inner,
            max_replay_bytes: DEFAULT_MAX_REPLAY_BYTES,
        }
    }

    /// The same, keeping up to `max_replay_bytes` of a body for replay: a
    /// larger body is sent once.
    pub fn max_replay_bytes(mut self, max_replay_bytes: usize) -> Self {
        self.max_replay_bytes = max_replay_bytes;
        self
    }
}

/// Where each attempt's body comes from.
enum Bodies {
    /// Nothing to send: every attempt gets an empty body.
    Empty,
    Replay(Replay),
    /// Too large to keep: the one attempt has it.
    Once,
}

impl Bodies {
    fn replayable(&self) -> bool {
        match self {
            Bodies::Empty => true,
            Bodies::Replay(replay) => replay.replayable(),
            Bodies::Once => false,
        }
    }

    fn next(&self) -> BoxBody {
        match self {
            Bodies::Replay(replay) => boxed(replay.body()),
            Bodies::Empty | Bodies::Once => boxed(http_body_util::Empty::new()),
        }
    }
}

const ATTEMPT_COUNT: http::HeaderName = http::HeaderName::from_static("x-envoy-attempt-count");
/// gRFC A6: on each retry of a gRPC call, how many attempts came before.
const PREVIOUS_ATTEMPTS: http::HeaderName =
    http::HeaderName::from_static("grpc-previous-rpc-attempts");

impl<S, B> Service<Request<BoxBody>> for Retry<S>
where
    S: Service<Request<BoxBody>, Response = Response<B>, Error = Error> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: 'static,
{
    type Response = Response<B>;
    type Error = Error;
    type Future = ResponseFuture<S::Future, Response<B>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<BoxBody>) -> Self::Future {
        let (policy, count) = match request.extensions().get::<RouteDecision>() {
            Some(decision) => (
                decision.retry().cloned(),
                decision.include_request_attempt_count(),
            ),
            None => (None, false),
        };
        let Some(policy) = policy else {
            if count {
                request
                    .headers_mut()
                    .insert(ATTEMPT_COUNT, HeaderValue::from(1u32));
            }
            return Either::Left(self.inner.call(request));
        };
        // The service that was made ready takes the first attempt; tower's
        // rule for a service moved into a future.
        let clone = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, clone);
        let rules = policy.rules_for(&request);
        let retries = if policy.retries_request(&request) {
            policy.max_retries(rules)
        } else {
            0
        };
        let (parts, body) = request.into_parts();
        let (bodies, first) = if body.is_end_stream() {
            (Bodies::Empty, body)
        } else {
            match Replay::new(body, self.max_replay_bytes) {
                Ok((replay, first)) => (Bodies::Replay(replay), boxed(first)),
                Err(body) => (Bodies::Once, body),
            }
        };
        let plan = Plan {
            policy,
            rules,
            retries,
            count,
        };
        Either::Right(Box::pin(attempts(inner, plan, parts, bodies, first)))
    }
}

/// How one request is retried.
struct Plan {
    policy: Arc<Policy>,
    /// The rules it is judged by.
    rules: Rules,
    /// The most retries after the first attempt.
    retries: u32,
    /// Whether each attempt carries `x-envoy-attempt-count`.
    count: bool,
}

/// The retry loop: attempt, decide, wait, attempt again.
async fn attempts<S, B>(
    mut inner: S,
    plan: Plan,
    parts: http::request::Parts,
    bodies: Bodies,
    first: BoxBody,
) -> Result<Response<B>, Error>
where
    S: Service<Request<BoxBody>, Response = Response<B>, Error = Error>,
    S::Future: Send + 'static,
{
    let Plan {
        policy,
        rules,
        retries,
        count,
    } = plan;
    let config = policy.config();
    let grpc_call = is_grpc_call(&parts.headers);
    let mut backoff = Backoff::new(&config.retry_back_off);
    let gate = parts.extensions.get::<RetryGate>().cloned();
    // The retry in flight, counted by its cluster's limits until the next
    // decision (its attempt has an answer by then).
    let mut in_flight: Option<InFlightRetry> = None;
    let mut body = Some(first);
    let mut attempt: u32 = 0;
    loop {
        attempt += 1;
        let mut request = Request::new(body.take().unwrap_or_else(|| bodies.next()));
        *request.method_mut() = parts.method.clone();
        *request.uri_mut() = parts.uri.clone();
        *request.version_mut() = parts.version;
        *request.headers_mut() = parts.headers.clone();
        *request.extensions_mut() = parts.extensions.clone();
        if count {
            request
                .headers_mut()
                .insert(ATTEMPT_COUNT, HeaderValue::from(attempt));
        }
        if grpc_call && attempt > 1 {
            request
                .headers_mut()
                .insert(PREVIOUS_ATTEMPTS, HeaderValue::from(attempt - 1));
        }
        if attempt > 1 {
            inner.ready().await?;
        }
        let call = call_boxed(&mut inner, request);
        // In a block of its own, so the response is known dropped (its
        // connection released or closed) before the wait. It yields the wait
        // a gRPC server's pushback asked for, if any.
        let (pushed, slot) = {
            let (result, failure) = match config.per_try_timeout {
                Some(limit) => match tokio::time::timeout(limit, call).await {
                    Ok(result) => {
                        let failure = result.as_ref().err().map(|e| Failure::of(e.kind()));
                        (result, failure)
                    }
                    Err(_) => (
                        Err(Error::new(
                            ErrorKind::Timeout,
                            format!(
                                "attempt {attempt} to cluster {:?} passed its per_try_timeout of {limit:?}",
                                cluster_of(&parts)
                            ),
                        )),
                        Some(Failure::PerTryTimeout),
                    ),
                },
                None => {
                    let result = call.await;
                    let failure = result.as_ref().err().map(|e| Failure::of(e.kind()));
                    (result, failure)
                }
            };
            let mut retriable = match (&result, failure) {
                (Ok(response), _) => {
                    policy.retries_response(rules, response.status(), response.headers())
                }
                (Err(_), Some(failure)) => policy.retries_failure(rules, failure),
                (Err(_), None) => false,
            };
            // gRPC's server pushback sets the next wait, or forbids it.
            let mut pushed = None;
            if let (true, Rules::Grpc, Ok(response)) = (retriable, rules, &result) {
                match pushback(response.headers()) {
                    Pushback::None => {}
                    Pushback::After(delay) => pushed = Some(delay),
                    Pushback::Stop => retriable = false,
                }
            }
            drop(in_flight.take());
            // The cluster's circuit breakers may refuse the retry: then this
            // attempt's answer is the request's.
            let wants_retry = retriable && attempt <= retries && bodies.replayable();
            let mut slot = None;
            let mut refused = false;
            if wants_retry && let Some(gate) = &gate {
                slot = gate.0.start_retry(rules);
                refused = slot.is_none();
                if refused {
                    tracing::debug!(
                        cluster = cluster_of(&parts),
                        attempt,
                        "retry refused by the cluster's circuit breakers"
                    );
                }
            }
            if !wants_retry || refused {
                return match result {
                    Ok(mut response) => {
                        response.extensions_mut().insert(Attempts(attempt));
                        Ok(response)
                    }
                    Err(error) if retriable || attempt > 1 => Err(error.after_attempts(attempt)),
                    Err(error) => Err(error),
                };
            }
            (pushed, slot)
        };
        in_flight = slot;
        let wait = match pushed {
            // The backoff starts over after a pushback, as in gRPC.
            Some(delay) => {
                backoff = Backoff::new(&config.retry_back_off);
                delay
            }
            None => backoff.next_wait(random_below),
        };
        tokio::time::sleep(wait).await;
    }
}

/// The attempt's future, boxed where it is made: an `async fn` holding
/// `S::Future` itself cannot yet be proven `Send` for the boxed error's
/// erased lifetime in [`BoxBody`] (the same limit `Mirror` works around).
fn call_boxed<S, B>(
    inner: &mut S,
    request: Request<BoxBody>,
) -> futures_util::future::BoxFuture<'static, Result<Response<B>, Error>>
where
    S: Service<Request<BoxBody>, Response = Response<B>, Error = Error>,
    S::Future: Send + 'static,
{
    Box::pin(inner.call(request))
}

fn cluster_of(parts: &http::request::Parts) -> &str {
    parts
        .extensions
        .get::<RouteDecision>()
        .map_or("", |d| d.cluster())
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::time::Duration;

    use tokio::time::Instant;

    use super::*;
    use crate::config::{RetryCondition, RetryOn, RetryPolicy};

    /// A scripted endpoint, as the retry layer sees one.
    type Endpoint = tower::util::BoxCloneSyncService<Request<BoxBody>, Response<()>, Error>;

    /// Answers 503 every time, noting when each attempt came.
    fn always_503(calls: Arc<Mutex<Vec<Instant>>>) -> Endpoint {
        Endpoint::new(tower::service_fn(move |_: Request<BoxBody>| {
            calls.lock().unwrap().push(Instant::now());
            std::future::ready(Ok(Response::builder().status(503).body(()).unwrap()))
        }))
    }

    fn request(policy: &RetryPolicy) -> Request<BoxBody> {
        let mut request = Request::new(boxed(http_body_util::Empty::new()));
        let decision = RouteDecision::new("v", "r", "c")
            .with_retry_policy(policy)
            .unwrap();
        request.extensions_mut().insert(decision);
        request
    }

    #[tokio::test(start_paused = true)]
    async fn each_wait_is_below_its_doubling_bound() {
        let calls = Arc::new(Mutex::new(Vec::new()));
        let mut policy = RetryPolicy::new(RetryOn::none().with(RetryCondition::FiveXx));
        policy.num_retries = 6;
        let response = Retry::new(always_503(calls.clone()))
            .oneshot(request(&policy))
            .await
            .unwrap();
        assert_eq!(response.status(), 503);
        assert_eq!(response.extensions().get::<Attempts>(), Some(&Attempts(7)));
        let calls = calls.lock().unwrap();
        let bounds_ms = [25, 50, 100, 200, 250, 250];
        for (pair, bound) in calls.windows(2).zip(bounds_ms) {
            let wait = pair[1] - pair[0];
            // Drawn below the bound; tokio's timer fires on whole
            // milliseconds, rounding a deadline up, so a draw of 24.3 ms
            // is seen as 25 ms.
            assert!(
                wait <= Duration::from_millis(bound),
                "{wait:?} > {bound} ms"
            );
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_not_matching_retriable_request_headers_is_sent_once() {
        let calls = Arc::new(Mutex::new(Vec::new()));
        let mut policy = RetryPolicy::new(RetryOn::none().with(RetryCondition::FiveXx));
        policy.retriable_request_headers = vec![crate::config::HeaderMatcher {
            name: "x-idempotent".to_owned(),
            rule: crate::config::HeaderRule::Present(true),
            ignore_case: false,
            invert_match: false,
        }];
        let retry = Retry::new(always_503(calls.clone()));
        retry.clone().oneshot(request(&policy)).await.unwrap();
        assert_eq!(calls.lock().unwrap().len(), 1);
        let mut idempotent = request(&policy);
        idempotent
            .headers_mut()
            .insert("x-idempotent", HeaderValue::from_static("1"));
        retry.oneshot(idempotent).await.unwrap();
        assert_eq!(calls.lock().unwrap().len(), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn a_per_try_timeout_is_retried_then_says_how_many_attempts() {
        let never = tower::service_fn(|_: Request<BoxBody>| {
            std::future::pending::<Result<Response<()>, Error>>()
        });
        let mut policy = RetryPolicy::new(RetryOn::none().with(RetryCondition::Reset));
        policy.num_retries = 2;
        policy.per_try_timeout = Some(Duration::from_secs(1));
        let started = Instant::now();
        let error = Retry::new(never)
            .oneshot(request(&policy))
            .await
            .unwrap_err();
        assert_eq!(error.kind(), ErrorKind::Timeout);
        assert_eq!(error.attempts(), Some(3));
        assert!(
            error
                .message()
                .contains("attempt 3 to cluster \"c\" passed its per_try_timeout of 1s"),
            "{error}"
        );
        // Three attempts of 1 s, two waits under 25 and 50 ms.
        let elapsed = started.elapsed();
        assert!(
            elapsed >= Duration::from_secs(3) && elapsed <= Duration::from_millis(3075),
            "{elapsed:?}"
        );
    }

    /// A gRPC call under `policy`.
    fn grpc_call(policy: &RetryPolicy) -> Request<BoxBody> {
        let mut call = request(policy);
        call.headers_mut().insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/grpc"),
        );
        call
    }

    /// Answers every call UNAVAILABLE (Trailers-Only), with `pushback` as
    /// its `grpc-retry-pushback-ms` when given, noting each call's time and
    /// `grpc-previous-rpc-attempts`.
    #[allow(clippy::type_complexity)]
    fn unavailable(
        pushback: Option<&'static str>,
        calls: Arc<Mutex<Vec<(Instant, Option<String>)>>>,
    ) -> Endpoint {
        Endpoint::new(tower::service_fn(move |request: Request<BoxBody>| {
            let previous = request
                .headers()
                .get(PREVIOUS_ATTEMPTS)
                .map(|v| v.to_str().unwrap().to_owned());
            calls.lock().unwrap().push((Instant::now(), previous));
            let mut response = Response::builder().header("grpc-status", "14");
            if let Some(ms) = pushback {
                response = response.header("grpc-retry-pushback-ms", ms);
            }
            std::future::ready(Ok(response.body(()).unwrap()))
        }))
    }

    fn proxyless(retries: u32) -> RetryPolicy {
        let mut policy = RetryPolicy::new(RetryOn::none().with(RetryCondition::Unavailable));
        policy.num_retries = retries;
        policy.grpc_rules = crate::config::GrpcRetryRules::Proxyless;
        policy
    }

    #[tokio::test(start_paused = true)]
    async fn a_grpc_call_takes_five_attempts_at_most_and_says_which_attempt_each_is() {
        let calls = Arc::new(Mutex::new(Vec::new()));
        let response = Retry::new(unavailable(None, calls.clone()))
            .oneshot(grpc_call(&proxyless(9)))
            .await
            .unwrap();
        assert_eq!(response.extensions().get::<Attempts>(), Some(&Attempts(5)));
        let previous: Vec<Option<String>> =
            calls.lock().unwrap().iter().map(|c| c.1.clone()).collect();
        let expected = [None, Some("1"), Some("2"), Some("3"), Some("4")];
        assert_eq!(previous, expected.map(|p| p.map(str::to_owned)));

        // Under Envoy's rules the same call is not capped, and still says
        // which attempt each retry is.
        let calls = Arc::new(Mutex::new(Vec::new()));
        let mut envoy = proxyless(6);
        envoy.grpc_rules = crate::config::GrpcRetryRules::Envoy;
        Retry::new(unavailable(None, calls.clone()))
            .oneshot(grpc_call(&envoy))
            .await
            .unwrap();
        let calls = calls.lock().unwrap();
        assert_eq!(calls.len(), 7);
        assert_eq!(calls[6].1.as_deref(), Some("6"));
    }

    #[tokio::test(start_paused = true)]
    async fn a_pushback_sets_the_wait_exactly_and_a_bad_one_stops_the_retries() {
        let calls = Arc::new(Mutex::new(Vec::new()));
        Retry::new(unavailable(Some("700"), calls.clone()))
            .oneshot(grpc_call(&proxyless(2)))
            .await
            .unwrap();
        let times: Vec<Instant> = calls.lock().unwrap().iter().map(|c| c.0).collect();
        assert_eq!(times.len(), 3);
        for pair in times.windows(2) {
            assert_eq!(pair[1] - pair[0], Duration::from_millis(700));
        }

        for bad in ["-1", "later"] {
            let calls = Arc::new(Mutex::new(Vec::new()));
            let response = Retry::new(unavailable(Some(bad), calls.clone()))
                .oneshot(grpc_call(&proxyless(2)))
                .await
                .unwrap();
            assert_eq!(calls.lock().unwrap().len(), 1, "pushback {bad:?}");
            assert_eq!(response.extensions().get::<Attempts>(), Some(&Attempts(1)));
        }

        // Envoy's rules do not read it: the backoff decides (under 25 ms).
        let calls = Arc::new(Mutex::new(Vec::new()));
        let mut envoy = proxyless(1);
        envoy.grpc_rules = crate::config::GrpcRetryRules::Envoy;
        Retry::new(unavailable(Some("-1"), calls.clone()))
            .oneshot(grpc_call(&envoy))
            .await
            .unwrap();
        let calls = calls.lock().unwrap();
        assert_eq!(calls.len(), 2);
        assert!(calls[1].0 - calls[0].0 <= Duration::from_millis(25));
    }
}
