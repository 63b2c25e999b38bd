//! Runs one scenario: a control plane (see [`crate::plane`]), the backends
//! and the three clients as processes on loopback, driven through gRPC's
//! interop protocol.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use meshlib_interop::pb::client_configure_request::{Metadata, RpcType};
use meshlib_interop::pb::load_balancer_stats_service_client::LoadBalancerStatsServiceClient;
use meshlib_interop::pb::xds_update_client_configure_service_client::XdsUpdateClientConfigureServiceClient;
use meshlib_interop::pb::{
    ClientConfigureRequest, LoadBalancerAccumulatedStatsRequest, LoadBalancerStatsRequest,
    LoadBalancerStatsResponse,
};
use meshlib_xds::pb::envoy::admin::v3::ClientResourceStatus;
use meshlib_xds::pb::envoy::service::status::v3::ClientStatusRequest;
use meshlib_xds::pb::envoy::service::status::v3::client_status_discovery_service_client::ClientStatusDiscoveryServiceClient;
use meshlib_xds::server::{Ack, Snapshot};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tonic::transport::Channel;

use crate::plane::{Plane, PlaneKind};
use crate::resources::SERVICE;

/// The points two distributions may differ by (PEERS.md: ≥1,000 RPCs, ±5).
pub(crate) const TOLERANCE: f64 = 5.0;

/// The clients compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Kind {
    /// meshlib's `xds-interop-client`.
    Meshlib,
    /// gRPC Python (C-core).
    Python,
    /// gRPC Node (grpc-js).
    Node,
}

impl Kind {
    pub(crate) const ALL: [Kind; 3] = [Kind::Meshlib, Kind::Python, Kind::Node];

    pub(crate) fn name(self) -> &'static str {
        match self {
            Kind::Meshlib => "meshlib",
            Kind::Python => "grpc-python",
            Kind::Node => "grpc-node",
        }
    }

    /// The node id of the client's bootstrap.
    pub(crate) fn node_id(self) -> String {
        format!("interop-{}", self.name())
    }
}

/// The flags every client of a scenario gets.
#[derive(Debug, Clone)]
pub(crate) struct Flags {
    pub(crate) qps: u32,
    pub(crate) rpc: &'static str,
    pub(crate) metadata: &'static str,
    /// The clients that run: every kind, but where a reference client does
    /// not implement what the scenario shows.
    pub(crate) clients: &'static [Kind],
}

impl Default for Flags {
    fn default() -> Self {
        Flags {
            qps: 400,
            rpc: "UnaryCall",
            metadata: "",
            clients: &Kind::ALL,
        }
    }
}

