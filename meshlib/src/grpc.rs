//! gRPC over the mesh: a channel tonic's generated clients use unchanged.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use http::uri::{Authority, Scheme};
use http::{Request, Response, Uri};
use pin_project_lite::pin_project;
use tower_service::Service;

use crate::client::MeshClient;
use crate::connect::{Connect, EndpointClient, HttpConnect};
use crate::error::Error;

/// A gRPC channel to one logical service through a [`MeshClient`]: give it to
/// a tonic-generated client in place of `tonic::transport::Channel`.
///
/// Each RPC's `/package.Service/Method` path is routed like any other path,
/// with the channel's authority (`greeter` for `mesh.channel("greeter")`)
/// choosing the virtual host. Calls go over HTTP/2 whatever the cluster's
/// `protocol` (gRPC needs it). A request the
/// mesh cannot send fails with the gRPC status gRPC's own xDS clients use:
/// `UNAVAILABLE`, or `DEADLINE_EXCEEDED` for a route timeout.
///
/// ```no_run
/// # use meshlib::MeshClient;
/// # async fn example(mesh: MeshClient) -> Result<(), Box<dyn std::error::Error>> {
/// use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
///
/// let mut health = HealthClient::new(mesh.channel("greeter")?);
/// let reply = health.check(HealthCheckRequest { service: String::new() }).await?;
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct MeshChannel<C: Connect = HttpConnect> {
    client: MeshClient<C>,
    authority: Authority,
}

impl<C: Connect> MeshClient<C> {
    /// A gRPC channel to `authority` (e.g. `greeter` or `greeter:50051`) through this client.
    pub fn channel(&self, authority: &str) -> Result<MeshChannel<C>, http::uri::InvalidUri> {
        Ok(MeshChannel {
            client: self.clone(),
            authority: authority.parse()?,
        })
    }
}

impl<C: Connect> Service<Request<tonic::body::Body>> for MeshChannel<C> {
    type Response = Response<<C::Client as EndpointClient>::Body>;
    type Error = tonic::Status;
    type Future = ChannelFuture<<MeshClient<C> as Service<Request<tonic::body::Body>>>::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Service::<Request<tonic::body::Body>>::poll_ready(&mut self.client, cx).map_err(status)
    }

    fn call(&mut self, mut request: Request<tonic::body::Body>) -> Self::Future {
        // tonic sends origin-form URIs (`/pkg.Service/Method`): the channel
        // supplies the authority, as a transport Channel would.
        if request.uri().authority().is_none() {
            let mut parts = request.uri().clone().into_parts();
            parts.scheme = Some(Scheme::HTTP);
            parts.authority = Some(self.authority.clone());
            if let Ok(uri) = Uri::from_parts(parts) {
                *request.uri_mut() = uri;
            }
        }
        // gRPC is HTTP/2 whatever the cluster's default protocol.
        *request.version_mut() = http::Version::HTTP_2;
        ChannelFuture {
            inner: self.client.call(request),
        }
    }
}

fn status(error: Error) -> tonic::Status {
    let mut status = tonic::Status::new(tonic::Code::from(error.grpc_code()), error.to_string());
    status.set_source(std::sync::Arc::new(error));
    status
}

pin_project! {
    /// A [`MeshChannel`] response: the mesh's errors become gRPC statuses.
    pub struct ChannelFuture<F> {
        #[pin]
        inner: F,
    }
}

impl<F, T> Future for ChannelFuture<F>
where
    F: Future<Output = Result<T, Error>>,
{
    type Output = Result<T, tonic::Status>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.project().inner.poll(cx).map_err(status)
    }
}
