//! DNS discovery against a real name server: Debian's dnsmasq, started per
//! test on a free loopback port, serving A/AAAA records from a hosts file
//! (rewritten and re-read on SIGHUP mid-test), SRV and CNAME records from its
//! command line (a restart on the same port changes those).
//!
//! The resolver tests send no traffic to the addresses found (loopback
//! addresses used as data); the mesh tests at the end send requests to
//! loopback backends at the addresses the records name.
//!
//! dnsmasq must be installed (`apt-get install dnsmasq-base`; `scripts/test`
//! installs it): without it these tests fail, they do not skip.

use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use meshlib::config::{DnsDiscovery, DnsTarget, Endpoint, FailureRefresh, LookupFamily};
use meshlib::discovery::{Publish, dns};

mod support;
use tokio::sync::mpsc;

/// One dnsmasq process, killed (and its folder removed) on drop.
struct Dnsmasq {
    child: Option<Child>,
    port: u16,
    dir: PathBuf,
    ttl: u32,
    records: Vec<String>,
}

impl Dnsmasq {
    /// Serves `hosts` (hosts-file lines) and `records` (dnsmasq options such
    /// as `--srv-host=…`), every answer with a TTL of `ttl` seconds. Names
    /// under `test.` that it does not know answer NXDOMAIN.
    async fn start(hosts: &str, records: &[&str], ttl: u32) -> Self {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "meshlib-dns-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("hosts"), hosts).unwrap();
        let mut server = Dnsmasq {
            child: None,
            port: free_port(),
            dir,
            ttl,
            records: records.iter().map(|r| r.to_string()).collect(),
        };
        server.spawn().await;
        server
    }

