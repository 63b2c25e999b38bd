//! The scenarios, as data: what to serve, what the clients send, what their
//! traffic must show. Add one by adding an entry to [`scenarios`].

use std::net::SocketAddr;
use std::time::Duration;

use meshlib_interop::pb::client_configure_request::RpcType;
use meshlib_xds::server::Snapshot;
use meshlib_xds::server::build::api_listener;

use crate::harness::{Expect, Flags, Kind, SecondPlane};
use crate::resources::{
    Header, Path, ROUTES, SERVICE, bounded, hash_by_header, header_route, path_route, prioritized,
    retried, ring_hash_cluster, snapshot, split, to,
};

/// Makes the snapshot of a step from its version and the backends' addresses.
pub(crate) type MakeSnapshot = Box<dyn Fn(u64, &[SocketAddr]) -> Snapshot + Send + Sync>;

/// What a step does to the world before measuring.
pub(crate) enum Action {
    /// Serve a new snapshot.
    Serve(MakeSnapshot),
    /// Kill these backends.
    Stop(Vec<usize>),
    /// Start these backends again, on their ports.
    Restart(Vec<usize>),
    /// `Configure` every client: the methods to call and their metadata.
    Configure(Vec<RpcType>, Vec<(RpcType, &'static str, &'static str)>),
    /// Kill the control plane: every stream cut at once, as in a crash.
    StopPlane,
    /// Start the control plane again on its port, with the resources it
    /// served, and wait until every client has subscribed to it again.
    StartPlane,
    /// Serve the control plane `first` and start a second plane of the
    /// same kind serving `second`, in the role `role`: a fallback (gRFC A71:
    /// the clients' bootstrap lists it second), or an authority's plane
    /// (gRFC A47: the clients' target names the authority).
    Second {
        first: MakeSnapshot,
        second: MakeSnapshot,
        role: SecondPlane,
    },
}

/// One change and what must follow from it.
pub(crate) struct Step {
    pub(crate) name: &'static str,
    pub(crate) action: Action,
    pub(crate) expect: Expect,
    /// RPCs measured, once the change shows.
    pub(crate) rpcs: u32,
    /// How long the change may take to show.
    pub(crate) settle: Duration,
    /// Text meshlib's NACK must give as its reason after the step, both in
    /// its CSDS and in the `error_detail` the control plane got. A
    /// reference client that sent the control plane no NACK gets a note.
    pub(crate) meshlib_nack: Option<&'static str>,
}

impl Step {
    fn new(name: &'static str, action: Action, expect: Expect) -> Step {
        // Shares carry sampling noise: they need PEERS.md's 1,000 RPCs. The
        // other expectations are all or nothing (one backend, each method on
        // its own backends, every RPC failing), and so are the shares
        // meshlib is compared on with them: 500 RPCs show as much in half
        // the time, which pays for running every scenario on two planes.
        let rpcs = match expect {
            Expect::Shares(_) => 1000,
            _ => 500,
        };
        Step {
            name,
            action,
            expect,
            rpcs,
            settle: Duration::from_secs(20),
            meshlib_nack: None,
        }
    }

    fn nacked_by_meshlib(mut self, reason: &'static str) -> Step {
        self.meshlib_nack = Some(reason);
        self
    }

    /// Measures `rpcs` RPCs instead of 1,000 (or 500). A weighted split
    /// needs 2,000: two clients' 1,000-RPC shares of a 20/80 split differ
    /// by 1.8 points (one standard deviation), so ±5 would fail about one
    /// comparison in 200 by chance; at 2,000 it is one in ten thousand.
    fn rpcs(mut self, rpcs: u32) -> Step {
        self.rpcs = rpcs;
        self
    }

    fn within(mut self, settle: Duration) -> Step {
        self.settle = settle;
        self
    }
}

/// A scenario of `doc/xds-test-descriptions.md`, on loopback.
pub(crate) struct Scenario {
    pub(crate) name: &'static str,
    pub(crate) about: &'static str,
    /// How many backends (`backend-0`…).
    pub(crate) backends: usize,
    pub(crate) flags: Flags,
    pub(crate) start: Start,
    pub(crate) steps: Vec<Step>,
}