/// Where the distribution of a window should be.
#[derive(Debug, Clone)]
pub(crate) enum Expect {
    /// Every RPC succeeds, on these backends only, each with this share in
    /// percent (±[`TOLERANCE`]).
    Shares(Vec<(usize, f64)>),
    /// Every RPC succeeds, each of these backends gets at least one, no
    /// other gets any.
    Spread(Vec<usize>),
    /// Every RPC succeeds, each method only on its backends.
    ByMethod(Vec<(&'static str, Vec<usize>)>),
    /// Every RPC succeeds, all on the same one of these backends.
    Sticky(Vec<usize>),
    /// No RPC succeeds: each ends UNAVAILABLE, as gRPC's clients fail RPCs
    /// with no backend to reach.
    AllFail,
    /// No RPC succeeds: each ends with this gRPC status code.
    AllFailWith(i32),
}

impl Expect {
    /// `n` backends, evenly.
    pub(crate) fn even(backends: &[usize]) -> Expect {
        let share = 100.0 / backends.len() as f64;
        Expect::Shares(backends.iter().map(|&b| (b, share)).collect())
    }

    /// Whether a short probe window looks like the configuration applied.
    fn settled(&self, w: &Window) -> bool {
        match self {
            Expect::AllFail | Expect::AllFailWith(_) => w.succeeded() == 0,
            Expect::Shares(shares) => {
                let wanted: Vec<usize> = shares.iter().filter(|s| s.1 > 0.0).map(|s| s.0).collect();
                w.failures == 0 && w.only_on(&wanted) && wanted.iter().all(|b| w.count(*b) > 0)
            }
            Expect::Spread(set) => {
                w.failures == 0 && w.only_on(set) && set.iter().all(|b| w.count(*b) > 0)
            }
            Expect::ByMethod(methods) => {
                w.failures == 0
                    && methods.iter().all(|(m, set)| {
                        let of = w.by_method.get(*m);
                        of.is_some_and(|peers| peers.keys().all(|b| set.contains(b)))
                    })
            }
            Expect::Sticky(set) => w.failures == 0 && w.only_on(set) && w.by_backend.len() == 1,
        }
    }

    /// Why the measured window is wrong, if it is.
    fn check(&self, w: &Window) -> Result<(), String> {
        let fail = |why: String| Err(format!("{why}; got {}", w.describe()));
        if self.failure_code().is_none() && w.failures > 0 {
            return fail(format!("{} of {} RPCs failed", w.failures, w.total()));
        }
        match self {
            Expect::AllFail | Expect::AllFailWith(_) => {
                if w.succeeded() > 0 {
                    return fail(format!("{} RPCs succeeded, expected none", w.succeeded()));
                }
            }
            Expect::Shares(shares) => {
                let wanted: Vec<usize> = shares.iter().filter(|s| s.1 > 0.0).map(|s| s.0).collect();
                if !w.only_on(&wanted) {
                    return fail(format!("RPCs reached backends outside {wanted:?}"));
                }
                for &(b, share) in shares {
                    let got = w.share(b);
                    if (got - share).abs() > TOLERANCE {
                        return fail(format!(
                            "backend-{b} took {got:.1}%, expected {share:.0}% ±{TOLERANCE}"
                        ));
                    }
                }
            }
            Expect::Spread(set) => {
                if !w.only_on(set) || !set.iter().all(|b| w.count(*b) > 0) {
                    return fail(format!("expected every one of {set:?} and no other"));
                }
            }
            Expect::ByMethod(methods) => {
                for (method, set) in methods {
                    let Some(peers) = w.by_method.get(*method) else {
                        return fail(format!("no {method} RPC completed"));
                    };
                    if let Some(b) = peers.keys().find(|b| !set.contains(b)) {
                        return fail(format!(
                            "{method} reached backend-{b}, expected only {set:?}"
                        ));
                    }
                }
            }
            Expect::Sticky(set) => {
                if !w.only_on(set) || w.by_backend.len() != 1 {
                    return fail(format!("expected all RPCs on one backend of {set:?}"));
                }
            }
        }
        Ok(())
    }

    fn compares_distributions(&self) -> bool {
        self.failure_code().is_none()
    }

    /// The status every RPC must end with, when none may succeed.
    fn failure_code(&self) -> Option<i32> {
        const UNAVAILABLE: i32 = 14;
        match self {
            Expect::AllFail => Some(UNAVAILABLE),
            Expect::AllFailWith(code) => Some(*code),
            _ => None,
        }
    }
}

/// A `GetClientStats` answer, by backend index.
#[derive(Debug, Clone, Default)]
pub(crate) struct Window {
    pub(crate) by_backend: BTreeMap<usize, i32>,
    pub(crate) by_method: BTreeMap<String, BTreeMap<usize, i32>>,
    /// Peers that are not our backends.
    pub(crate) strangers: BTreeMap<String, i32>,
    pub(crate) failures: i32,
}

impl Window {
    fn from_response(response: &LoadBalancerStatsResponse) -> Window {
        let index = |peer: &str| {
            peer.strip_prefix("backend-")
                .and_then(|i| i.parse::<usize>().ok())
        };
        let mut w = Window {
            failures: response.num_failures,
            ..Window::default()
        };
        for (peer, &n) in &response.rpcs_by_peer {
            match index(peer) {
                Some(i) => *w.by_backend.entry(i).or_default() += n,
                None => *w.strangers.entry(peer.clone()).or_default() += n,
            }
        }
        for (method, peers) in &response.rpcs_by_method {
            let by = w.by_method.entry(method.clone()).or_default();
            for (peer, &n) in &peers.rpcs_by_peer {
                if let Some(i) = index(peer) {
                    *by.entry(i).or_default() += n;
                }
            }
        }
        w
    }

    pub(crate) fn succeeded(&self) -> i32 {
        self.by_backend.values().sum::<i32>() + self.strangers.values().sum::<i32>()
    }

    pub(crate) fn total(&self) -> i32 {
        self.succeeded() + self.failures
    }

    fn count(&self, backend: usize) -> i32 {
        self.by_backend.get(&backend).copied().unwrap_or(0)
    }

    /// Percent of all RPCs of the window that `backend` answered.
    pub(crate) fn share(&self, backend: usize) -> f64 {
        match self.total() {
            0 => 0.0,
            total => 100.0 * f64::from(self.count(backend)) / f64::from(total),
        }
    }

    fn only_on(&self, set: &[usize]) -> bool {
        self.strangers.is_empty() && self.by_backend.keys().all(|b| set.contains(b))
    }

    /// `b0 51.0% b1 49.0%`, with failures if any.
    pub(crate) fn describe(&self) -> String {
        let mut text = String::new();
        for b in self.by_backend.keys() {
            let _ = write!(text, "b{b} {:.1}% ", self.share(*b));
        }
        for (peer, n) in &self.strangers {
            let _ = write!(text, "{peer}:{n} ");
        }
        if self.failures > 0 {
            let _ = write!(
                text,
                "failed {:.1}% ",
                100.0 * f64::from(self.failures) / f64::from(self.total().max(1))
            );
        }
        if self.by_method.len() > 1 {
            for (method, peers) in &self.by_method {
                let peers: Vec<String> = peers.keys().map(|b| format!("b{b}")).collect();
                let _ = write!(text, "{method}→{} ", peers.join("+"));
            }
        }
        text.trim_end().to_owned()
    }
}

/// A child process killed when dropped, its output in a log file.
pub(crate) struct Process {
    child: Child,
    pub(crate) log: PathBuf,
    pub(crate) address: SocketAddr,
}

impl Process {
    /// Starts `command` and waits (at most 30 s) for the line announcing
    /// the address it serves on: `... on HOST:PORT`.
    pub(crate) async fn start(
        mut command: Command,
        log: PathBuf,
        what: &str,
    ) -> Result<Process, String> {
        let stderr = std::fs::File::create(&log).map_err(|e| format!("{}: {e}", log.display()))?;
        command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .kill_on_drop(true);
        let mut child = command
            .spawn()
            .map_err(|e| format!("cannot start {what}: {e}"))?;
        let stdout = child.stdout.take().ok_or("no stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let announce = async {
            while let Ok(Some(line)) = lines.next_line().await {
                if let Some(address) = line.split(" on ").nth(1) {
                    let address = address.split_whitespace().next().unwrap_or_default();
                    if let Ok(address) = address.parse::<SocketAddr>() {
                        return Some(address);
                    }
                }
            }
            None
        };
        let address = tokio::time::timeout(Duration::from_secs(30), announce).await;
        let Ok(Some(address)) = address else {
            return Err(format!(
                "{what} did not announce its address within 30 s; its log ({}):\n{}",
                log.display(),
                tail(&log)
            ));
        };
        // Keep draining stdout so the child never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Ok(Process {
            child,
            log,
            address,
        })
    }

