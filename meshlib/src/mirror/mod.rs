//! Request mirroring (shadowing): a copy of a share of a route's requests sent
//! to another cluster, its response discarded, as Envoy's
//! `RouteAction.RequestMirrorPolicy` does ("fire and forget").
//!
//! [`Mirror`] reads the route's mirror policies from the request's
//! [`RouteDecision`]. For each policy whose `runtime_fraction` the request
//! falls in, it sends a copy through a clone of the inner service, on its own
//! Tokio task, with a decision naming the mirror cluster and the authority
//! suffixed `-shadow` (`reviews:9080` → `reviews-shadow:9080`), as Envoy
//! does so the copies can be told apart. The copy goes after the route's
//! rewrites and header changes, so it is the request the primary sends.
//!
//! A copy never delays or fails the original:
//!
//! - the body is teed: each frame goes on to the original at once, and a
//!   clone of its bytes to each copy through a bounded channel; a copy that
//!   falls behind (16 frames), or whose request fails, is cut off, its request
//!   aborted rather than sent short;
//! - the copy's response is dropped as soon as its headers arrive, its body
//!   unread (so an HTTP/1.1 connection to the mirror cluster is closed rather
//!   than reused); its errors are logged at `debug` (one per mirrored request
//!   would flood a log at `warn`) and otherwise ignored;
//! - without a Tokio runtime, nothing is mirrored.
//!
//! Unlike Envoy, a copy is sent even when the original's cluster turns out
//! not to exist (this layer sits before the cluster lookup).

mod body;
mod layer;

use std::fmt::Display;
use std::task::{Context, Poll};

use futures_util::FutureExt;
use http::uri::Authority;
use http::{HeaderValue, Request, Uri};
use http_body::Body;
use tokio::runtime::Handle;
use tower::ServiceExt;
use tower_service::Service;

use crate::body::{BoxBody, boxed};
use crate::route::{RouteDecision, fraction_drawn};

pub use layer::MirrorLayer;

/// Sends a copy of a share of the requests of routes with mirror policies
/// to the mirror clusters, through a clone of the inner service; see the
/// [module docs](self).
///
/// ```
/// use std::sync::{Arc, Mutex};
/// use http_body_util::BodyExt;
/// use meshlib::config::MeshConfig;
/// use meshlib::mirror::Mirror;
/// use meshlib::route::{RouteDecision, RouteTable};
/// use tower::ServiceExt;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
/// let config = MeshConfig::from_yaml(r#"
/// virtual_hosts:
///   - name: api
///     domains: ["api"]
///     routes: [{ match: { prefix: / }, route: { cluster: live, request_mirror_policies: [{ cluster: canary }] } }]
/// clusters: [{ name: live }, { name: canary }]
/// "#)?;
/// let table = RouteTable::new(&config)?;
/// let seen = Arc::new(Mutex::new(Vec::new()));
/// let record = seen.clone();
/// let backend = tower::service_fn(move |request: http::Request<meshlib::BoxBody>| {
///     let record = record.clone();
///     async move {
///         let cluster = request.extensions().get::<RouteDecision>().unwrap().cluster().to_owned();
///         let authority = request.uri().authority().unwrap().to_string();
///         let body = request.into_body().collect().await?.to_bytes();
///         record.lock().unwrap().push((cluster, authority, body));
///         Ok::<_, meshlib::BoxError>(http::Response::new(()))
///     }
/// });
///
/// let mut request = http::Request::post("http://api/orders")
///     .body(meshlib::body::boxed(http_body_util::Full::new(bytes::Bytes::from("order"))))?;
/// let decision = table.decide(&request)?;
/// request.extensions_mut().insert(decision);
/// Mirror::new(backend, tokio::runtime::Handle::current()).oneshot(request).await?;
/// # for _ in 0..1000 {
/// #     if seen.lock().unwrap().len() == 2 { break; }
/// #     tokio::task::yield_now().await;
/// # }
/// let seen = seen.lock().unwrap();
/// assert!(seen.contains(&("live".into(), "api".into(), "order".into())));
/// assert!(seen.contains(&("canary".into(), "api-shadow".into(), "order".into())));
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct Mirror<S> {
    inner: S,
    executor: Handle,
}

