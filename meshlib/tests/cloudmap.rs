//! Cloud Map discovery against a real implementation of its API: moto's
//! server (`moto[server]` 5.2.5), started per test on a free loopback port.
//! Each test sets up its namespace, service and instances with the AWS SDK
//! itself (CreateHttpNamespace, CreateService, RegisterInstance,
//! DeregisterInstance, UpdateInstanceCustomHealthStatus) and changes them
//! mid-test.
//!
//! The SDK client is built with an explicit region, static credentials and
//! `endpoint_url` pointing at moto; nothing here loads `aws-config`'s chain
//! (it would probe the instance metadata address). The discovery tests send no
//! traffic to the addresses registered; the mesh test at the end sends
//! requests to loopback backends at the addresses the instances name.
//!
//! moto's `InstancesRevision` is the sum of per-instance counters: it can go
//! down, and a deregistration plus a registration can leave it unchanged. The
//! tests therefore compare instance lists, and change one instance at a time.
//!
//! moto must be installed: `scripts/install-moto` (which `scripts/test` runs)
//! puts it in `interop/.peers/moto`; `MESHLIB_MOTO_SERVER` may name another
//! `moto_server`. Without it these tests fail, they do not skip.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use aws_sdk_servicediscovery::Client;
use aws_sdk_servicediscovery::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_servicediscovery::types::{CustomHealthStatus, HealthCheckCustomConfig};
use meshlib::config::{CloudMapDiscovery, CloudMapHealthFilter, Endpoint, FailureRefresh};
use meshlib::discovery::{Publish, cloud_map};
use tokio::sync::mpsc;

mod support;

const SECOND: Duration = Duration::from_secs(1);
const REGION: &str = "us-east-1";

/// One moto server, killed (and its folder removed) on drop.
struct Moto {
    child: Option<Child>,
    port: u16,
    dir: PathBuf,
}

impl Moto {
    async fn start() -> Self {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "meshlib-moto-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let port = free_port();
        let child = Command::new(moto_binary())
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(dir.join("log")).unwrap())
            .stderr(std::fs::File::create(dir.join("err")).unwrap())
            .spawn()
            .unwrap_or_else(|e| panic!("moto_server could not be started: {e}"));
        let mut moto = Moto {
            child: Some(child),
            port,
            dir,
        };
        moto.wait_until_listening().await;
        moto
    }

    /// Connects until moto accepts (at most 20 s: its first start compiles).
    async fn wait_until_listening(&mut self) {
        let deadline = Instant::now() + 20 * SECOND;
        while Instant::now() < deadline {
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().unwrap()) {
                panic!("moto_server exited with {status}: {}", self.log());
            }
            if TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("moto_server did not listen within 20 s: {}", self.log());
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("err")).unwrap_or_default()
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// A client for moto: explicit region, static credentials, moto's URL.
    fn sdk_config(&self) -> aws_sdk_servicediscovery::Config {
        sdk_config().to_builder().endpoint_url(self.url()).build()
    }

    fn client(&self) -> Client {
        Client::from_conf(self.sdk_config())
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The AWS SDK configuration of every client here: no chain is consulted.
fn sdk_config() -> aws_sdk_servicediscovery::Config {
    aws_sdk_servicediscovery::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(REGION))
        .credentials_provider(Credentials::new("testing", "testing", None, None, "tests"))
        .build()
}

fn moto_binary() -> PathBuf {
    let path = std::env::var_os("MESHLIB_MOTO_SERVER")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../interop/.peers/moto/bin/moto_server")
        });
    assert!(
        path.is_file(),
        "moto_server is not installed at {}: these tests need moto's Cloud Map \
         (run scripts/install-moto, which scripts/test runs, or set MESHLIB_MOTO_SERVER)",
        path.display()
    );
    path
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A namespace and service set up in moto, and the calls that change its
/// instances.
struct Registry {
    client: Client,
    namespace: String,
    service: String,
    service_id: String,
}

