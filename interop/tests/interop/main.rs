//! meshlib against gRPC's reference xDS clients, scenario by scenario
//! (grpc/grpc `doc/xds-test-descriptions.md`).
//!
//! Each scenario starts on loopback a control plane, `xds-interop-server`
//! backends named `backend-N`, and three clients under one bootstrap:
//! meshlib's `xds-interop-client`, gRPC Python and gRPC Node (installed by
//! `scripts/install-interop-peers`). Each step changes the world (a new
//! snapshot, stopped or restarted backends or control plane, a `Configure`),
//! waits until the clients' traffic shows the change, then asks every client
//! for the next 1,000 RPCs where shares are checked (2,000 for weighted
//! splits), 500 where every RPC must go one way, with `GetClientStats`, and
//! checks them.
//!
//! Every scenario runs twice: against meshlib-xds's snapshot server
//! (`snapshot-plane`), then against `interop/control-plane/ads_server.py`
//! (`python-plane`), an independent control plane on grpcio; see
//! [`plane`]. A run is named `scenario/plane`, and filters match any part
//! of that name:
//!
//! ```text
//! cargo test -p meshlib-interop --test interop                    # everything
//! cargo test -p meshlib-interop --test interop -- round_robin     # one scenario, both planes
//! cargo test -p meshlib-interop --test interop -- python-plane    # every scenario, one plane
//! cargo test -p meshlib-interop --test interop -- round_robin/python
//! MESHLIB_INTEROP_REPORT=1 cargo test -p meshlib-interop --test interop  # and write INTEROP.md
//! ```
//!
//! Adding a scenario is adding an entry to [`scenarios`].

mod harness;
mod plane;
mod report;
mod resources;
mod scenarios;

use std::time::{Duration, Instant};

use harness::{Kind, Outcome, World};
use plane::PlaneKind;
use scenarios::{Action, Scenario, Start};

/// What became of one step.
pub(crate) struct StepResult {
    pub(crate) name: &'static str,
    pub(crate) outcomes: Vec<Outcome>,
    /// When the control plane came up in the step: how long each client
    /// took to get its configuration from it (`meshlib 1.0 s, …`).
    pub(crate) plane_up: Option<String>,
}

/// What became of one scenario against one control plane.
pub(crate) struct ScenarioResult {
    pub(crate) name: &'static str,
    pub(crate) plane: PlaneKind,
    pub(crate) about: &'static str,
    pub(crate) steps: Vec<StepResult>,
    /// Why it could not run at all.
    pub(crate) error: Option<String>,
    pub(crate) took: Duration,
}

impl ScenarioResult {
    /// `scenario/plane`, as filters match it.
    pub(crate) fn test_name(&self) -> String {
        run_name(self.name, self.plane)
    }

    pub(crate) fn passed(&self) -> bool {
        self.error.is_none()
            && self
                .steps
                .iter()
                .all(|s| s.outcomes.iter().all(|o| o.error.is_none()))
    }
}

/// How long every client has to ACK or NACK a new snapshot, or to subscribe
/// again to a restarted control plane.
const ANSWER_LIMIT: Duration = Duration::from_secs(20);

/// Each scenario has this long, all steps included, before it fails.
const SCENARIO_LIMIT: Duration = Duration::from_secs(240);

fn run_name(scenario: &str, plane: PlaneKind) -> String {
    format!("{scenario}/{}", plane.name())
}

async fn run(scenario: &Scenario, plane: PlaneKind) -> ScenarioResult {
    let started = Instant::now();
    let mut result = ScenarioResult {
        name: scenario.name,
        plane,
        about: scenario.about,
        steps: Vec::new(),
        error: None,
        took: Duration::ZERO,
    };
    let outcome =
        tokio::time::timeout(SCENARIO_LIMIT, steps(scenario, plane, &mut result.steps)).await;
    result.error = match outcome {
        Ok(Ok(())) => None,
        Ok(Err(why)) => Some(why),
        Err(_) => Some(format!("did not finish within {SCENARIO_LIMIT:?}")),
    };
    result.took = started.elapsed();
    result
}

