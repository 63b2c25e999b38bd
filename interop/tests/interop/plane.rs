//! The control planes a scenario runs against: meshlib's own snapshot server,
//! in-process, or `interop/control-plane/ads_server.py`, an independent one on
//! grpcio, as a process. Both serve the same resources and report the
//! clients' ACKs and NACKs as [`Ack`]s, so a scenario reads the same either
//! way; a behaviour a client shows against only one of them is a finding.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use meshlib_xds::Resource as _;
use meshlib_xds::pb::envoy::config::cluster::v3::Cluster;
use meshlib_xds::pb::envoy::config::endpoint::v3::ClusterLoadAssignment;
use meshlib_xds::pb::envoy::config::listener::v3::Listener;
use meshlib_xds::pb::envoy::config::route::v3::RouteConfiguration;
use meshlib_xds::server::{Ack, Snapshot, SnapshotServer, StandaloneServer};
use prost::Message as _;
use tokio::process::Command;

use crate::harness::{MISSING_PEERS, Process, repo_root, tail};

/// Which control plane.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum PlaneKind {
    /// `meshlib_xds::server::SnapshotServer`, on a runtime of its own.
    Snapshot,
    /// `interop/control-plane/ads_server.py`, fed through a resources file.
    Python,
}

impl PlaneKind {
    /// In the order each scenario runs against them.
    pub(crate) const ALL: [PlaneKind; 2] = [PlaneKind::Snapshot, PlaneKind::Python];

    pub(crate) fn name(self) -> &'static str {
        match self {
            PlaneKind::Snapshot => "snapshot-plane",
            PlaneKind::Python => "python-plane",
        }
    }

    /// What it is, for the report.
    pub(crate) fn about(self) -> &'static str {
        match self {
            PlaneKind::Snapshot => {
                "`meshlib_xds::server::SnapshotServer`, in-process: sends a stream's headers at once and every type at each new version"
            }
            PlaneKind::Python => {
                "`interop/control-plane/ads_server.py` (grpcio 1.85.1 + xds-protos 1.85.0), a process reading a resources file: sends a stream's headers only with its first response, and only the types whose resources changed"
            }
        }
    }
}

/// A control plane, running or not, on one loopback port for its whole life:
/// a restart comes back where the clients' bootstrap points.
pub(crate) struct Plane {
    /// 0 until it first starts or a port is reserved for it.
    port: u16,
    dir: PathBuf,
    state: State,
}

enum State {
    Snapshot {
        /// Kept across restarts: the snapshot served and the ACK log.
        server: SnapshotServer,
        running: Option<StandaloneServer>,
    },
    Python {
        running: Option<Process>,
        /// One log per start, oldest first: their ACK lines are the ACK log.
        logs: Vec<PathBuf>,
    },
}

impl Plane {
    /// A plane of `kind`, not started, keeping its files in `dir`.
    pub(crate) fn new(kind: PlaneKind, dir: &Path) -> Plane {
        let state = match kind {
            PlaneKind::Snapshot => State::Snapshot {
                server: SnapshotServer::new(),
                running: None,
            },
            PlaneKind::Python => State::Python {
                running: None,
                logs: Vec::new(),
            },
        };
        Plane {
            port: 0,
            dir: dir.to_owned(),
            state,
        }
    }

    /// Its kind.
    pub(crate) fn kind(&self) -> PlaneKind {
        match self.state {
            State::Snapshot { .. } => PlaneKind::Snapshot,
            State::Python { .. } => PlaneKind::Python,
        }
    }

    /// Chooses the port before the plane starts, for clients that start
    /// first: a free one, bound and released at once.
    pub(crate) fn reserve_port(&mut self) -> Result<(), String> {
        let listener = std::net::TcpListener::bind("127.0.0.1:0")
            .map_err(|e| format!("cannot reserve a port for the control plane: {e}"))?;
        self.port = listener
            .local_addr()
            .map_err(|e| format!("control plane port: {e}"))?
            .port();
        Ok(())
    }

    /// Where it listens (or will): what the clients' bootstrap names.
    pub(crate) fn address(&self) -> Result<SocketAddr, String> {
        match self.port {
            0 => Err("the control plane has no port yet".to_owned()),
            port => Ok(SocketAddr::from(([127, 0, 0, 1], port))),
        }
    }

    fn resources_file(&self) -> PathBuf {
        self.dir.join("resources.json")
    }

    /// Starts it on its port (any free one the first time, unless reserved).
    pub(crate) async fn start(&mut self) -> Result<(), String> {
        let port = self.port;
        let resources = self.resources_file();
        let dir = self.dir.clone();
        match &mut self.state {
            State::Snapshot { server, running } => {
                if running.is_none() {
                    let started = server
                        .start_standalone(port, None)
                        .map_err(|e| format!("snapshot control plane on port {port}: {e}"))?;
                    self.port = started.address().port();
                    *running = Some(started);
                }
            }
            State::Python { running, logs } => {
                if running.is_none() {
                    let root = repo_root();
                    let python = root.join("interop/.peers/python/bin/python");
                    if !python.exists() {
                        return Err(format!("the Python control plane {MISSING_PEERS}"));
                    }
                    let mut command = Command::new(python);
                    command
                        .arg(root.join("interop/control-plane/ads_server.py"))
                        .arg("--resources")
                        .arg(&resources)
                        .args(["--host", "127.0.0.1", "--port", &port.to_string()]);
                    let log = dir.join(format!("control-plane-{}.log", logs.len()));
                    logs.push(log.clone());
                    let process = Process::start(command, log, "the Python control plane").await?;
                    self.port = process.address.port();
                    *running = Some(process);
                }
            }
        }
        Ok(())
    }

