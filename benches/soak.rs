//! The soak test (issue 10, item 7): endpoint and route churn under load for
//! a long time, watching this process's memory and file descriptors.
//!
//! `scripts/soak [--minutes N] [--seed S]` builds and runs it. Every 100 ms
//! the control plane changes the route's weights over three EDS clusters and
//! one cluster's endpoints (added, removed with their backend stopped,
//! drained, failed, recovered); now and then a cluster leaves the route and
//! comes back. 200 requests/s flow throughout, retried on
//! `reset,connect-failure`, so none may fail. Everything (client, control
//! plane, backends) is in this process, on ports the OS picks.
//!
//! VmRSS and the open descriptors are read at the start, every minute and at
//! the end. The baseline is the first minute's sample, when pools,
//! buffers and the allocator's arenas have reached their working size under
//! traffic; the run fails if any request failed, if the client did not end
//! on the last configuration, or if, from that baseline to the end,
//! - descriptors grew by more than 64: each connection is two descriptors
//!   here (client and backend side) and a steady state holds a few dozen, so
//!   a leak of one connection per removal (3 a second) crosses it within a
//!   minute, while pools idling down do not;
//! - RSS grew by more than 4 MiB plus 10%: the allocator keeps freed pages
//!   and fragments a little after warm-up (5-minute runs grew 0.1-0.4 MiB from
//!   minute 1 to the end, a tenth of the margin or less), while a leak of 300
//!   bytes per update (18,000 updates in 30 minutes) or 16 bytes per
//!   request (360,000) crosses it; a 5-minute run catches 2 KB per update
//!   or 100 bytes per request.

use std::time::Instant;

use meshlib_benches::churn::{Harness, Scenario};

/// This process's resident set, in KiB, and its open descriptors.
#[derive(Debug, Clone, Copy)]
struct Sample {
    rss_kib: u64,
    fds: u64,
}

fn sample() -> Sample {
    let rss_kib = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
            line.split_whitespace().nth(1)?.parse().ok()
        })
        .unwrap_or(0);
    let fds = std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count() as u64);
    Sample { rss_kib, fds }
}

const FD_TOLERANCE: u64 = 64;
const RSS_TOLERANCE_KIB: u64 = 4 * 1024;

fn usage() -> ! {
    eprintln!("usage: soak [--minutes N] [--seed S]");
    std::process::exit(2)
}

#[tokio::main]
async fn main() {
    let (mut minutes, mut seed) = (30, 7);
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let value = args.next().and_then(|v| v.parse::<u64>().ok());
        match (arg.as_str(), value) {
            ("--minutes", Some(n)) if n > 0 => minutes = n,
            ("--seed", Some(s)) => seed = s,
            _ => usage(),
        }
    }
    let scenario = Scenario::soak(minutes, seed);
    let mut harness = match Harness::start(&scenario).await {
        Ok(harness) => harness,
        Err(error) => {
            eprintln!("soak: could not start: {error}");
            std::process::exit(1);
        }
    };
    let start = sample();
    let began = Instant::now();
    println!(
        "soak: {minutes} min, seed {seed}: {} clusters x {} backends, an update every {:?}, {} requests/s",
        scenario.clusters,
        scenario.backends_per_cluster,
        scenario.update_interval,
        scenario.requests_per_second
    );
    println!("minute 0: rss {} KiB, fds {}", start.rss_kib, start.fds);
    let mut samples = vec![start];
    let mut seconds = 0u64;
    let result = harness
        .run(&scenario, |report| {
            seconds += 1;
            if seconds.is_multiple_of(60) {
                let now = sample();
                samples.push(now);
                println!(
                    "minute {}: rss {} KiB, fds {}, {} requests, {} failed, {} updates",
                    seconds / 60,
                    now.rss_kib,
                    now.fds,
                    report.sent,
                    report.failed_total(),
                    report.updates
                );
            }
        })
        .await;
    let end = sample();
    let report = match result {
        Ok(report) => report,
        Err(error) => {
            eprintln!("soak: FAILED: {error}");
            std::process::exit(1);
        }
    };
    let baseline = samples.get(1).copied().unwrap_or(start);
    let rss_limit = baseline.rss_kib + baseline.rss_kib / 10 + RSS_TOLERANCE_KIB;
    let fd_limit = baseline.fds + FD_TOLERANCE;
    println!("{report}");
    println!(
        "summary: {:.1?}, {} requests, {} failed; rss start {} KiB, baseline {} KiB, end {} KiB (limit {}); fds start {}, baseline {}, end {} (limit {})",
        began.elapsed(),
        report.sent,
        report.failed_total(),
        start.rss_kib,
        baseline.rss_kib,
        end.rss_kib,
        rss_limit,
        start.fds,
        baseline.fds,
        end.fds,
        fd_limit
    );
    let mut problems = Vec::new();
    if report.failed_total() > 0 {
        problems.push(format!("{} requests failed", report.failed_total()));
    }
    if report.last_version_acked == Some(false) || !report.last_update_held || report.nacks > 0 {
        problems.push("the last configuration was not ACKed, or one was NACKed".to_owned());
    }
    if report.final_misrouted > 0 || report.final_reached_unhealthy > 0 {
        problems.push("traffic reached backends outside the final healthy set".to_owned());
    }
    if end.rss_kib > rss_limit {
        problems.push(format!("RSS grew to {} KiB", end.rss_kib));
    }
    if end.fds > fd_limit {
        problems.push(format!("descriptors grew to {}", end.fds));
    }
    drop(harness);
    if problems.is_empty() {
        println!("soak: ok");
    } else {
        eprintln!("soak: FAILED: {}", problems.join("; "));
        std::process::exit(1);
    }
}
