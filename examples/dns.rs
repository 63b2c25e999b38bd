//! A cluster whose endpoints come from DNS.
//!
//! Starts a loopback backend, then a `MeshClient` whose cluster `hello`
//! resolves `localhost` (answered by the resolver itself, RFC 6761, so this
//! runs anywhere) every second, as an Envoy `STRICT_DNS` cluster would; it
//! waits for the first answer, prints the endpoints found and sends a few
//! requests. A cluster for a real service names it instead, e.g.
//! `reviews.default.svc.cluster.local` (see `config/dns.yaml`).
//!
//! Run it with `cargo run -p meshlib-examples --bin dns`.

use std::convert::Infallible;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Empty, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use meshlib::MeshClient;
use meshlib::config::MeshConfig;
use tokio::net::TcpListener;
use tower::ServiceExt;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    tokio::spawn(async move {
        while let Ok((stream, peer)) = listener.accept().await {
            let service = hyper::service::service_fn(move |_: Request<hyper::body::Incoming>| {
                let body = format!("hello, {peer}");
                async move { Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(body)))) }
            });
            tokio::spawn(async move {
                let server = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                let _ = server.serve_connection(TokioIo::new(stream), service).await;
            });
        }
    });

    let mesh = MeshClient::new(MeshConfig::from_yaml(&format!(
        r#"
virtual_hosts:
  - name: hello
    domains: [hello]
    routes: [{{ match: {{ prefix: / }}, route: {{ cluster: hello }} }}]
clusters:
  - name: hello
    discovery:
      dns:
        targets: [{{ name: localhost, port: {port} }}]
        refresh_rate: 1s
        lookup_family: v4_only   # the backend listens on 127.0.0.1 only
"#
    ))?)?;

    // The cluster takes traffic once its first answer is in.
    let endpoints = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match mesh.endpoints("hello") {
                Some(endpoints) if !endpoints.is_empty() => return endpoints,
                _ => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
    })
    .await
    .map_err(|_| "localhost did not resolve within 10 s")?;
    let addresses: Vec<String> = endpoints.iter().map(|e| e.address.to_string()).collect();
    println!(
        "cluster hello resolved localhost to {}",
        addresses.join(", ")
    );

    for _ in 0..3 {
        let request = Request::get("http://hello/").body(Empty::<Bytes>::new())?;
        let response = mesh.clone().oneshot(request).await?;
        let body = response.into_body().collect().await?.to_bytes();
        println!("  {}", String::from_utf8_lossy(&body));
    }
    Ok(())
}
