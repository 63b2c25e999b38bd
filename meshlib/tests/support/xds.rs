//! Control planes for the xDS tests: a client for one on loopback, the
//! `reviews` snapshot most tests serve, and `interop/control-plane/ads_server.py`
//! (an independent control plane, on grpcio) run as a process.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use base64::Engine as _;
use meshlib_xds::server::Snapshot;
use meshlib_xds::server::build::{
    api_listener, cluster_load_assignment, eds_cluster, prefix_route, route_configuration,
    virtual_host, with_exact_header,
};
use meshlib_xds::{Bootstrap, DELTA_ADS, XdsClient, XdsClientBuilder, XdsServer};
use prost::Message as _;
use tokio::io::{AsyncBufReadExt, BufReader};

use super::Backend;

/// `reviews`: `x-canary: true` → v2, everything else split v1/v2 by weight.
pub fn reviews_snapshot(
    version: &str,
    v1: &Backend,
    v2: &Backend,
    v1_weight: u32,
    v2_weight: u32,
) -> Snapshot {
    let routes = vec![
        with_exact_header(
            prefix_route("canary", "/", &[("reviews-v2", 1)]),
            "x-canary",
            "true",
        ),
        prefix_route(
            "split",
            "/",
            &[("reviews-v1", v1_weight), ("reviews-v2", v2_weight)],
        ),
    ];
    Snapshot::new(version)
        .with(api_listener("reviews", "reviews-routes"))
        .with(route_configuration(
            "reviews-routes",
            vec![virtual_host("reviews", &["reviews"], routes)],
        ))
        .with(eds_cluster("reviews-v1"))
        .with(eds_cluster("reviews-v2"))
        .with(cluster_load_assignment("reviews-v1", &[v1.address]))
        .with(cluster_load_assignment("reviews-v2", &[v2.address]))
}

/// A client builder for the control plane at `address`, node `test-node`,
/// reconnecting quickly (backoff 20 ms, at most 100 ms).
pub fn xds_builder(address: SocketAddr, delta: bool) -> XdsClientBuilder {
    let mut server = XdsServer::insecure(&address.to_string()).unwrap();
    if delta {
        server = server.with_feature(DELTA_ADS);
    }
    let mut bootstrap = Bootstrap::new(&address.to_string(), "test-node").unwrap();
    bootstrap.servers = vec![server];
    XdsClient::builder(bootstrap).backoff(Duration::from_millis(20), Duration::from_millis(100))
}

/// [`xds_builder`], built.
pub fn xds_client(address: SocketAddr, delta: bool) -> XdsClient {
    xds_builder(address, delta).build().unwrap()
}

/// `interop/control-plane/ads_server.py`, running, serving a snapshot to every
/// node through its resources file. Killed when dropped (resumed first if
/// paused), so a failing test leaves no stopped process behind.
pub struct PythonPlane {
    child: tokio::process::Child,
    pid: u32,
    address: SocketAddr,
    dir: PathBuf,
    paused: bool,
}

impl PythonPlane {
    /// Starts it serving `snapshot`, with `args` added to its command line.
    /// Panics, saying how to install it, if gRPC Python is not installed.
    pub async fn start(snapshot: &Snapshot, args: &[&str]) -> PythonPlane {
        static STARTED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let root = Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .unwrap()
            .to_path_buf();
        let python = root.join("interop/.peers/python/bin/python");
        assert!(
            python.exists(),
            "the Python control plane is not installed ({} is missing): run scripts/install-interop-peers",
            python.display()
        );
        let n = STARTED.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let dir =
            std::env::temp_dir().join(format!("meshlib-python-plane-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        write_resources(&dir.join("resources.json"), snapshot);
        let log = std::fs::File::create(dir.join("plane.log")).unwrap();
        let mut child = tokio::process::Command::new(python)
            .arg(root.join("interop/control-plane/ads_server.py"))
            .arg("--resources")
            .arg(dir.join("resources.json"))
            .args(["--port", "0"])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .expect("cannot start the Python control plane");
        let pid = child.id().unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let announced = tokio::time::timeout(Duration::from_secs(30), async {
            while let Ok(Some(line)) = lines.next_line().await {
                if let Some(address) = line.strip_prefix("listening on ") {
                    return address.trim().parse::<SocketAddr>().ok();
                }
            }
            None
        })
        .await;
        let mut plane = PythonPlane {
            child,
            pid,
            address: SocketAddr::from(([127, 0, 0, 1], 0)),
            dir,
            paused: false,
        };
        match announced {
            Ok(Some(address)) => plane.address = address,
            _ => panic!(
                "the Python control plane did not announce its address within 30 s; its log:\n{}",
                plane.log()
            ),
        }
        // Drained, so the process never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        plane
    }

    /// Where it listens.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// Serves `snapshot` from now on: the plane re-reads its file every 100 ms
    /// and pushes what changed.
    pub fn serve(&self, snapshot: &Snapshot) {
        write_resources(&self.dir.join("resources.json"), snapshot);
    }

    /// Stops the process (SIGSTOP): its sockets stay open, nothing answers.
    pub fn pause(&mut self) {
        signal(self.pid, "-STOP");
        self.paused = true;
    }

    /// Lets it run again (SIGCONT).
    pub fn resume(&mut self) {
        signal(self.pid, "-CONT");
        self.paused = false;
    }

    /// Its log so far: every response, ACK and NACK.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("plane.log")).unwrap_or_default()
    }

    /// How many of its log lines contain `text`.
    pub fn logged(&self, text: &str) -> usize {
        self.log().lines().filter(|l| l.contains(text)).count()
    }
}

impl Drop for PythonPlane {
    fn drop(&mut self) {
        if self.paused {
            signal(self.pid, "-CONT");
        }
        let _ = self.child.start_kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn signal(pid: u32, which: &str) {
    let status = std::process::Command::new("kill")
        .arg(which)
        .arg(pid.to_string())
        .status()
        .expect("cannot run kill");
    assert!(status.success(), "kill {which} {pid}: {status}");
}

/// ads_server.py's resources file: every resource of `snapshot`, to every
/// node, as the base64 of its `Any`; written whole, then renamed into place.
fn write_resources(path: &Path, snapshot: &Snapshot) {
    let base64 = base64::engine::general_purpose::STANDARD;
    let resources: Vec<String> = snapshot
        .resources()
        .map(|(_, _, any)| {
            format!(
                r#"{{"any_base64": "{}"}}"#,
                base64.encode(any.encode_to_vec())
            )
        })
        .collect();
    let json = format!(
        "{{\"version\": \"{}\", \"nodes\": {{\"*\": [\n  {}\n]}}}}\n",
        snapshot.version(),
        resources.join(",\n  ")
    );
    let staging = path.with_extension("json.partial");
    std::fs::write(&staging, json).unwrap();
    std::fs::rename(&staging, path).unwrap();
}
