//! Shared pieces of meshlib's benchmarks: an in-memory endpoint, for measuring
//! the mesh's own cost per request, and a loopback backend, for measuring it
//! against the bare hyper-util client on real sockets; and [`churn`], endpoint
//! churn under load, which the churn test and the soak binary are made of.

use std::convert::Infallible;
use std::future::{Ready, ready};
use std::net::SocketAddr;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{Empty, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use meshlib::BoxBody;
use meshlib::config::Cluster;
use meshlib::connect::{Connect, EndpointClient};
use tokio::net::TcpListener;

pub mod churn;

/// Endpoints that answer `200` at once, in memory: what is left of a request's
/// cost is meshlib's.
#[derive(Debug, Clone, Copy, Default)]
pub struct InMemory;

/// One [`InMemory`] endpoint.
#[derive(Debug, Clone, Copy)]
pub struct InMemoryEndpoint;

impl Connect for InMemory {
    type Client = InMemoryEndpoint;
    type Cluster = fn(SocketAddr) -> InMemoryEndpoint;

    fn cluster(&self, _: &Cluster) -> Self::Cluster {
        |_| InMemoryEndpoint
    }
}

impl EndpointClient for InMemoryEndpoint {
    type Body = Empty<Bytes>;
    type Future = Ready<Result<Response<Empty<Bytes>>, meshlib::Error>>;

    fn send(&self, _: Request<BoxBody>) -> Self::Future {
        ready(Ok(Response::new(Empty::new())))
    }
}

/// Starts a loopback HTTP/1.1 + h2c server answering `hello` to everything;
/// its address.
pub async fn hello_server() -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let _ = stream.set_nodelay(true);
            let service = hyper::service::service_fn(|_: Request<hyper::body::Incoming>| async {
                Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"hello"))))
            });
            tokio::spawn(async move {
                let server = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                let _ = server.serve_connection(TokioIo::new(stream), service).await;
            });
        }
    });
    Ok(address)
}