impl<S> Mirror<S> {
    /// Mirrors through `inner` (which also serves the originals), each copy
    /// a task on `executor`.
    pub fn new(inner: S, executor: Handle) -> Self {
        Mirror { inner, executor }
    }
}

impl<S> Service<Request<BoxBody>> for Mirror<S>
where
    S: Service<Request<BoxBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Display,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<BoxBody>) -> Self::Future {
        let targets = match request.extensions().get::<RouteDecision>() {
            Some(decision) if !decision.request_mirror_policies().is_empty() => decision
                .request_mirror_policies()
                .iter()
                .filter(|policy| {
                    policy
                        .fraction
                        .is_none_or(|f| fraction_drawn(f.per_million()))
                })
                .map(|policy| decision.shadow(&policy.cluster))
                .collect::<Vec<_>>(),
            _ => return self.inner.call(request),
        };
        if targets.is_empty() {
            return self.inner.call(request);
        }
        let (parts, body) = request.into_parts();
        let (body, shadow_bodies) = if body.is_end_stream() {
            let empty = || boxed(http_body_util::Empty::new());
            (body, targets.iter().map(|_| empty()).collect::<Vec<_>>())
        } else {
            let (primary, shadows) = body::tee(body, targets.len());
            (boxed(primary), shadows.into_iter().map(boxed).collect())
        };
        for (decision, body) in targets.into_iter().zip(shadow_bodies) {
            let cluster = decision.cluster().to_owned();
            let shadow = shadow_request(&parts, decision, body);
            let inner = self.inner.clone();
            // A combinator, not an `async` block: the compiler cannot yet prove
            // an `async` block holding `S::Future` `Send` for the boxed error's
            // erased lifetime.
            self.executor
                .spawn(inner.oneshot(shadow).map(move |result| {
                    if let Err(error) = result {
                        tracing::debug!(%error, cluster, "mirrored request failed");
                    }
                }));
        }
        self.inner.call(Request::from_parts(parts, body))
    }
}

/// The copy of the request `parts` describe for `decision`'s cluster, its
/// authority suffixed `-shadow`.
fn shadow_request(
    parts: &http::request::Parts,
    decision: RouteDecision,
    body: BoxBody,
) -> Request<BoxBody> {
    let mut shadow = Request::new(body);
    *shadow.method_mut() = parts.method.clone();
    *shadow.version_mut() = parts.version;
    *shadow.headers_mut() = parts.headers.clone();
    *shadow.extensions_mut() = parts.extensions.clone();
    shadow.extensions_mut().insert(decision);
    *shadow.uri_mut() = match parts.uri.authority() {
        Some(authority) => {
            let mut uri = parts.uri.clone().into_parts();
            uri.authority = shadow_authority(authority.as_str())
                .and_then(|a| Authority::try_from(a).ok())
                .or(uri.authority);
            Uri::from_parts(uri).unwrap_or_else(|_| parts.uri.clone())
        }
        None => parts.uri.clone(),
    };
    if let Some(host) = parts
        .headers
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .and_then(shadow_authority)
        .and_then(|h| HeaderValue::try_from(h).ok())
    {
        shadow.headers_mut().insert(http::header::HOST, host);
    }
    shadow
}

/// `host-shadow`, keeping a port after it: Envoy's `shadowAppendedHost`.
fn shadow_authority(authority: &str) -> Option<String> {
    if authority.is_empty() {
        return None;
    }
    let host = crate::route::strip_port(authority).unwrap_or(authority);
    let port = &authority[host.len()..];
    Some(format!("{host}-shadow{port}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shadow_authority_keeps_the_port() {
        let cases = [
            ("reviews", "reviews-shadow"),
            ("reviews:9080", "reviews-shadow:9080"),
            ("10.0.0.1:80", "10.0.0.1-shadow:80"),
            ("[::1]:80", "[::1]-shadow:80"),
        ];
        for (authority, shadow) in cases {
            assert_eq!(shadow_authority(authority).as_deref(), Some(shadow));
        }
        assert_eq!(shadow_authority(""), None);
    }
}