    /// Kills it outright and waits (bounded) for it to be gone.
    pub(crate) async fn kill(&mut self) {
        let _ = self.child.start_kill();
        let _ = tokio::time::timeout(Duration::from_secs(10), self.child.wait()).await;
    }

    pub(crate) fn exited(&mut self) -> Option<String> {
        match self.child.try_wait() {
            Ok(Some(status)) => Some(format!("exited ({status}); log:\n{}", tail(&self.log))),
            _ => None,
        }
    }
}

/// The last lines of a log file.
pub(crate) fn tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(15)..].join("\n")
}

/// One interop backend.
pub(crate) struct Backend {
    pub(crate) port: u16,
    process: Option<Process>,
}

/// A running client and its driver-side stubs.
pub(crate) struct Client {
    pub(crate) kind: Kind,
    process: Process,
    stats: LoadBalancerStatsServiceClient<Channel>,
    configure: XdsUpdateClientConfigureServiceClient<Channel>,
    csds: Option<ClientStatusDiscoveryServiceClient<Channel>>,
    /// Failed a step: later steps do not wait for it to settle.
    failed: bool,
}

/// What a second control plane is to the clients.
#[derive(Debug, Clone, Copy)]
pub(crate) enum SecondPlane {
    /// Listed second in the bootstrap's `xds_servers` (gRFC A71).
    Fallback,
    /// The only server of this authority (gRFC A47); the clients' target
    /// names it.
    Authority(&'static str),
}

/// Everything a scenario runs against.
pub(crate) struct World {
    dir: PathBuf,
    pub(crate) plane: Plane,
    /// A second plane of the same kind, in scenarios that start one.
    second: Option<(Plane, SecondPlane)>,
    pub(crate) backends: Vec<Backend>,
    pub(crate) clients: Vec<Client>,
    version: u64,
    /// What the plane serves now.
    served: Snapshot,
    /// The type URLs whose resources the latest snapshot changed.
    changed: BTreeSet<String>,
}

pub(crate) fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

pub(crate) const MISSING_PEERS: &str = "is not installed: run scripts/install-interop-peers";

impl World {
    /// `backends` servers (`backend-0`…), a control plane of `plane` not
    /// yet started, and no client yet.
    pub(crate) async fn start(
        name: &str,
        plane: PlaneKind,
        backends: usize,
    ) -> Result<World, String> {
        let dir = std::env::temp_dir().join(format!(
            "meshlib-interop-{}-{name}-{}",
            std::process::id(),
            plane.name()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let mut world = World {
            plane: Plane::new(plane, &dir),
            second: None,
            dir,
            backends: Vec::new(),
            clients: Vec::new(),
            version: 0,
            served: Snapshot::default(),
            changed: BTreeSet::new(),
        };
        for i in 0..backends {
            let process = world.start_backend(i, 0).await?;
            world.backends.push(Backend {
                port: process.address.port(),
                process: Some(process),
            });
        }
        Ok(world)
    }

    async fn start_backend(&self, index: usize, port: u16) -> Result<Process, String> {
        let mut command = Command::new(env!("CARGO_BIN_EXE_xds-interop-server"));
        command.args([
            "--port",
            &port.to_string(),
            "--address",
            "127.0.0.1",
            "--hostname",
            &format!("backend-{index}"),
            "--server_id",
            &format!("server-{index}"),
        ]);
        let log = self.dir.join(format!("backend-{index}.log"));
        Process::start(command, log, &format!("backend-{index}")).await
    }

    /// The backends' addresses, by index.
    pub(crate) fn addresses(&self) -> Vec<SocketAddr> {
        self.backends
            .iter()
            .map(|b| SocketAddr::from(([127, 0, 0, 1], b.port)))
            .collect()
    }

    /// The bootstrap of the client of `kind`: the same for every client but
    /// for the node id, which tells their ACKs apart.
    fn bootstrap(&self, kind: Kind) -> Result<PathBuf, String> {
        let path = self.dir.join(format!("bootstrap-{}.json", kind.name()));
        let server = |address: SocketAddr| {
            format!(
                r#"{{"server_uri": "{address}", "channel_creds": [{{"type": "insecure"}}], "server_features": ["xds_v3"]}}"#
            )
        };
        let mut servers = vec![server(self.plane.address()?)];
        let mut authorities = String::new();
        match &self.second {
            Some((plane, SecondPlane::Fallback)) => servers.push(server(plane.address()?)),
            Some((plane, SecondPlane::Authority(name))) => {
                authorities = format!(
                    r#", "authorities": {{"{name}": {{"xds_servers": [{}]}}}}"#,
                    server(plane.address()?)
                );
            }
            None => {}
        }
        let json = format!(
            r#"{{"xds_servers": [{}]{authorities},
 "node": {{"id": "{}", "cluster": "interop", "locality": {{"region": "r", "zone": "z0"}}}}}}"#,
            servers.join(", "),
            kind.node_id()
        );
        std::fs::write(&path, json).map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(path)
    }