impl Registry {
    /// The HTTP namespace `namespace` with the service `service`, whose
    /// instances report their health through UpdateInstanceCustomHealthStatus.
    async fn create(moto: &Moto, namespace: &str, service: &str) -> Self {
        let client = moto.client();
        let operation = client
            .create_http_namespace()
            .name(namespace)
            .send()
            .await
            .unwrap();
        let operation = client
            .get_operation()
            .operation_id(operation.operation_id().unwrap())
            .send()
            .await
            .unwrap();
        let targets = operation.operation().unwrap().targets().unwrap();
        let namespace_id = targets
            .iter()
            .find(|(kind, _)| kind.as_str() == "NAMESPACE")
            .map(|(_, id)| id.clone())
            .unwrap();
        let created = client
            .create_service()
            .name(service)
            .namespace_id(namespace_id)
            .health_check_custom_config(HealthCheckCustomConfig::builder().build())
            .send()
            .await
            .unwrap();
        Registry {
            client,
            namespace: namespace.to_owned(),
            service: service.to_owned(),
            service_id: created.service().unwrap().id().unwrap().to_owned(),
        }
    }

    async fn register(&self, id: &str, attributes: &[(&str, &str)]) {
        let mut request = self
            .client
            .register_instance()
            .service_id(&self.service_id)
            .instance_id(id);
        for (key, value) in attributes {
            request = request.attributes(*key, *value);
        }
        request.send().await.unwrap();
    }

    async fn deregister(&self, id: &str) {
        self.client
            .deregister_instance()
            .service_id(&self.service_id)
            .instance_id(id)
            .send()
            .await
            .unwrap();
    }

    async fn set_health(&self, id: &str, status: CustomHealthStatus) {
        self.client
            .update_instance_custom_health_status()
            .service_id(&self.service_id)
            .instance_id(id)
            .status(status)
            .send()
            .await
            .unwrap();
    }

    /// Discovery of this service through `moto`, polling fast.
    fn discovery(&self, moto: &Moto) -> CloudMapDiscovery {
        let mut config = CloudMapDiscovery::new(&self.namespace, &self.service)
            .with_endpoint_url(moto.url())
            .with_region(REGION);
        config.refresh_rate = Duration::from_millis(100);
        config.full_refresh_interval = Duration::from_millis(500);
        config.failure_refresh_rate = Some(FailureRefresh::new(
            Duration::from_millis(100),
            Duration::from_millis(400),
        ));
        config.request_timeout = SECOND;
        config
    }
}

#[derive(Debug)]
enum Event {
    Endpoints(Vec<Endpoint>),
    Failed(String),
}

struct Events(mpsc::UnboundedSender<Event>);

impl Publish for Events {
    fn endpoints(&mut self, endpoints: Vec<Endpoint>) -> bool {
        self.0.send(Event::Endpoints(endpoints)).is_ok()
    }

    fn failed(&mut self, error: meshlib::Error) -> bool {
        assert_eq!(error.kind(), meshlib::ErrorKind::Discovery);
        self.0.send(Event::Failed(error.to_string())).is_ok()
    }
}

