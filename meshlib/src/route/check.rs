//! Where a request would go, and with what policy, answered offline: the
//! whole route decision and the request as it would be sent, without a
//! network or a runtime (junction-core's `check_route`).

use http::Request;

use super::{RouteDecision, RouteTable};
use crate::config::MeshConfig;
use crate::error::{Error, ErrorKind};

/// What [`check_route`] found: the [`RouteDecision`] and the request head as
/// the route would send it, rewrites and header changes applied.
#[derive(Debug)]
pub struct RouteCheck {
    decision: RouteDecision,
    request: Request<()>,
}

impl RouteCheck {
    /// The virtual host, route, cluster (and the split it was picked from),
    /// timeout, hash and mirror policies.
    pub fn decision(&self) -> &RouteDecision {
        &self.decision
    }

    /// The request as it would be sent: its path after `prefix_rewrite` or
    /// `regex_rewrite`, its authority after `host_rewrite_literal`, its
    /// headers after the route's removals and additions.
    pub fn request(&self) -> &Request<()> {
        &self.request
    }

    /// The decision and the request.
    pub fn into_parts(self) -> (RouteDecision, Request<()>) {
        (self.decision, self.request)
    }
}

impl RouteTable {
    /// Routes a copy of `request`'s head (the body is not needed) and applies
    /// the route's actions to it, as [`Route`](super::Route) would.
    pub fn check<B>(&self, request: &Request<B>) -> Result<RouteCheck, Error> {
        let decision = self.decide(request)?;
        let mut head = Request::new(());
        *head.method_mut() = request.method().clone();
        *head.uri_mut() = request.uri().clone();
        *head.version_mut() = request.version();
        *head.headers_mut() = request.headers().clone();
        *head.extensions_mut() = request.extensions().clone();
        decision.apply(&mut head)?;
        Ok(RouteCheck {
            decision,
            request: head,
        })
    }
}

/// Where `request` would go through a mesh configured with `config`, and
/// with what policy, without sending it: the virtual host, the route, the
/// cluster (for weighted clusters one picked at random, and the whole split),
/// the timeout (with the request's `grpc-timeout` taken into account), the
/// hash, the mirror policies and the request as rewritten.
///
/// It fails as the mesh would fail the request: [`ErrorKind::NoRoute`] when
/// no virtual host or route matches, [`ErrorKind::UnknownCluster`] when the
/// route names (or, with `cluster_header`, the request names) a cluster the
/// configuration does not define. A configuration that does not compile (one
/// built by hand and never validated) fails with [`ErrorKind::NoRoute`] and
/// the configuration error as its source. To check many requests, build a
/// [`RouteTable`] once and call [`RouteTable::check`].
///
/// ```
/// use meshlib::config::MeshConfig;
///
/// let config = MeshConfig::from_yaml(r#"
/// virtual_hosts:
///   - name: reviews
///     domains: ["reviews"]
///     routes:
///       - name: v2-api
///         match: { prefix: /api/v2/, headers: [{ name: x-canary, exact: "true" }] }
///         route:
///           weighted_clusters:
///             clusters: [{ name: reviews-v1, weight: 90 }, { name: reviews-v2, weight: 10 }]
///           prefix_rewrite: /
///           timeout: 2s
///           hash_policy: [{ header: { header_name: x-user } }]
/// clusters: [{ name: reviews-v1 }, { name: reviews-v2 }]
/// "#)?;
/// let request = http::Request::get("http://reviews/api/v2/reviews/7")
///     .header("x-canary", "true")
///     .header("x-user", "alice")
///     .body(())?;
/// let check = meshlib::check_route(&config, &request)?;
/// let decision = check.decision();
/// assert_eq!((decision.virtual_host(), decision.route()), ("reviews", "v2-api"));
/// assert!(["reviews-v1", "reviews-v2"].contains(&decision.cluster()));
/// assert_eq!(decision.weighted_clusters().len(), 2);
/// assert_eq!(decision.timeout(), Some(std::time::Duration::from_secs(2)));
/// assert!(decision.hash().is_some());
/// assert_eq!(check.request().uri().path(), "/reviews/7");
///
/// let elsewhere = http::Request::get("http://reviews/other").body(())?;
/// let error = meshlib::check_route(&config, &elsewhere).unwrap_err();
/// assert_eq!(error.kind(), meshlib::ErrorKind::NoRoute);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn check_route<B>(config: &MeshConfig, request: &Request<B>) -> Result<RouteCheck, Error> {
    let table = RouteTable::new(config).map_err(|error| {
        Error::new(ErrorKind::NoRoute, "the configuration does not compile").with_source(error)
    })?;
    let check = table.check(request)?;
    let decision = &check.decision;
    if config.cluster(decision.cluster()).is_none() {
        return Err(decision.unknown_cluster());
    }
    Ok(check)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> MeshConfig {
        MeshConfig::from_yaml(
            r#"
virtual_hosts:
  - name: api
    domains: ["api"]
    routes:
      - name: by-header
        match: { prefix: /dynamic }
        route: { cluster_header: x-cluster }
      - name: rewritten
        match: { prefix: /old/ }
        route:
          cluster: backend
          prefix_rewrite: /new/
          host_rewrite_literal: backend.internal
          request_mirror_policies: [{ cluster: shadow }]
        request_headers_to_add: [{ name: x-routed, value: "yes" }]
        request_headers_to_remove: [x-secret]
clusters: [{ name: backend }, { name: shadow }]
"#,
        )
        .unwrap()
    }

    #[test]
    fn the_check_shows_the_request_as_it_would_be_sent() {
        let request = Request::get("http://api/old/x?y=1")
            .header("x-secret", "s")
            .body(())
            .unwrap();
        let (decision, sent) = check_route(&config(), &request).unwrap().into_parts();
        assert_eq!(decision.route(), "rewritten");
        assert_eq!(decision.cluster(), "backend");
        assert_eq!(decision.request_mirror_policies()[0].cluster, "shadow");
        assert_eq!(sent.uri(), "http://backend.internal/new/x?y=1");
        assert_eq!(sent.headers()["x-routed"], "yes");
        assert!(sent.headers().get("x-secret").is_none());
        // The request itself is untouched.
        assert_eq!(request.uri(), "http://api/old/x?y=1");
    }

    #[test]
    fn a_cluster_named_by_a_header_must_exist() {
        let to = |cluster: &str| {
            let request = Request::get("http://api/dynamic")
                .header("x-cluster", cluster)
                .body(())
                .unwrap();
            check_route(&config(), &request)
        };
        assert_eq!(to("backend").unwrap().decision().cluster(), "backend");
        let error = to("nowhere").unwrap_err();
        assert_eq!(error.kind(), ErrorKind::UnknownCluster);
        assert!(error.message().contains("\"nowhere\""), "{error}");
    }
}