    /// Waits, at most `limit`, until every client has answered the latest
    /// snapshot for each resource type it reads: an ACK of its version, or a
    /// NACK. Measuring before that could credit a client with the old
    /// configuration's behaviour. On a plane that sends only what changed,
    /// only the types the snapshot changed are waited for (a step must then
    /// change something every client watches: one that changed only, say,
    /// the endpoints of a cluster no route names would wait in vain).
    /// Returns how long each client took.
    pub(crate) async fn until_answered(
        &mut self,
        limit: Duration,
    ) -> Result<Vec<(Kind, Duration)>, String> {
        let version = self.version.to_string();
        let every_type = self.plane.resends_unchanged();
        let changed = self.changed.clone();
        let what = format!("answered snapshot version {version}");
        self.until_every_client(limit, &what, |kind, acks| {
            let latest = latest_by_type(acks, &kind.node_id());
            let stale: Vec<&str> = latest
                .iter()
                .filter(|(type_url, ack)| {
                    !ack.is_nack()
                        && ack.version_info != version
                        && (every_type || changed.contains(**type_url))
                })
                .map(|(type_url, _)| short(type_url))
                .collect();
            (latest.is_empty() || !stale.is_empty()).then(|| format!("still on an older {stale:?}"))
        })
        .await
    }

    /// Waits, at most `limit`, until every client has answered the plane
    /// again after the ACK numbered `since` (a restart): for each type it
    /// had answered before, a new ACK or NACK, so it subscribed anew.
    /// Returns how long each client took.
    pub(crate) async fn until_resubscribed(
        &mut self,
        since: usize,
        limit: Duration,
    ) -> Result<Vec<(Kind, Duration)>, String> {
        self.until_every_client(limit, "subscribed again", |kind, acks| {
            let (before, after) = acks.split_at(since.min(acks.len()));
            let node = kind.node_id();
            let again = latest_by_type(after, &node);
            let missing: Vec<&str> = latest_by_type(before, &node)
                .into_keys()
                .filter(|type_url| !again.contains_key(type_url))
                .map(short)
                .collect();
            (!missing.is_empty()).then(|| format!("not yet {missing:?}"))
        })
        .await
    }