/// A running discovery task; it stops when this is dropped.
struct Discovery {
    rx: mpsc::UnboundedReceiver<Event>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Discovery {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn discover(config: CloudMapDiscovery) -> Discovery {
    let (tx, rx) = mpsc::unbounded_channel();
    let task = tokio::spawn(cloud_map::run_with_sdk_config(
        Arc::from("reviews"),
        config,
        sdk_config(),
        Events(tx),
    ));
    Discovery { rx, task }
}

impl Discovery {
    async fn next(&mut self, within: Duration) -> Event {
        tokio::time::timeout(within, self.rx.recv())
            .await
            .unwrap_or_else(|_| panic!("no event within {within:?}"))
            .expect("the discovery task is running")
    }

    /// The next event, which must be an endpoint list.
    async fn endpoints(&mut self) -> Vec<String> {
        match self.next(5 * SECOND).await {
            Event::Endpoints(endpoints) => show(&endpoints),
            Event::Failed(message) => panic!("expected endpoints, got a failure: {message}"),
        }
    }

    /// The next event, which must be a failure.
    async fn failed(&mut self) -> String {
        match self.next(5 * SECOND).await {
            Event::Failed(message) => message,
            Event::Endpoints(endpoints) => panic!("expected a failure, got {endpoints:?}"),
        }
    }
}

/// The endpoints as `address weight priority health zone` lines.
fn show(endpoints: &[Endpoint]) -> Vec<String> {
    endpoints
        .iter()
        .map(|e| {
            let mut line = format!("{} w{} p{} {:?}", e.address, e.weight, e.priority, e.health);
            if !e.locality.zone.is_empty() {
                line.push_str(&format!(" {}/{}", e.locality.region, e.locality.zone));
            }
            line
        })
        .collect()
}

#[tokio::test]
async fn instances_become_endpoints_with_their_ports_weights_priorities_and_zones() {
    let moto = Moto::start().await;
    let registry = Registry::create(&moto, "prod.internal", "reviews").await;
    registry
        .register(
            "task-1",
            &[
                ("AWS_INSTANCE_IPV4", "127.0.0.11"),
                ("AWS_INSTANCE_PORT", "8080"),
                ("weight", "3"),
                ("REGION", REGION),
                ("AVAILABILITY_ZONE", "us-east-1a"),
            ],
        )
        .await;
    // No port: the cluster's `port`; a backup at priority 1.
    registry
        .register(
            "task-2",
            &[("AWS_INSTANCE_IPV4", "127.0.0.12"), ("priority", "1")],
        )
        .await;
    // IPv6 too: IPv4 is preferred, one endpoint per instance.
    registry
        .register(
            "task-3",
            &[
                ("AWS_INSTANCE_IPV4", "127.0.0.13"),
                ("AWS_INSTANCE_IPV6", "::1"),
                ("AWS_INSTANCE_PORT", "8081"),
            ],
        )
        .await;
    // A CNAME instance has no address to connect to: left out.
    registry
        .register("legacy", &[("AWS_INSTANCE_CNAME", "reviews.example.com")])
        .await;
    let mut config = registry.discovery(&moto);
    config.port = Some(9090);
    let mut discovery = discover(config);
    assert_eq!(
        discovery.endpoints().await,
        [
            "127.0.0.11:8080 w3 p0 Healthy us-east-1/us-east-1a",
            "127.0.0.12:9090 w1 p1 Healthy",
            "127.0.0.13:8081 w1 p0 Healthy",
        ]
    );
}

#[tokio::test]
async fn registrations_deregistrations_and_health_changes_are_followed() {
    let moto = Moto::start().await;
    let registry = Registry::create(&moto, "prod.internal", "reviews").await;
    let a = [
        ("AWS_INSTANCE_IPV4", "127.0.0.11"),
        ("AWS_INSTANCE_PORT", "80"),
    ];
    let b = [
        ("AWS_INSTANCE_IPV4", "127.0.0.12"),
        ("AWS_INSTANCE_PORT", "80"),
    ];
    registry.register("a", &a).await;
    let mut healthy = discover(registry.discovery(&moto));
    let mut every = registry.discovery(&moto);
    every.health_status = CloudMapHealthFilter::All;
    let mut all = discover(every);
    assert_eq!(healthy.endpoints().await, ["127.0.0.11:80 w1 p0 Healthy"]);
    assert_eq!(all.endpoints().await, ["127.0.0.11:80 w1 p0 Healthy"]);

    let changed = Instant::now();
    registry.register("b", &b).await;
    let both = ["127.0.0.11:80 w1 p0 Healthy", "127.0.0.12:80 w1 p0 Healthy"];
    assert_eq!(healthy.endpoints().await, both);
    assert_eq!(all.endpoints().await, both);
    assert!(changed.elapsed() < SECOND, "{:?}", changed.elapsed());

    registry.deregister("a").await;
    assert_eq!(healthy.endpoints().await, ["127.0.0.12:80 w1 p0 Healthy"]);
    assert_eq!(all.endpoints().await, ["127.0.0.12:80 w1 p0 Healthy"]);

    // A health change moves no revision: the full refresh (every 500 ms here)
    // brings it. `healthy` drops the instance; `all` keeps it, unhealthy.
    let changed = Instant::now();
    registry
        .set_health("b", CustomHealthStatus::Unhealthy)
        .await;
    assert_eq!(healthy.endpoints().await, Vec::<String>::new());
    assert_eq!(all.endpoints().await, ["127.0.0.12:80 w1 p0 Unhealthy"]);
    assert!(changed.elapsed() < 2 * SECOND, "{:?}", changed.elapsed());

    registry.set_health("b", CustomHealthStatus::Healthy).await;
    assert_eq!(healthy.endpoints().await, ["127.0.0.12:80 w1 p0 Healthy"]);
    assert_eq!(all.endpoints().await, ["127.0.0.12:80 w1 p0 Healthy"]);
}

#[tokio::test]
async fn query_parameters_filter_instances_by_attribute_and_optional_ones_prefer() {
    let moto = Moto::start().await;
    let registry = Registry::create(&moto, "prod.internal", "reviews").await;
    for (id, ip, version, zone) in [
        ("v1-a", "127.0.0.11", "v1", "us-east-1a"),
        ("v2-a", "127.0.0.12", "v2", "us-east-1a"),
        ("v2-b", "127.0.0.13", "v2", "us-east-1b"),
    ] {
        registry
            .register(
                id,
                &[
                    ("AWS_INSTANCE_IPV4", ip),
                    ("AWS_INSTANCE_PORT", "80"),
                    ("version", version),
                    ("AVAILABILITY_ZONE", zone),
                ],
            )
            .await;
    }
    let zones = |endpoints: Vec<String>| -> Vec<String> {
        endpoints
            .iter()
            .map(|e| e.split(' ').next().unwrap().to_owned())
            .collect()
    };
    let mut v2 = discover(
        registry
            .discovery(&moto)
            .with_query_parameter("version", "v2"),
    );
    assert_eq!(
        zones(v2.endpoints().await),
        ["127.0.0.12:80", "127.0.0.13:80"]
    );

    let mut preferring = registry
        .discovery(&moto)
        .with_query_parameter("version", "v2");
    preferring
        .optional_parameters
        .insert("AVAILABILITY_ZONE".to_owned(), "us-east-1b".to_owned());
    let mut zone_b = discover(preferring.clone());
    assert_eq!(zones(zone_b.endpoints().await), ["127.0.0.13:80"]);

    // No v2 instance left in zone b: the optional filter is dropped.
    registry.deregister("v2-b").await;
    assert_eq!(zones(zone_b.endpoints().await), ["127.0.0.12:80"]);
    assert_eq!(zones(v2.endpoints().await), ["127.0.0.12:80"]);

    // A newly registered v1 instance is not a v2 one.
    registry
        .register(
            "v1-b",
            &[
                ("AWS_INSTANCE_IPV4", "127.0.0.14"),
                ("AWS_INSTANCE_PORT", "80"),
                ("version", "v1"),
            ],
        )
        .await;
    tokio::time::sleep(SECOND).await;
    assert!(v2.rx.try_recv().is_err(), "v1-b is not a v2 instance");
}

#[tokio::test]
async fn moto_gone_keeps_the_last_endpoints_and_reports_every_failed_refresh() {
    let mut moto = Moto::start().await;
    let registry = Registry::create(&moto, "prod.internal", "reviews").await;
    registry
        .register(
            "a",
            &[
                ("AWS_INSTANCE_IPV4", "127.0.0.11"),
                ("AWS_INSTANCE_PORT", "80"),
            ],
        )
        .await;
    let mut discovery = discover(registry.discovery(&moto));
    assert_eq!(discovery.endpoints().await, ["127.0.0.11:80 w1 p0 Healthy"]);

    moto.kill();
    let killed = Instant::now();
    let message = discovery.failed().await;
    assert!(killed.elapsed() < 2 * SECOND, "{:?}", killed.elapsed());
    let prefix = "discovery failed: cluster \"reviews\": Cloud Map service \"reviews\" in namespace \
         \"prod.internal\": DiscoverInstances";
    assert!(message.starts_with(prefix), "{message}");
    assert!(
        message.ends_with("failed: dispatch failure: io error: client error (Connect): tcp connect error: Connection refused (os error 111)"),
        "{message}"
    );
    // Only failures follow, on the backoff: no empty list replaces the last one.
    for _ in 0..3 {
        let message = discovery.failed().await;
        assert!(message.starts_with(prefix), "{message}");
    }
}

#[tokio::test]
async fn a_service_that_does_not_exist_is_reported_by_name() {
    let moto = Moto::start().await;
    let registry = Registry::create(&moto, "prod.internal", "reviews").await;
    let mut missing = registry.discovery(&moto);
    missing.service = "ratings".to_owned();
    let mut discovery = discover(missing);
    let message = discovery.failed().await;
    assert!(
        message.starts_with(
            "discovery failed: cluster \"reviews\": Cloud Map service \"ratings\" in namespace \
             \"prod.internal\": DiscoverInstances failed: ServiceNotFound"
        ),
        "{message}"
    );
}

/// A mesh whose cluster `reviews` follows `registry`'s service through moto.
fn cloud_map_mesh(moto: &Moto, registry: &Registry) -> meshlib::MeshClient {
    let yaml = format!(
        r#"
virtual_hosts:
  - name: reviews
    domains: [reviews]
    routes: [{{ name: all, match: {{ prefix: / }}, route: {{ cluster: reviews }} }}]
clusters:
  - name: reviews
    discovery:
      cloud_map:
        namespace: {}
        service: {}
        refresh_rate: 100ms
        full_refresh_interval: 1s
        failure_refresh_rate: {{ base_interval: 100ms, max_interval: 400ms }}
        request_timeout: 1s
        endpoint_url: {}
"#,
        registry.namespace,
        registry.service,
        moto.url()
    );
    meshlib::MeshClient::builder()
        .config(meshlib::config::MeshConfig::from_yaml(&yaml).unwrap())
        // Credentials and region given here: no aws-config chain in tests.
        .cloud_map(sdk_config())
        .build()
        .unwrap()
}

#[tokio::test]
async fn traffic_follows_a_re_registration_with_no_failed_request_and_outlives_cloud_map() {
    // Two backends on one port of two loopback addresses: the instances say which.
    let v1 = support::Backend::start_at("v1", "127.0.0.2:0".parse().unwrap()).await;
    let port = v1.address.port().to_string();
    let v2 =
        support::Backend::start_at("v2", SocketAddr::from(([127, 0, 0, 3], v1.address.port())))
            .await;
    let mut moto = Moto::start().await;
    let registry = Registry::create(&moto, "prod.internal", "reviews").await;
    registry
        .register(
            "v1",
            &[
                ("AWS_INSTANCE_IPV4", "127.0.0.2"),
                ("AWS_INSTANCE_PORT", &port),
            ],
        )
        .await;
    let mesh = cloud_map_mesh(&moto, &registry);
    // Until the first answer the cluster has no endpoint (no warming yet).
    support::until("the first answer", || {
        mesh.endpoints("reviews").is_some_and(|e| !e.is_empty())
    })
    .await;

    let traffic = support::Traffic::start(&mesh, "http://reviews/");
    support::until("v1 takes traffic", || v1.requests() > 50).await;
    let version = mesh.version();

    // Blue/green: v2 registers, then v1 goes.
    registry
        .register(
            "v2",
            &[
                ("AWS_INSTANCE_IPV4", "127.0.0.3"),
                ("AWS_INSTANCE_PORT", &port),
            ],
        )
        .await;
    support::until("v2 takes traffic too", || v2.requests() > 50).await;
    registry.deregister("v1").await;
    support::until("the cluster is v2 alone", || {
        mesh.endpoints("reviews")
            .is_some_and(|e| e.len() == 1 && e[0].address == v2.address)
    })
    .await;
    let v1_after = v1.requests();
    let v2_after = v2.requests();
    support::until("v2 takes all of it", || v2.requests() > v2_after + 200).await;
    assert!(
        v1.requests() <= v1_after + 8,
        "v1 still served after it was deregistered"
    );
    assert_eq!(mesh.version(), version, "no configuration was rebuilt");

    // Cloud Map goes away: the last endpoints keep serving.
    moto.kill();
    let served = v2.requests();
    support::until("v2 serves on without Cloud Map", || {
        v2.requests() > served + 200
    })
    .await;
    assert_eq!(traffic.stop().await.failed, 0);
}

#[tokio::test]
async fn a_cluster_whose_service_does_not_exist_fails_requests_saying_why() {
    let moto = Moto::start().await;
    let registry = Registry {
        service: "missing".to_owned(),
        ..Registry::create(&moto, "prod.internal", "reviews").await
    };
    let mesh = cloud_map_mesh(&moto, &registry);
    let wait = async {
        loop {
            let error = support::send(&mesh, "http://reviews/", &[])
                .await
                .unwrap_err();
            if error.kind() == meshlib::ErrorKind::Discovery {
                return error;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    let error = tokio::time::timeout(5 * SECOND, wait)
        .await
        .expect("the failure is reported");
    assert!(error.to_string().contains("\"missing\""), "{error}");
    assert!(error.to_string().contains("ServiceNotFound"), "{error}");
    assert_eq!(
        error.kind().http_status(),
        http::StatusCode::SERVICE_UNAVAILABLE
    );
}