/// Which comes up first: the control plane or the clients. Either way the
/// first step's snapshot is what the plane serves when it comes up.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Start {
    /// The control plane, then the clients: a deployment's usual order.
    PlaneFirst,
    /// The clients, on a bootstrap naming a port chosen in advance; the
    /// control plane comes up on it this much later. Until then the clients
    /// have nothing to connect to and must keep trying.
    ClientsFirst(Duration),
    /// The clients, while only the second plane is up (the first step's
    /// action is [`Action::Second`]); the first's port is chosen in advance
    /// and nothing listens on it.
    PrimaryDown,
}

fn serve(make: impl Fn(u64, &[SocketAddr]) -> Snapshot + Send + Sync + 'static) -> Action {
    Action::Serve(Box::new(make))
}

/// Routes `routes` over clusters `a` and `b` (`b` may be empty).
fn routed(
    routes: impl Fn() -> Vec<meshlib_xds::pb::envoy::config::route::v3::Route> + Send + Sync + 'static,
    a: &'static [usize],
    b: &'static [usize],
) -> Action {
    Action::Serve(routed_snapshot(routes, a, b))
}

fn routed_snapshot(
    routes: impl Fn() -> Vec<meshlib_xds::pb::envoy::config::route::v3::Route> + Send + Sync + 'static,
    a: &'static [usize],
    b: &'static [usize],
) -> MakeSnapshot {
    Box::new(move |v, addresses| {
        let mut clusters = vec![("cluster-a", a)];
        if !b.is_empty() {
            clusters.push(("cluster-b", b));
        }
        snapshot(v, addresses, routes(), &clusters)
    })
}

const ALL4: &[usize] = &[0, 1, 2, 3];

/// The authority of the federation scenario.
const AUTHORITY: &str = "mesh.example";

/// `make`'s snapshot without its listener: a client that looked for the
/// listener anywhere but its authority's plane would find none.
fn without_listener(make: MakeSnapshot) -> MakeSnapshot {
    Box::new(move |version, addresses| {
        let full = make(version, addresses);
        full.resources()
            .filter(|(type_url, _, _)| !type_url.ends_with(".Listener"))
            .fold(Snapshot::new(full.version()), |snapshot, (_, name, any)| {
                snapshot.with_any(name, any.clone())
            })
    })
}

/// gRPC's status code for a call that ran out of time.
const DEADLINE_EXCEEDED: i32 = 4;

/// Both methods, each on its backends.
fn methods(empty: &[usize], unary: &[usize]) -> Expect {
    Expect::ByMethod(vec![
        ("EmptyCall", empty.to_vec()),
        ("UnaryCall", unary.to_vec()),
    ])
}

const BOTH: Flags = Flags {
    qps: 250,
    rpc: "EmptyCall,UnaryCall",
    metadata: "",
    clients: &Kind::ALL,
};