async fn steps(
    scenario: &Scenario,
    plane: PlaneKind,
    results: &mut Vec<StepResult>,
) -> Result<(), String> {
    let name = run_name(scenario.name, plane);
    let mut world = World::start(scenario.name, plane, scenario.backends).await?;
    for (i, step) in scenario.steps.iter().enumerate() {
        let acks_before = world.plane.acks().len();
        apply(&mut world, &step.action).await?;
        if i == 0 {
            // The first configuration is in place before anything starts.
            match scenario.start {
                Start::PlaneFirst => {
                    // As in a deployment.
                    world.start_plane().await?;
                    world.start_clients(&scenario.flags).await?;
                }
                Start::ClientsFirst(delay) => {
                    world.plane.reserve_port()?;
                    world.start_clients(&scenario.flags).await?;
                    tokio::time::sleep(delay).await;
                    world.start_plane().await?;
                }
                Start::PrimaryDown => world.start_clients(&scenario.flags).await?,
            }
        }
        let answered = match step.action {
            Action::Serve(_) => world.until_answered(ANSWER_LIMIT).await?,
            // A primary that comes up for the first time (after a fallback
            // served) is answered with what it serves.
            Action::StartPlane if acks_before == 0 => world.until_answered(ANSWER_LIMIT).await?,
            Action::StartPlane => world.until_resubscribed(acks_before, ANSWER_LIMIT).await?,
            _ => Vec::new(),
        };
        let plane_came_up = matches!(step.action, Action::StartPlane)
            || (i == 0 && matches!(scenario.start, Start::ClientsFirst(_)));
        let plane_up = plane_came_up.then(|| {
            let took: Vec<String> = answered
                .iter()
                .map(|(kind, took)| format!("{} {:.1} s", kind.name(), took.as_secs_f64()))
                .collect();
            took.join(", ")
        });
        if let Some(took) = &plane_up {
            println!(
                "  {name} / {}: configured by the plane after {took}",
                step.name
            );
        }
        let mut outcomes = harness::measure(
            &mut world,
            &step.expect,
            step.rpcs,
            step.settle,
            scenario.flags.qps * scenario.flags.rpc.split(',').count() as u32,
        )
        .await;
        if let Some(reason) = step.meshlib_nack {
            let nacks = world.meshlib_nacks().await;
            if !nacks.iter().any(|n| n.contains(reason)) {
                let why = format!("CSDS shows no NACK mentioning {reason:?} (NACKs: {nacks:?})");
                for o in outcomes.iter_mut().filter(|o| o.kind == Kind::Meshlib) {
                    o.error.get_or_insert(why.clone());
                }
            }
            check_plane_nacks(&world.plane.acks()[acks_before..], reason, &mut outcomes);
        }
        for o in &outcomes {
            let status = if o.error.is_some() { "FAIL" } else { "ok" };
            let seen = o.window.as_ref().map(|w| w.describe()).unwrap_or_default();
            println!(
                "  {name} / {} / {}: {status} [{seen}]",
                step.name,
                o.kind.name()
            );
            if let Some(e) = &o.error {
                println!("      {e}");
            }
            if let Some(n) = &o.note {
                println!("      note: {n}");
            }
        }
        results.push(StepResult {
            name: step.name,
            outcomes,
            plane_up,
        });
    }
    Ok(())
}