    /// Kills it outright, cutting every stream as a crash would.
    pub(crate) async fn stop(&mut self) {
        match &mut self.state {
            State::Snapshot { running, .. } => {
                if let Some(mut server) = running.take() {
                    server.kill();
                }
            }
            State::Python { running, .. } => {
                if let Some(mut process) = running.take() {
                    process.kill().await;
                }
            }
        }
    }

    /// Serves `snapshot` to every node, from now on and after a restart. The
    /// Python plane gets it as a resources file, written whole and renamed
    /// into place, so that it never reads half of one.
    pub(crate) fn serve(&mut self, snapshot: Snapshot) -> Result<(), String> {
        let resources = self.resources_file();
        match &mut self.state {
            State::Snapshot { server, .. } => {
                server.set_default(snapshot);
                Ok(())
            }
            State::Python { .. } => write_resources(&resources, &snapshot),
        }
    }

    /// Whether a new version goes out for every type a client watches (the
    /// snapshot server), or only for the types whose resources changed for
    /// it (ads_server.py, like most control planes): then a client stays on
    /// an older version of the others, and rightly so.
    pub(crate) fn resends_unchanged(&self) -> bool {
        matches!(self.state, State::Snapshot { .. })
    }

    /// Every ACK and NACK it has received, oldest first, across restarts.
    /// `version_info` is the snapshot's version on either plane (the Python
    /// plane's `"<version>.<n>"` loses its `.<n>`).
    pub(crate) fn acks(&self) -> Vec<Ack> {
        match &self.state {
            State::Snapshot { server, .. } => server.acks(),
            State::Python { logs, .. } => logs
                .iter()
                .flat_map(|log| {
                    let text = std::fs::read_to_string(log).unwrap_or_default();
                    // Whole lines only: the last may be being written.
                    text.split_inclusive('\n')
                        .filter_map(|line| parse_ack(line.strip_suffix('\n')?))
                        .collect::<Vec<_>>()
                })
                .collect(),
        }
    }

    /// For an error message: whether the Python plane died, or else the end
    /// of its log (a resources file it could not read, say).
    pub(crate) fn diagnosis(&mut self) -> Option<String> {
        let State::Python { running, logs } = &mut self.state else {
            return None;
        };
        let died = running.as_mut().and_then(Process::exited);
        Some(match (died, logs.last()) {
            (Some(why), _) => format!("the Python control plane {why}"),
            (None, Some(log)) => format!("the Python control plane's log:\n{}", tail(log)),
            (None, None) => "the Python control plane never started".to_owned(),
        })
    }
}

/// Writes `snapshot` as ads_server.py's resources file: every resource, to
/// every node, as the base64 of its serialized `Any`.
fn write_resources(path: &Path, snapshot: &Snapshot) -> Result<(), String> {
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
    // The version is the harness's step counter: nothing to escape.
    let json = format!(
        "{{\"version\": \"{}\", \"nodes\": {{\"*\": [\n  {}\n]}}}}\n",
        snapshot.version(),
        resources.join(",\n  ")
    );
    let staging = path.with_extension("json.partial");
    std::fs::write(&staging, json).map_err(|e| format!("{}: {e}", staging.display()))?;
    std::fs::rename(&staging, path).map_err(|e| format!("{}: {e}", path.display()))
}

/// One of ads_server.py's log lines, if it is an ACK or a NACK:
///
/// ```text
/// ads_server: ACK stream=3 node=interop-meshlib type=Cluster version=2.2 nonce=9
/// ads_server: NACK stream=3 node=interop-meshlib type=Cluster version=3.3 nonce=12 kept='2.2': reason
/// ```
///
/// A NACK's version is the one the client kept, as in a `DiscoveryRequest`.
fn parse_ack(line: &str) -> Option<Ack> {
    let (what, rest) = line.strip_prefix("ads_server: ")?.split_once(' ')?;
    let field = |key: &str| {
        rest.split_whitespace()
            .find_map(|f| f.strip_prefix(key)?.strip_prefix('='))
    };
    let node = field("node")?.to_owned();
    let type_url = type_url(field("type")?);
    let nonce = field("nonce")?.to_owned();
    let (version, error) = match what {
        "ACK" => (field("version")?, None),
        "NACK" => {
            // `kept=` is a Python repr, '...' (versions have no quotes).
            let kept = &rest[rest.find(" kept=")? + " kept=".len()..];
            let quote = kept.chars().next()?;
            let (version, reason) = kept[1..].split_once(quote)?;
            let reason = reason.strip_prefix(": ").unwrap_or(reason);
            (version, Some(reason.to_owned()))
        }
        _ => return None,
    };
    Some(Ack {
        node,
        type_url,
        version_info: snapshot_version(version).to_owned(),
        nonce,
        error,
        delta: false,
    })
}

/// The type URL ads_server.py logs by its last part.
fn type_url(short: &str) -> String {
    [
        Listener::TYPE_URL,
        RouteConfiguration::TYPE_URL,
        Cluster::TYPE_URL,
        ClusterLoadAssignment::TYPE_URL,
    ]
    .into_iter()
    .find(|url| url.rsplit('.').next() == Some(short))
    .unwrap_or(short)
    .to_owned()
}

/// The snapshot's version in ads_server.py's `"<file version>.<n>"`.
fn snapshot_version(version: &str) -> &str {
    version.split_once('.').map_or(version, |(file, _)| file)
}