/// Every scenario, in the order they run.
pub(crate) fn scenarios() -> Vec<Scenario> {
    let default = |a, b| routed(|| to("cluster-a"), a, b);
    vec![
        Scenario {
            name: "ping_pong",
            about: "every backend of the cluster receives traffic",
            backends: 4,
            flags: Flags::default(),
            start: Start::PlaneFirst,
            steps: vec![Step::new(
                "all backends",
                default(ALL4, &[]),
                Expect::Spread(ALL4.to_vec()),
            )],
        },
        Scenario {
            name: "plane_starts_late",
            about: "clients started before their control plane connect once it comes up, 3 s later on the port their bootstrap names",
            backends: 2,
            flags: Flags::default(),
            start: Start::ClientsFirst(Duration::from_secs(3)),
            steps: vec![Step::new(
                "plane up",
                default(&[0, 1], &[]),
                Expect::even(&[0, 1]),
            )],
        },
        Scenario {
            name: "round_robin",
            about: "RPCs are spread evenly (round robin) over the cluster",
            backends: 4,
            flags: Flags::default(),
            start: Start::PlaneFirst,
            steps: vec![Step::new("even", default(ALL4, &[]), Expect::even(ALL4))],
        },
        Scenario {
            name: "traffic_splitting",
            about: "a route's weighted clusters split traffic by weight",
            backends: 2,
            flags: Flags::default(),
            start: Start::PlaneFirst,
            steps: vec![
                Step::new(
                    "one cluster",
                    default(&[0], &[1]),
                    Expect::Shares(vec![(0, 100.0)]),
                ),
                Step::new(
                    "a:20 b:80",
                    routed(
                        || split(&[("cluster-a", 20), ("cluster-b", 80)]),
                        &[0],
                        &[1],
                    ),
                    Expect::Shares(vec![(0, 20.0), (1, 80.0)]),
                )
                .rpcs(2000),
            ],
        },
        Scenario {
            name: "weight_change",
            about: "a live change of weights shows within seconds, without failures",
            backends: 2,
            flags: Flags::default(),
            start: Start::PlaneFirst,
            steps: vec![
                Step::new(
                    "a:80 b:20",
                    routed(
                        || split(&[("cluster-a", 80), ("cluster-b", 20)]),
                        &[0],
                        &[1],
                    ),
                    Expect::Shares(vec![(0, 80.0), (1, 20.0)]),
                )
                .rpcs(2000),
                Step::new(
                    "a:20 b:80",
                    routed(
                        || split(&[("cluster-a", 20), ("cluster-b", 80)]),
                        &[0],
                        &[1],
                    ),
                    Expect::Shares(vec![(0, 20.0), (1, 80.0)]),
                )
                .rpcs(2000)
                .within(Duration::from_secs(5)),
            ],
        },
        Scenario {
            name: "path_matching",
            about: "routes match the RPC path: exact, prefix, regex, case-insensitive",
            backends: 2,
            flags: BOTH,
            start: Start::PlaneFirst,
            steps: vec![
                Step::new("default", default(&[0], &[1]), methods(&[0], &[0])),
                Step::new(
                    "path EmptyCall",
                    routed(
                        || {
                            path_route(
                                Path::Exact("/grpc.testing.TestService/EmptyCall"),
                                "cluster-b",
                                "cluster-a",
                            )
                        },
                        &[0],
                        &[1],
                    ),
                    methods(&[1], &[0]),
                ),
                Step::new(
                    "prefix Unary",
                    routed(
                        || {
                            path_route(
                                Path::Prefix("/grpc.testing.TestService/Unary"),
                                "cluster-b",
                                "cluster-a",
                            )
                        },
                        &[0],
                        &[1],
                    ),
                    methods(&[0], &[1]),
                ),
                Step::new(
                    "regex UnaryCall",
                    routed(
                        || path_route(Path::Regex(r"^\/.*\/UnaryCall$"), "cluster-b", "cluster-a"),
                        &[0],
                        &[1],
                    ),
                    methods(&[0], &[1]),
                ),
                Step::new(
                    "path ignoring case",
                    routed(
                        || {
                            path_route(
                                Path::ExactIgnoringCase("/gRpC.tEsTinG.tEstseRvice/empTycaLl"),
                                "cluster-b",
                                "cluster-a",
                            )
                        },
                        &[0],
                        &[1],
                    ),
                    methods(&[1], &[0]),
                ),
            ],
        },
        Scenario {
            name: "header_matching",
            about: "routes match request metadata: exact, prefix, suffix, present, inverted, range, regex",
            backends: 2,
            flags: Flags {
                metadata: "EmptyCall:xds_md:empty_ytpme,UnaryCall:xds_md:unary_yranu,UnaryCall:xds_md_numeric:159",
                ..BOTH
            },
            start: Start::PlaneFirst,
            steps: vec![
                Step::new("default", default(&[0], &[1]), methods(&[0], &[0])),
                header_step(
                    "exact",
                    "xds_md",
                    Header::Exact("empty_ytpme"),
                    methods(&[1], &[0]),
                ),
                header_step(
                    "prefix",
                    "xds_md",
                    Header::Prefix("un"),
                    methods(&[0], &[1]),
                ),
                header_step(
                    "suffix",
                    "xds_md",
                    Header::Suffix("me"),
                    methods(&[1], &[0]),
                ),
                header_step(
                    "present",
                    "xds_md_numeric",
                    Header::Present,
                    methods(&[0], &[1]),
                ),
                header_step(
                    "inverted",
                    "xds_md",
                    Header::Not("unary_yranu"),
                    methods(&[1], &[0]),
                ),
                header_step(
                    "range",
                    "xds_md_numeric",
                    Header::Range(100, 200),
                    methods(&[0], &[1]),
                ),
                header_step(
                    "regex",
                    "xds_md",
                    Header::Regex("^em.*me$"),
                    methods(&[1], &[0]),
                ),
            ],
        },
        Scenario {
            name: "change_backend_service",
            about: "pointing the route at another cluster moves all traffic to it",
            backends: 4,
            flags: Flags::default(),
            start: Start::PlaneFirst,
            steps: vec![
                Step::new(
                    "cluster a",
                    default(&[0, 1], &[2, 3]),
                    Expect::Spread(vec![0, 1]),
                ),
                Step::new(
                    "cluster b",
                    routed(|| to("cluster-b"), &[0, 1], &[2, 3]),
                    Expect::Spread(vec![2, 3]),
                ),
            ],
        },
        Scenario {
            name: "remove_endpoints",
            about: "endpoints removed by EDS stop receiving traffic, with no failed RPC",
            backends: 4,
            flags: Flags::default(),
            start: Start::PlaneFirst,
            steps: vec![
                Step::new("four endpoints", default(ALL4, &[]), Expect::even(ALL4)),
                Step::new(
                    "two endpoints",
                    default(&[0, 1], &[]),
                    Expect::even(&[0, 1]),
                ),
            ],
        },
        Scenario {
            name: "nack_keeps_config",
            about: "a Cluster the client cannot use is NACKed (with the reason in CSDS) and the last good one keeps serving",
            backends: 2,
            flags: Flags::default(),
            start: Start::PlaneFirst,
            steps: vec![
                Step::new("valid", default(&[0, 1], &[]), Expect::even(&[0, 1])),
                Step::new(
                    "CLUSTER_PROVIDED",
                    serve(|v, addresses| {
                        let mut provided = meshlib_xds::server::build::eds_cluster("cluster-a");
                        provided.lb_policy =
                            meshlib_xds::pb::envoy::config::cluster::v3::cluster::LbPolicy::ClusterProvided as i32;
                        snapshot(v, addresses, to("cluster-a"), &[("cluster-a", &[0, 1])]).with(provided)
                    }),
                    Expect::even(&[0, 1]),
                )
                .nacked_by_meshlib("CLUSTER_PROVIDED"),
            ],
        },
        Scenario {
            name: "backends_restart",
            about: "RPCs fail fast with UNAVAILABLE while every backend is down and spread as before once they are back",
            backends: 4,
            flags: Flags::default(),
            start: Start::PlaneFirst,
            steps: vec![
                Step::new("running", default(ALL4, &[]), Expect::even(ALL4)),
                Step::new("stopped", Action::Stop(ALL4.to_vec()), Expect::AllFail),
                Step::new(
                    "restarted",
                    Action::Restart(ALL4.to_vec()),
                    Expect::even(ALL4),
                )
                .within(Duration::from_secs(40)),
            ],
        },
        Scenario {
            name: "plane_restart",
            about: "RPCs keep succeeding on the cached configuration while the control plane is down; restarted on its port with the same resources, every client subscribes again, and a change pushed then applies",
            backends: 3,
            flags: Flags::default(),
            start: Start::PlaneFirst,
            steps: vec![
                Step::new("running", default(&[0, 1], &[2]), Expect::even(&[0, 1])),
                Step::new("plane down", Action::StopPlane, Expect::even(&[0, 1])),
                Step::new("plane back", Action::StartPlane, Expect::even(&[0, 1])),
                Step::new(
                    "change after restart",
                    routed(|| to("cluster-b"), &[0, 1], &[2]),
                    Expect::Shares(vec![(2, 100.0)]),
                ),
            ],
        },
        Scenario {
            name: "fallback",
            about: "gRFC A71, as psm-interop's fallback-on-startup test: with the primary control plane down at start, the clients take the fallback's configuration; once the primary is up they move to its, and when it goes down again with everything cached they keep it. Without grpc-node: grpc-js-xds 1.14.1 reads only the first of the bootstrap's xds_servers",
            backends: 2,
            flags: Flags {
                clients: &[Kind::Meshlib, Kind::Python],
                ..Flags::default()
            },
            start: Start::PrimaryDown,
            steps: vec![
                Step::new(
                    "primary down",
                    Action::Second {
                        first: routed_snapshot(|| to("cluster-a"), &[0], &[]),
                        second: routed_snapshot(|| to("cluster-a"), &[1], &[]),
                        role: SecondPlane::Fallback,
                    },
                    Expect::Shares(vec![(1, 100.0)]),
                ),
                Step::new(
                    "primary up",
                    Action::StartPlane,
                    Expect::Shares(vec![(0, 100.0)]),
                ),
                Step::new(
                    "primary down again",
                    Action::StopPlane,
                    Expect::Shares(vec![(0, 100.0)]),
                ),
            ],
        },
        Scenario {
            name: "federation",
            about: "gRFC A47: the target xds://mesh.example/interop-service names an authority whose own control plane serves the xdstp:// listener; the route configuration and clusters it names, old-style, come from the top-level plane, and a change there applies",
            backends: 2,
            flags: Flags::default(),
            start: Start::PlaneFirst,
            steps: vec![
                Step::new(
                    "listener from the authority",
                    Action::Second {
                        first: without_listener(routed_snapshot(|| to("cluster-a"), &[0], &[])),
                        second: Box::new(|version, _| {
                            Snapshot::new(version.to_string()).with(api_listener(
                                &format!("xdstp://{AUTHORITY}/envoy.config.listener.v3.Listener/{SERVICE}"),
                                ROUTES,
                            ))
                        }),
                        role: SecondPlane::Authority(AUTHORITY),
                    },
                    Expect::Shares(vec![(0, 100.0)]),
                ),
                Step::new(
                    "route change on the top-level plane",
                    routed(|| to("cluster-b"), &[0], &[1]),
                    Expect::Shares(vec![(1, 100.0)]),
                ),
            ],
        },
        Scenario {
            name: "affinity",
            about: "ring hash on a request header keeps each session on one backend, the one gRPC picks",
            backends: 4,
            flags: Flags {
                metadata: "UnaryCall:x-session-id:session-42",
                ..Flags::default()
            },
            start: Start::PlaneFirst,
            steps: {
                // One session per step, each compared with C-core's backend
                // for it: a ring built otherwise, or a hash that ignores the
                // header, would put some session elsewhere.
                let mut steps = vec![Step::new(
                    "session-42",
                    serve(|v, addresses| {
                        snapshot(
                            v,
                            addresses,
                            hash_by_header("cluster-a", "x-session-id"),
                            &[("cluster-a", ALL4)],
                        )
                        .with(ring_hash_cluster("cluster-a"))
                    }),
                    Expect::Sticky(ALL4.to_vec()),
                )];
                for session in ["session-1", "session-2", "session-3", "session-4"] {
                    steps.push(Step::new(
                        session,
                        Action::Configure(
                            vec![RpcType::UnaryCall],
                            vec![(RpcType::UnaryCall, "x-session-id", session)],
                        ),
                        Expect::Sticky(ALL4.to_vec()),
                    ));
                }
                steps
            },
        },
        Scenario {
            name: "retry",
            about: "a route's retry_policy (gRFC A44), as psm's retry test: with every backend failing UNAVAILABLE until the 4th retry (`grpc-previous-rpc-attempts` 4), `num_retries` 3 fails every RPC and 4 lets every RPC succeed; and with success only on the 5th retry, `num_retries` 9 still fails every RPC (at most 5 attempts)",
            // One backend: which endpoint the last attempt lands on is chance,
            // and not what is compared.
            backends: 1,
            flags: Flags::default(),
            start: Start::PlaneFirst,
            steps: vec![
                Step::new(
                    "no retry policy",
                    routed(|| to("cluster-a"), &[0], &[]),
                    Expect::Shares(vec![(0, 100.0)]),
                ),
                Step::new(
                    "backends fail until retry 4",
                    Action::Configure(
                        vec![RpcType::UnaryCall],
                        vec![(
                            RpcType::UnaryCall,
                            "rpc-behavior",
                            "succeed-on-retry-attempt-4,error-code-14",
                        )],
                    ),
                    Expect::AllFail,
                ),
                Step::new(
                    "num_retries 3",
                    routed(|| retried("cluster-a", 3), &[0], &[]),
                    Expect::AllFail,
                ),
                Step::new(
                    "num_retries 4",
                    routed(|| retried("cluster-a", 4), &[0], &[]),
                    Expect::Shares(vec![(0, 100.0)]),
                ),
                Step::new(
                    "num_retries 9",
                    routed(|| retried("cluster-a", 9), &[0], &[]),
                    Expect::Shares(vec![(0, 100.0)]),
                ),
                // gRFC A6 caps a call at 5 attempts, whatever num_retries says.
                Step::new(
                    "backends fail until retry 5",
                    Action::Configure(
                        vec![RpcType::UnaryCall],
                        vec![(
                            RpcType::UnaryCall,
                            "rpc-behavior",
                            "succeed-on-retry-attempt-5,error-code-14",
                        )],
                    ),
                    Expect::AllFail,
                ),
            ],
        },
        Scenario {
            name: "timeout",
            about: "a route's max_stream_duration (gRFC A31), as psm's timeout test: 3 s lets calls the backend answers at once through and fails every call it answers after 4 s with DEADLINE_EXCEEDED (the clients' own deadline is 5 s)",
            backends: 1,
            // Fewer calls a second: each is held for seconds, and the
            // clients' own deadline is 5 s.
            flags: Flags {
                qps: 100,
                ..Flags::default()
            },
            start: Start::PlaneFirst,
            steps: vec![
                Step::new(
                    "3 s, calls answered at once",
                    routed(|| bounded("cluster-a", 3), &[0], &[]),
                    Expect::Shares(vec![(0, 100.0)]),
                ),
                Step::new(
                    "calls answered after 4 s",
                    Action::Configure(
                        vec![RpcType::UnaryCall],
                        vec![(RpcType::UnaryCall, "rpc-behavior", "sleep-4")],
                    ),
                    Expect::AllFailWith(DEADLINE_EXCEEDED),
                ),
            ],
        },
        Scenario {
            name: "aggregate_failover",
            about: "an aggregate cluster (gRFC A37) sends to its EDS cluster while that has endpoints up, to its LOGICAL_DNS cluster (`localhost`, backend 1's port) while EDS gives none or they are down, and back",
            backends: 2,
            flags: Flags::default(),
            start: Start::PlaneFirst,
            steps: vec![
                Step::new("EDS first", aggregate(&[0]), Expect::Shares(vec![(0, 100.0)])),
                Step::new("EDS empty", aggregate(&[]), Expect::Shares(vec![(1, 100.0)])),
                Step::new("EDS back", aggregate(&[0]), Expect::Shares(vec![(0, 100.0)])),
                Step::new(
                    "EDS backend down",
                    Action::Stop(vec![0]),
                    Expect::Shares(vec![(1, 100.0)]),
                )
                .within(Duration::from_secs(30)),
                Step::new(
                    "EDS backend back",
                    Action::Restart(vec![0]),
                    Expect::Shares(vec![(0, 100.0)]),
                )
                .within(Duration::from_secs(40)),
            ],
        },
        Scenario {
            name: "failover",
            about: "priority 1 takes the traffic while priority 0 is down, and gives it back",
            backends: 4,
            flags: Flags::default(),
            start: Start::PlaneFirst,
            steps: vec![
                Step::new(
                    "priority 0",
                    serve(|v, addresses| {
                        snapshot(v, addresses, to("cluster-a"), &[("cluster-a", &[])])
                            .with(prioritized("cluster-a", addresses, &[&[0, 1], &[2, 3]]))
                    }),
                    Expect::even(&[0, 1]),
                ),
                Step::new(
                    "priority 0 down",
                    Action::Stop(vec![0, 1]),
                    Expect::even(&[2, 3]),
                )
                .within(Duration::from_secs(30)),
                Step::new(
                    "priority 0 back",
                    Action::Restart(vec![0, 1]),
                    Expect::even(&[0, 1]),
                )
                .within(Duration::from_secs(40)),
            ],
        },
    ]
}