/// The control plane must have got each client's NACK of the step, and
/// meshlib's must give `reason`: a NACK is what a control plane's operator
/// sees. A reference client that sent none gets a note, not a failure.
fn check_plane_nacks(acks: &[meshlib_xds::server::Ack], reason: &str, outcomes: &mut [Outcome]) {
    for o in outcomes.iter_mut() {
        let node = o.kind.node_id();
        let nacks: Vec<&str> = acks
            .iter()
            .filter(|a| a.node == node)
            .filter_map(|a| a.error.as_deref())
            .collect();
        if o.kind != Kind::Meshlib {
            if nacks.is_empty() {
                o.note
                    .get_or_insert_with(|| "sent the control plane no NACK".to_owned());
            }
            continue;
        }
        let why = if nacks.is_empty() {
            "the control plane got no NACK from it".to_owned()
        } else if !nacks.iter().any(|n| n.contains(reason)) {
            format!("no NACK the control plane got mentions {reason:?}: {nacks:?}")
        } else {
            continue;
        };
        match &mut o.error {
            Some(e) => {
                e.push_str("; ");
                e.push_str(&why);
            }
            None => o.error = Some(why),
        }
    }
}

async fn apply(world: &mut World, action: &Action) -> Result<(), String> {
    match action {
        Action::Serve(make) => world.serve(|version, addresses| make(version, addresses))?,
        Action::Stop(which) => world.stop(which).await,
        Action::Restart(which) => world.restart(which).await?,
        Action::Configure(rpcs, metadata) => world.configure(rpcs, metadata).await?,
        Action::StopPlane => world.stop_plane().await,
        Action::StartPlane => world.start_plane().await?,
        Action::Second {
            first,
            second,
            role,
        } => {
            world.plane.reserve_port()?;
            world
                .serve_with_second(
                    |version, addresses| first(version, addresses),
                    |version, addresses| second(version, addresses),
                    *role,
                )
                .await?
        }
    }
    Ok(())
}

fn main() -> std::process::ExitCode {
    // Cargo passes libtest's flags; the only argument we take is name filters.
    let filters: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let all = scenarios::scenarios();
    // Each scenario against each plane in turn, so that the two runs of a
    // scenario sit side by side in the output.
    let chosen: Vec<(&Scenario, PlaneKind)> = all
        .iter()
        .flat_map(|s| PlaneKind::ALL.map(|plane| (s, plane)))
        .filter(|(s, plane)| {
            let name = run_name(s.name, *plane);
            filters.is_empty() || filters.iter().any(|f| name.contains(f.as_str()))
        })
        .collect();
    if chosen.is_empty() {
        // A filter that matches nothing (or a libtest flag's value taken for
        // one) must not pass as a run of nothing.
        eprintln!("no interop scenario matches {filters:?}");
        return std::process::ExitCode::FAILURE;
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("cannot start a runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let started = Instant::now();
    println!("\nrunning {} interop scenarios", chosen.len());
    let mut results = Vec::new();
    for (scenario, plane) in chosen {
        let name = run_name(scenario.name, plane);
        println!("scenario {name}: {}", scenario.about);
        let result = runtime.block_on(run(scenario, plane));
        if let Some(e) = &result.error {
            println!("  {name}: {e}");
        }
        let verdict = if result.passed() { "ok" } else { "FAILED" };
        println!(
            "test {name} ... {verdict} ({:.1} s)",
            result.took.as_secs_f64()
        );
        results.push(result);
    }
    let failed: Vec<String> = results
        .iter()
        .filter(|r| !r.passed())
        .map(ScenarioResult::test_name)
        .collect();
    let passed = results.len() - failed.len();
    if std::env::var_os("MESHLIB_INTEROP_REPORT").is_some() {
        match report::write(&results, filters.is_empty()) {
            Ok(path) => println!("wrote {}", path.display()),
            Err(e) => println!("could not write INTEROP.md: {e}"),
        }
    }
    if !failed.is_empty() {
        println!("\nfailures:\n    {}", failed.join("\n    "));
    }
    println!(
        "\ntest result: {}. {passed} passed; {} failed; 0 ignored; 0 measured; 0 filtered out; finished in {:.2}s\n",
        if failed.is_empty() { "ok" } else { "FAILED" },
        failed.len(),
        started.elapsed().as_secs_f64()
    );
    drop(runtime);
    if failed.is_empty() {
        std::process::ExitCode::SUCCESS
    } else {
        std::process::ExitCode::FAILURE
    }
}