    /// Reads the plane's ACK log every 50 ms, at most `limit`, until
    /// `behind` (what a client still lacks, if anything) holds back no
    /// client. Returns when each client first caught up.
    async fn until_every_client(
        &mut self,
        limit: Duration,
        what: &str,
        behind: impl Fn(Kind, &[Ack]) -> Option<String>,
    ) -> Result<Vec<(Kind, Duration)>, String> {
        let started = tokio::time::Instant::now();
        let mut caught_up = BTreeMap::new();
        loop {
            let acks = self.plane.acks();
            let lagging: Vec<String> = self
                .clients
                .iter()
                .filter_map(|client| match behind(client.kind, &acks) {
                    Some(why) => Some(format!("{} ({why})", client.kind.name())),
                    None => {
                        caught_up.entry(client.kind).or_insert(started.elapsed());
                        None
                    }
                })
                .collect();
            if lagging.is_empty() {
                return Ok(caught_up.into_iter().collect());
            }
            if started.elapsed() >= limit {
                let plane = self
                    .plane
                    .diagnosis()
                    .map(|d| format!("; {d}"))
                    .unwrap_or_default();
                return Err(format!(
                    "not every client {what} within {limit:?}: {}{plane}",
                    lagging.join(", ")
                ));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Serves a new snapshot to every client.
    pub(crate) fn serve(
        &mut self,
        make: impl FnOnce(u64, &[SocketAddr]) -> Snapshot,
    ) -> Result<(), String> {
        self.version += 1;
        let snapshot = make(self.version, &self.addresses());
        self.changed = changed_types(&self.served, &snapshot);
        self.served = snapshot.clone();
        self.plane.serve(snapshot)
    }

    /// Serves `first` to the control plane, without starting it, and
    /// starts a second plane of the same kind, in the role `role`, serving
    /// `second`.
    pub(crate) async fn serve_with_second(
        &mut self,
        first: impl FnOnce(u64, &[SocketAddr]) -> Snapshot,
        second: impl FnOnce(u64, &[SocketAddr]) -> Snapshot,
        role: SecondPlane,
    ) -> Result<(), String> {
        self.serve(first)?;
        let dir = self.dir.join("second");
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let mut plane = Plane::new(self.plane.kind(), &dir);
        plane.serve(second(self.version, &self.addresses()))?;
        plane.start().await?;
        self.second = Some((plane, role));
        Ok(())
    }

    /// The clients' target: `xds:///interop-service`, or with the second
    /// plane's authority.
    fn target(&self) -> String {
        match &self.second {
            Some((_, SecondPlane::Authority(name))) => format!("xds://{name}/{SERVICE}"),
            _ => format!("xds:///{SERVICE}"),
        }
    }

    /// Starts the control plane (again, after [`World::stop_plane`]) on its
    /// port, serving what it served.
    pub(crate) async fn start_plane(&mut self) -> Result<(), String> {
        self.plane.start().await
    }

    /// Kills the control plane.
    pub(crate) async fn stop_plane(&mut self) {
        self.plane.stop().await;
    }

    /// Kills backends outright.
    pub(crate) async fn stop(&mut self, which: &[usize]) {
        for &i in which {
            if let Some(mut process) = self.backends[i].process.take() {
                process.kill().await;
            }
        }
    }

    /// Starts stopped backends again on their ports.
    pub(crate) async fn restart(&mut self, which: &[usize]) -> Result<(), String> {
        for &i in which {
            if self.backends[i].process.is_none() {
                let process = self.start_backend(i, self.backends[i].port).await?;
                self.backends[i].process = Some(process);
            }
        }
        Ok(())
    }

    /// Starts a client of each kind with `flags`.
    pub(crate) async fn start_clients(&mut self, flags: &Flags) -> Result<(), String> {
        for &kind in flags.clients {
            let client = self.start_client(kind, flags).await?;
            self.clients.push(client);
        }
        Ok(())
    }

    async fn start_client(&self, kind: Kind, flags: &Flags) -> Result<Client, String> {
        let root = repo_root();
        let peers = root.join("interop/.peers");
        let mut command = match kind {
            Kind::Meshlib => Command::new(env!("CARGO_BIN_EXE_xds-interop-client")),
            Kind::Python => {
                let python = peers.join("python/bin/python");
                let stubs = peers.join("python-stubs");
                if !python.exists() || !stubs.join("meshlib_interop_pb").exists() {
                    return Err(format!("gRPC Python {MISSING_PEERS}"));
                }
                let mut command = Command::new(python);
                command
                    .arg(root.join("interop/reference/python/xds_interop_client.py"))
                    .env("PYTHONPATH", stubs);
                command
            }
            Kind::Node => {
                let modules = peers.join("node/node_modules");
                if !modules.join("@grpc/grpc-js-xds").exists() {
                    return Err(format!("gRPC Node {MISSING_PEERS}"));
                }
                let mut command = Command::new("node");
                command
                    .arg(root.join("interop/reference/node/xds_interop_client.js"))
                    .env("NODE_PATH", modules);
                command
            }
        };
        command
            .env("GRPC_XDS_BOOTSTRAP", self.bootstrap(kind)?)
            // gRFC A71 fallback: on by default in recent gRPC releases; said
            // outright so an older default cannot hide it.
            .env("GRPC_EXPERIMENTAL_XDS_FALLBACK", "true")
            .env_remove("GRPC_XDS_BOOTSTRAP_CONFIG")
            .args([
                "--server",
                &self.target(),
                "--stats_port",
                "0",
                "--address",
                "127.0.0.1",
                "--qps",
                &flags.qps.to_string(),
                "--rpc",
                flags.rpc,
                "--rpc_timeout_sec",
                "5",
            ]);
        if !flags.metadata.is_empty() {
            command.args(["--metadata", flags.metadata]);
        }
        let log = self.dir.join(format!("{}.log", kind.name()));
        let process = Process::start(command, log, kind.name()).await?;
        let endpoint = format!("http://{}", process.address);
        let channel = Channel::from_shared(endpoint)
            .map_err(|e| e.to_string())?
            .connect_timeout(Duration::from_secs(5))
            .connect()
            .await
            .map_err(|e| format!("{}: stats port: {e}", kind.name()))?;
        Ok(Client {
            kind,
            process,
            stats: LoadBalancerStatsServiceClient::new(channel.clone()),
            configure: XdsUpdateClientConfigureServiceClient::new(channel.clone()),
            csds: (kind == Kind::Meshlib).then(|| ClientStatusDiscoveryServiceClient::new(channel)),
            failed: false,
        })
    }

    /// The resources meshlib's client has NACKed, with reasons, from its CSDS.
    pub(crate) async fn meshlib_nacks(&mut self) -> Vec<String> {
        match self.clients.iter_mut().find(|c| c.kind == Kind::Meshlib) {
            Some(client) => client.nacks().await,
            None => Vec::new(),
        }
    }

    /// `Configure` on every client.
    pub(crate) async fn configure(
        &mut self,
        rpcs: &[RpcType],
        metadata: &[(RpcType, &str, &str)],
    ) -> Result<(), String> {
        let request = ClientConfigureRequest {
            types: rpcs.iter().map(|&t| t as i32).collect(),
            metadata: metadata
                .iter()
                .map(|&(t, key, value)| Metadata {
                    r#type: t as i32,
                    key: key.to_owned(),
                    value: value.to_owned(),
                })
                .collect(),
            timeout_sec: 0,
        };
        for client in &mut self.clients {
            client
                .configure
                .configure(request.clone())
                .await
                .map_err(|e| format!("{}: Configure: {e}", client.kind.name()))?;
        }
        Ok(())
    }
}

/// The last part of a type URL: `Cluster`.
fn short(type_url: &str) -> &str {
    type_url.rsplit('.').next().unwrap_or(type_url)
}

/// `node`'s latest ACK or NACK of each type.
fn latest_by_type<'a>(acks: &'a [Ack], node: &str) -> BTreeMap<&'a str, &'a Ack> {
    let mut latest = BTreeMap::new();
    for ack in acks.iter().filter(|a| a.node == node) {
        latest.insert(ack.type_url.as_str(), ack);
    }
    latest
}

/// The type URLs with a resource added, removed or changed from `old` to `new`.
fn changed_types(old: &Snapshot, new: &Snapshot) -> BTreeSet<String> {
    let by_type = |snapshot: &Snapshot| {
        let mut types: BTreeMap<String, Vec<(String, Vec<u8>)>> = BTreeMap::new();
        for (type_url, name, any) in snapshot.resources() {
            types
                .entry(type_url.to_owned())
                .or_default()
                .push((name.to_owned(), any.value.clone()));
        }
        types
    };
    let (old, new) = (by_type(old), by_type(new));
    old.keys()
        .chain(new.keys())
        .filter(|type_url| old.get(*type_url) != new.get(*type_url))
        .cloned()
        .collect()
}

impl Drop for World {
    fn drop(&mut self) {
        // Processes are killed by `kill_on_drop`; the logs go with the folder.
        if std::env::var_os("MESHLIB_INTEROP_KEEP_LOGS").is_none() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

impl Client {
    async fn window(&mut self, rpcs: u32, timeout: Duration) -> Result<Window, String> {
        let request = LoadBalancerStatsRequest {
            num_rpcs: rpcs as i32,
            timeout_sec: timeout.as_secs() as i32,
            metadata_keys: Vec::new(),
        };
        let name = self.kind.name();
        let answer = tokio::time::timeout(
            timeout + Duration::from_secs(5),
            self.stats.get_client_stats(request),
        )
        .await;
        match answer {
            Ok(Ok(response)) => Ok(Window::from_response(response.get_ref())),
            Ok(Err(status)) => Err(self
                .died()
                .unwrap_or_else(|| format!("{name}: GetClientStats: {status}"))),
            Err(_) => Err(format!("{name}: GetClientStats did not answer in time")),
        }
    }

    /// How many of the client's RPCs have ended with each status code so far
    /// (`GetClientAccumulatedStats`, all methods).
    async fn results(&mut self) -> Result<BTreeMap<i32, i64>, String> {
        let name = self.kind.name();
        let answer = tokio::time::timeout(
            Duration::from_secs(5),
            self.stats
                .get_client_accumulated_stats(LoadBalancerAccumulatedStatsRequest {}),
        )
        .await;
        let response = match answer {
            Ok(Ok(response)) => response.into_inner(),
            Ok(Err(status)) => return Err(format!("{name}: GetClientAccumulatedStats: {status}")),
            Err(_) => {
                return Err(format!(
                    "{name}: GetClientAccumulatedStats did not answer in time"
                ));
            }
        };
        let mut results = BTreeMap::new();
        for method in response.stats_per_method.values() {
            for (code, count) in &method.result {
                *results.entry(*code).or_default() += i64::from(*count);
            }
        }
        Ok(results)
    }

    /// Whether the failures of window `w`, which followed the results
    /// `before`, ended with status `wanted` while the window lasted (for
    /// UNAVAILABLE: as gRPC's clients fail RPCs with no backend to reach),
    /// rather than hanging.
    async fn failed_fast(
        &mut self,
        before: &BTreeMap<i32, i64>,
        w: &Window,
        wanted: i32,
    ) -> Result<(), String> {
        let after = self.results().await?;
        let ended = |code: i32| {
            after.get(&code).copied().unwrap_or(0) - before.get(&code).copied().unwrap_or(0)
        };
        let with_wanted = ended(wanted);
        let failures = i64::from(w.failures);
        if with_wanted * 10 < failures * 9 {
            let other: Vec<String> = after
                .keys()
                .filter(|code| **code != 0 && **code != wanted && ended(**code) > 0)
                .map(|code| format!("{} with code {code}", ended(*code)))
                .collect();
            return Err(format!(
                "of {failures} failed RPCs only {with_wanted} ended with code {wanted} while the window lasted (others: {other:?})"
            ));
        }
        Ok(())
    }

    fn died(&mut self) -> Option<String> {
        self.process
            .exited()
            .map(|why| format!("{} {why}", self.kind.name()))
    }

    /// meshlib's refused resources, from its CSDS.
    async fn nacks(&mut self) -> Vec<String> {
        let Some(csds) = &mut self.csds else {
            return Vec::new();
        };
        let Ok(Ok(response)) = tokio::time::timeout(
            Duration::from_secs(5),
            csds.fetch_client_status(ClientStatusRequest::default()),
        )
        .await
        else {
            return vec!["(CSDS did not answer)".to_owned()];
        };
        response
            .get_ref()
            .config
            .iter()
            .flat_map(|c| &c.generic_xds_configs)
            .filter(|r| r.client_status == ClientResourceStatus::Nacked as i32)
            .map(|r| {
                let kind = r.type_url.rsplit('.').next().unwrap_or_default();
                let why = r
                    .error_state
                    .as_ref()
                    .map(|e| e.details.as_str())
                    .unwrap_or_default();
                format!("{kind} {:?} NACKed: {why}", r.name)
            })
            .collect()
    }
}

/// One client's result for a step.
#[derive(Debug, Clone)]
pub(crate) struct Outcome {
    pub(crate) kind: Kind,
    pub(crate) window: Option<Window>,
    pub(crate) error: Option<String>,
    /// Not a failure: where a reference client disagrees with C-core.
    pub(crate) note: Option<String>,
}

/// Waits until every client's probe windows show the expectation (at most
/// `settle`), then measures `rpcs` RPCs on all of them at once.
pub(crate) async fn measure(
    world: &mut World,
    expect: &Expect,
    rpcs: u32,
    settle: Duration,
    qps: u32,
) -> Vec<Outcome> {
    // A probe: a quarter second of traffic, at least 50 RPCs.
    let probe = (qps / 4).max(50);
    let window_timeout = Duration::from_secs(u64::from(rpcs / qps.max(1)) + 10);
    let expect = expect.clone();
    let tasks = world.clients.iter_mut().map(|client| {
        let expect = expect.clone();
        async move {
            if client.failed {
                let why = "not measured: failed an earlier step".to_owned();
                return Outcome {
                    kind: client.kind,
                    window: None,
                    error: Some(why),
                    note: None,
                };
            }
            let deadline = Instant::now() + settle;
            let mut last: Option<Window>;
            loop {
                match client.window(probe, Duration::from_secs(5)).await {
                    Ok(w) if expect.settled(&w) => break,
                    Ok(w) => last = Some(w),
                    Err(e) => {
                        return Outcome {
                            kind: client.kind,
                            window: None,
                            error: Some(e),
                            note: None,
                        };
                    }
                }
                if Instant::now() > deadline {
                    let seen = last.map(|w| w.describe()).unwrap_or_default();
                    let mut why = format!("did not settle within {settle:?}: last probe {seen}");
                    for nack in client.nacks().await {
                        why.push_str("; ");
                        why.push_str(&nack);
                    }
                    return Outcome {
                        kind: client.kind,
                        window: None,
                        error: Some(why),
                        note: None,
                    };
                }
            }
            // For failures, what the RPCs ended with too: a window's
            // "failures" include RPCs that never finished, which a client
            // hanging its RPCs would also show.
            let before = match expect.failure_code() {
                Some(_) => client.results().await.ok(),
                None => None,
            };
            match client.window(rpcs, window_timeout).await {
                Ok(w) => {
                    let mut error = expect.check(&w).err();
                    if let Some(before) = before
                        && error.is_none()
                    {
                        let wanted = expect.failure_code().unwrap_or_default();
                        error = client.failed_fast(&before, &w, wanted).await.err();
                    }
                    if let Some(why) = &mut error {
                        for nack in client.nacks().await {
                            why.push_str("; ");
                            why.push_str(&nack);
                        }
                    }
                    Outcome {
                        kind: client.kind,
                        window: Some(w),
                        error,
                        note: None,
                    }
                }
                Err(e) => Outcome {
                    kind: client.kind,
                    window: None,
                    error: Some(e),
                    note: None,
                },
            }
        }
    });
    let mut outcomes = futures_util::future::join_all(tasks).await;
    if expect.compares_distributions() {
        compare(&mut outcomes, world.backends.len());
    }
    for (client, outcome) in world.clients.iter_mut().zip(&outcomes) {
        client.failed |= outcome.error.is_some();
    }
    outcomes
}

/// Where the reference clients agree (within tolerance), meshlib must match
/// them both; where they disagree, meshlib must match gRPC C-core (Python),
/// and the disagreement is noted on grpc-node's outcome.
fn compare(outcomes: &mut [Outcome], backends: usize) {
    let window = |kind: Kind, outcomes: &[Outcome]| {
        outcomes
            .iter()
            .find(|o| o.kind == kind)
            .and_then(|o| o.window.clone())
    };
    let differs = |a: &Window, b: &Window| {
        (0..backends)
            .map(|i| (i, a.share(i), b.share(i)))
            .find(|(_, x, y)| (x - y).abs() > TOLERANCE)
    };
    let (Some(mesh), Some(python), node) = (
        window(Kind::Meshlib, outcomes),
        window(Kind::Python, outcomes),
        window(Kind::Node, outcomes),
    ) else {
        return;
    };
    let references_agree = node.as_ref().is_none_or(|n| differs(&python, n).is_none());
    let mut against = vec![(Kind::Python, python.clone())];
    if references_agree {
        against.extend(node.clone().map(|n| (Kind::Node, n)));
    } else if let Some((i, x, y)) = node.as_ref().and_then(|n| differs(&python, n)) {
        let note = format!(
            "disagrees with grpc-python on backend-{i}: {y:.1}% vs {x:.1}%; meshlib follows C-core"
        );
        if let Some(o) = outcomes.iter_mut().find(|o| o.kind == Kind::Node) {
            o.note = Some(note);
        }
    }
    for (kind, reference) in against {
        if let Some((i, x, y)) = differs(&mesh, &reference) {
            let why = format!(
                "backend-{i}: meshlib {x:.1}% vs {} {y:.1}% (more than ±{TOLERANCE} points)",
                kind.name()
            );
            if let Some(o) = outcomes.iter_mut().find(|o| o.kind == Kind::Meshlib) {
                match &mut o.error {
                    Some(e) => {
                        e.push_str("; ");
                        e.push_str(&why);
                    }
                    None => o.error = Some(why),
                }
            }
        }
    }
}