/// Everything to aggregate cluster `cluster-agg`: EDS `cluster-a` over
/// `members`, then LOGICAL_DNS `cluster-dns`, `localhost` at backend 1's
/// port. `localhost`, not a name of a test DNS server: the reference clients
/// resolve with the system's resolver, which a test cannot point elsewhere
/// (meshlib's own DNS tests run against dnsmasq).
fn aggregate(members: &'static [usize]) -> Action {
    use meshlib_xds::server::build::{aggregate_cluster, logical_dns_cluster};
    serve(move |v, addresses| {
        snapshot(v, addresses, to("cluster-agg"), &[("cluster-a", members)])
            .with(aggregate_cluster(
                "cluster-agg",
                &["cluster-a", "cluster-dns"],
            ))
            .with(logical_dns_cluster(
                "cluster-dns",
                "localhost",
                addresses[1].port(),
            ))
    })
}

/// A header-matching step: header `name` by `rule` to cluster b./// A header-matching step: header `name` by `rule` to cluster b.
fn header_step(
    name: &'static str,
    header: &'static str,
    rule: Header<'static>,
    expect: Expect,
) -> Step {
    Step::new(
        name,
        routed(
            move || header_route(header, rule.clone(), "cluster-b", "cluster-a"),
            &[0],
            &[1],
        ),
        expect,
    )
}