    fn address(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    async fn spawn(&mut self) {
        let mut command = Command::new(dnsmasq_binary());
        command
            .arg(format!("--port={}", self.port))
            .args([
                "--listen-address=127.0.0.1",
                "--bind-interfaces",
                "--no-resolv",
                "--no-hosts",
                "--no-daemon",
                "--no-negcache",
                "--conf-file=/dev/null",
                "--local=/test/",
            ])
            .arg(format!("--local-ttl={}", self.ttl))
            .arg(format!("--addn-hosts={}", self.dir.join("hosts").display()))
            .arg(format!("--pid-file={}", self.dir.join("pid").display()))
            .args(
                self.records
                    .iter()
                    .map(|r| r.replace("{ttl}", &self.ttl.to_string())),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(self.dir.join("log")).unwrap());
        self.child = Some(command.spawn().unwrap_or_else(|e| {
            panic!(
                "dnsmasq could not be started ({e}); install it with `apt-get install dnsmasq-base`"
            )
        }));
        self.wait_until_answering().await;
    }

    /// Asks a query until dnsmasq answers it (at most 5 s).
    async fn wait_until_answering(&mut self) {
        let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut buf = [0u8; 512];
        while Instant::now() < deadline {
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().unwrap()) {
                panic!("dnsmasq exited with {status}: {}", self.log());
            }
            socket
                .send_to(&probe_query(), self.address())
                .await
                .unwrap();
            if let Ok(Ok(_)) =
                tokio::time::timeout(Duration::from_millis(100), socket.recv_from(&mut buf)).await
            {
                return;
            }
        }
        panic!("dnsmasq did not answer within 5 s: {}", self.log());
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("log")).unwrap_or_default()
    }

    /// Replaces the hosts file and has dnsmasq re-read it (SIGHUP).
    fn set_hosts(&self, hosts: &str) {
        std::fs::write(self.dir.join("hosts"), hosts).unwrap();
        let pid = self.child.as_ref().unwrap().id().to_string();
        let status = Command::new("kill").args(["-HUP", &pid]).status().unwrap();
        assert!(status.success());
    }

    /// Restarts on the same port with other `records`: SIGHUP does not re-read
    /// SRV or CNAME records.
    async fn restart(&mut self, records: &[&str]) {
        self.kill();
        self.records = records.iter().map(|r| r.to_string()).collect();
        self.spawn().await;
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Dnsmasq {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn dnsmasq_binary() -> &'static str {
    // Debian installs it in /usr/sbin, which a non-root PATH may lack.
    for candidate in ["dnsmasq", "/usr/sbin/dnsmasq"] {
        if Command::new(candidate)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok()
        {
            return candidate;
        }
    }
    panic!(
        "dnsmasq is not installed: these tests need a real DNS server \
         (`apt-get install dnsmasq-base`; scripts/test installs it)"
    );
}

/// A loopback port free for both UDP and TCP (dnsmasq cannot bind port 0).
fn free_port() -> u16 {
    loop {
        let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = udp.local_addr().unwrap().port();
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// A DNS query for `ready.test. A`.
fn probe_query() -> Vec<u8> {
    let mut query = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
    for label in ["ready", "test"] {
        query.push(label.len() as u8);
        query.extend_from_slice(label.as_bytes());
    }
    query.extend_from_slice(&[0, 0, 1, 0, 1]);
    query
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

/// Resolves with `server` as the only name server, refreshing every `refresh`.
fn discover(server: &Dnsmasq, mut config: DnsDiscovery, refresh: Duration) -> Discovery {
    config.resolvers = vec![server.address()];
    config.refresh_rate = refresh;
    let (tx, rx) = mpsc::unbounded_channel();
    let task = tokio::spawn(dns::run(Arc::from("reviews"), config, Events(tx)));
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
    async fn endpoints(&mut self, within: Duration) -> Vec<Endpoint> {
        match self.next(within).await {
            Event::Endpoints(endpoints) => endpoints,
            Event::Failed(message) => panic!("expected endpoints, got a failure: {message}"),
        }
    }

    /// The next event, which must be a failure.
    async fn failed(&mut self, within: Duration) -> String {
        match self.next(within).await {
            Event::Failed(message) => message,
            Event::Endpoints(endpoints) => panic!("expected a failure, got {endpoints:?}"),
        }
    }
}

/// The endpoints as `address weight priority` lines, for readable asserts.
fn show(endpoints: &[Endpoint]) -> Vec<String> {
    endpoints
        .iter()
        .map(|e| format!("{} w{} p{}", e.address, e.weight, e.priority))
        .collect()
}

const SECOND: Duration = Duration::from_secs(1);
const FAST: Duration = Duration::from_millis(200);

const HOSTS: &str = "127.0.0.11 a.test\n127.0.0.12 a.test\n127.0.0.13 b.test\n";

#[tokio::test]
async fn a_records_of_two_names_become_endpoints() {
    let server = Dnsmasq::start(HOSTS, &[], 1).await;
    let config = DnsDiscovery::strict(vec![
        DnsTarget::address("a.test", 8080).with_weight(2),
        DnsTarget::address("b.test", 9090).with_priority(1),
    ]);
    let mut discovery = discover(&server, config, FAST);
    assert_eq!(
        show(&discovery.endpoints(5 * SECOND).await),
        [
            "127.0.0.11:8080 w2 p0",
            "127.0.0.12:8080 w2 p0",
            "127.0.0.13:9090 w1 p1"
        ]
    );
}

#[tokio::test]
async fn a_changed_record_is_picked_up_when_its_1s_ttl_runs_out() {
    let server = Dnsmasq::start(HOSTS, &[], 1).await;
    let mut config = DnsDiscovery::strict(vec![DnsTarget::address("a.test", 80)]);
    config.respect_ttl = true;
    // A refresh rate far beyond the test: only the TTL can bring the change.
    let mut discovery = discover(&server, config, Duration::from_secs(600));
    assert_eq!(discovery.endpoints(5 * SECOND).await.len(), 2);

    server.set_hosts("127.0.0.14 a.test\n127.0.0.13 b.test\n");
    let changed = Instant::now();
    assert_eq!(
        show(&discovery.endpoints(3 * SECOND).await),
        ["127.0.0.14:80 w1 p0"]
    );
    assert!(changed.elapsed() < Duration::from_millis(2500));
}

#[tokio::test]
async fn without_respect_ttl_the_refresh_rate_paces_lookups_not_a_cache() {
    // An hour's TTL: a resolver answering from its cache would miss the change.
    let server = Dnsmasq::start(HOSTS, &[], 3600).await;
    let config = DnsDiscovery::strict(vec![DnsTarget::address("b.test", 80)]);
    let mut discovery = discover(&server, config, FAST);
    assert_eq!(
        show(&discovery.endpoints(5 * SECOND).await),
        ["127.0.0.13:80 w1 p0"]
    );
    server.set_hosts("127.0.0.15 b.test\n");
    assert_eq!(
        show(&discovery.endpoints(2 * SECOND).await),
        ["127.0.0.15:80 w1 p0"]
    );
}

#[tokio::test]
async fn srv_records_become_endpoints_with_their_ports_priorities_and_weights() {
    let mut server = Dnsmasq::start(
        HOSTS,
        &[
            // --srv-host=name,target,port,priority,weight
            "--srv-host=_http._tcp.s.test,a.test,8080,10,0",
            "--srv-host=_http._tcp.s.test,b.test,8081,20,5",
        ],
        1,
    )
    .await;
    let config = DnsDiscovery::strict(vec![DnsTarget::srv("_http._tcp.s.test")]);
    let mut discovery = discover(&server, config, FAST);
    assert_eq!(
        show(&discovery.endpoints(5 * SECOND).await),
        [
            "127.0.0.11:8080 w1 p0",
            "127.0.0.12:8080 w1 p0",
            "127.0.0.13:8081 w5 p1"
        ]
    );

    // dnsmasq re-reads no SRV record on SIGHUP: restart it with new ones.
    server
        .restart(&[
            "--srv-host=_http._tcp.s.test,b.test,8082,30,3",
            "--srv-host=_http._tcp.s.test,a.test,8080,40,1",
        ])
        .await;
    let endpoints = loop {
        // The restart may fail a refresh or two; those keep the old list.
        match discovery.next(5 * SECOND).await {
            Event::Endpoints(endpoints) => break endpoints,
            Event::Failed(message) => assert!(message.contains("_http._tcp.s.test"), "{message}"),
        }
    };
    assert_eq!(
        show(&endpoints),
        [
            "127.0.0.11:8080 w1 p1",
            "127.0.0.12:8080 w1 p1",
            "127.0.0.13:8082 w3 p0"
        ]
    );
}

#[tokio::test]
async fn a_cname_chain_resolves_to_its_address_records() {
    // An ExternalName Service is a CNAME; here, two in a row.
    let server = Dnsmasq::start(
        HOSTS,
        &[
            "--cname=alias.test,b.test",
            "--cname=external.test,alias.test",
        ],
        1,
    )
    .await;
    let config = DnsDiscovery::strict(vec![DnsTarget::address("external.test", 80)]);
    let mut discovery = discover(&server, config, FAST);
    assert_eq!(
        show(&discovery.endpoints(5 * SECOND).await),
        ["127.0.0.13:80 w1 p0"]
    );
}

#[tokio::test]
async fn lookup_families_choose_a_or_aaaa_records() {
    let server = Dnsmasq::start(
        "127.0.0.21 v4.test\n",
        &["--host-record=dual.test,127.0.0.20,::1"],
        1,
    )
    .await;
    let cases = [
        (
            "dual.test",
            LookupFamily::V4Only,
            vec!["127.0.0.20:80 w1 p0"],
        ),
        ("dual.test", LookupFamily::V6Only, vec!["[::1]:80 w1 p0"]),
        (
            "dual.test",
            LookupFamily::All,
            vec!["127.0.0.20:80 w1 p0", "[::1]:80 w1 p0"],
        ),
        // Envoy's AUTO: IPv6, else IPv4.
        ("dual.test", LookupFamily::Auto, vec!["[::1]:80 w1 p0"]),
        ("v4.test", LookupFamily::Auto, vec!["127.0.0.21:80 w1 p0"]),
        (
            "dual.test",
            LookupFamily::V4Preferred,
            vec!["127.0.0.20:80 w1 p0"],
        ),
        // NOERROR without AAAA records is an answer: no endpoints.
        ("v4.test", LookupFamily::V6Only, vec![]),
    ];
    for (name, family, expected) in cases {
        let mut config = DnsDiscovery::strict(vec![DnsTarget::address(name, 80)]);
        config.lookup_family = family;
        let mut discovery = discover(&server, config, FAST);
        assert_eq!(
            show(&discovery.endpoints(5 * SECOND).await),
            expected,
            "{name} {family:?}"
        );
    }
}

#[tokio::test]
async fn logical_dns_takes_the_first_address_only() {
    let server = Dnsmasq::start(HOSTS, &[], 1).await;
    let config = DnsDiscovery::logical(DnsTarget::address("a.test", 443));
    let mut discovery = discover(&server, config, FAST);
    let endpoints = show(&discovery.endpoints(5 * SECOND).await);
    // dnsmasq rotates the order of its answers: either address may come first.
    assert!(
        endpoints == ["127.0.0.11:443 w1 p0"] || endpoints == ["127.0.0.12:443 w1 p0"],
        "{endpoints:?}"
    );
}

#[tokio::test]
async fn a_dead_server_keeps_the_last_endpoints_and_is_reported() {
    let mut server = Dnsmasq::start(HOSTS, &[], 1).await;
    let mut config = DnsDiscovery::strict(vec![DnsTarget::address("b.test", 80)]);
    config.failure_refresh_rate = Some(FailureRefresh::new(
        Duration::from_millis(100),
        Duration::from_millis(400),
    ));
    // A dead server on loopback answers nothing (no ICMP error reaches an
    // unconnected UDP socket): its failure is a timeout.
    config.query_timeout = Duration::from_millis(600);
    let mut discovery = discover(&server, config, FAST);
    assert_eq!(discovery.endpoints(5 * SECOND).await.len(), 1);

    server.kill();
    let killed = Instant::now();
    let message = discovery.failed(2 * SECOND).await;
    assert!(killed.elapsed() < Duration::from_millis(1500));
    assert_eq!(
        message,
        "discovery failed: cluster \"reviews\": DNS name \"b.test\" did not resolve: no answer within 600ms"
    );
    // Only failures follow: the last endpoints stay, no empty list replaces them.
    for _ in 0..2 {
        let message = discovery.failed(2 * SECOND).await;
        assert!(message.contains("\"b.test\""), "{message}");
    }
}

#[tokio::test]
async fn a_removed_name_keeps_its_last_endpoints_and_is_named() {
    let server = Dnsmasq::start(HOSTS, &[], 1).await;
    let config = DnsDiscovery::strict(vec![
        DnsTarget::address("a.test", 80),
        DnsTarget::address("b.test", 81),
    ]);
    let mut discovery = discover(&server, config, FAST);
    assert_eq!(discovery.endpoints(5 * SECOND).await.len(), 3);

    // b.test is gone (NXDOMAIN) while a.test changes: a's update is published
    // beside b's last addresses.
    server.set_hosts("127.0.0.16 a.test\n");
    let mut updated = None;
    let mut failure = None;
    while updated.is_none() || failure.is_none() {
        match discovery.next(3 * SECOND).await {
            Event::Endpoints(endpoints) => updated = Some(show(&endpoints)),
            Event::Failed(message) => failure = Some(message),
        }
    }
    assert_eq!(
        updated.unwrap(),
        ["127.0.0.13:81 w1 p0", "127.0.0.16:80 w1 p0"]
    );
    assert_eq!(
        failure.unwrap(),
        "discovery failed: cluster \"reviews\": DNS name \"b.test\" did not resolve: no such name (NXDOMAIN)"
    );
}

/// A mesh whose cluster `reviews` resolves `name`, on port `port`, through
/// `server` every 200 ms.
fn dns_mesh(server: &Dnsmasq, name: &str, port: u16) -> meshlib::MeshClient {
    let yaml = format!(
        r#"
virtual_hosts:
  - name: reviews
    domains: [reviews]
    routes: [{{ name: all, match: {{ prefix: / }}, route: {{ cluster: reviews }} }}]
clusters:
  - name: reviews
    discovery:
      dns:
        targets: [{{ name: {name}, port: {port} }}]
        refresh_rate: 200ms
        failure_refresh_rate: {{ base_interval: 100ms, max_interval: 400ms }}
        query_timeout: 600ms
        resolvers: ["{}"]
"#,
        server.address()
    );
    meshlib::MeshClient::new(meshlib::config::MeshConfig::from_yaml(&yaml).unwrap()).unwrap()
}

#[tokio::test]
async fn traffic_follows_a_changed_record_with_no_failed_request_and_outlives_the_server() {
    // Two backends on one port of two loopback addresses: the record says which.
    let v1 = support::Backend::start_at("v1", "127.0.0.2:0".parse().unwrap()).await;
    let port = v1.address.port();
    let v2 = support::Backend::start_at("v2", SocketAddr::from(([127, 0, 0, 3], port))).await;
    let mut server = Dnsmasq::start("127.0.0.2 reviews.test\n", &[], 1).await;
    // Traffic starts with the client: requests before the first answer wait
    // for it (the cluster warms), so none fails.
    let mesh = dns_mesh(&server, "reviews.test", port);
    let traffic = support::Traffic::start(&mesh, "http://reviews/");
    support::until("v1 takes traffic", || v1.requests() > 50).await;

    let version = mesh.version();
    server.set_hosts("127.0.0.3 reviews.test\n");
    support::until("traffic moves to v2", || v2.requests() > 50).await;
    let v1_after = v1.requests();
    support::until("v2 takes all of it", || v2.requests() > 200).await;
    assert!(
        v1.requests() <= v1_after + 8,
        "v1 still served after the move"
    );
    assert_eq!(mesh.version(), version, "no configuration was rebuilt");

    // The name server goes away: the last endpoints keep serving.
    server.kill();
    let served = v2.requests();
    support::until("v2 serves on without DNS", || v2.requests() > served + 200).await;
    assert_eq!(traffic.stop().await.failed, 0);
}

#[tokio::test]
async fn a_cluster_whose_name_never_resolved_fails_requests_saying_why() {
    let server = Dnsmasq::start(HOSTS, &[], 1).await;
    let mesh = dns_mesh(&server, "missing.test", 80);
    // The first request waits for the first answer, which is a failure.
    let started = Instant::now();
    let error = support::send(&mesh, "http://reviews/", &[])
        .await
        .unwrap_err();
    assert_eq!(error.kind(), meshlib::ErrorKind::Discovery, "{error}");
    assert!(started.elapsed() < 2 * SECOND);
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
    assert!(error.to_string().contains("\"missing.test\""), "{error}");
    assert_eq!(
        error.kind().http_status(),
        http::StatusCode::SERVICE_UNAVAILABLE
    );
}
