//! Endpoint churn under load (issue 10, item 4): a client configured over
//! xDS sends 400 requests/s to 20 loopback backends while the control plane
//! pushes 1,000 EDS updates at 100/s, adding, removing, draining and
//! failing endpoints. A removed endpoint's backend stops as its removal is
//! pushed, as a pod that goes away.

use meshlib_benches::churn::{self, Cause, Report, Scenario};

fn check(report: &Report) {
    assert_eq!(
        report.failed_by(Cause::Unexplained),
        0,
        "only requests to removed endpoints may fail:\n{report}"
    );
    assert_ne!(report.last_version_acked, Some(false), "{report}");
    assert!(report.last_update_held, "{report}");
    assert_eq!(report.nacks, 0, "{:?}", report.first_nack);
    assert_eq!(report.final_misrouted, 0, "{report}");
    assert_eq!(report.final_reached_unhealthy, 0, "{report}");
    assert!(
        report.removals > 100,
        "the churn removes endpoints: {report}"
    );
    assert!(report.sent > 1000, "traffic flowed: {report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_endpoint_churn_only_requests_to_removed_endpoints_fail() {
    let report = churn::run(&Scenario::endpoint_churn(false), |_| {})
        .await
        .unwrap();
    println!("without retries:\n{report}");
    check(&report);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_endpoint_churn_with_retries_on_reset_and_connect_failure_no_request_fails() {
    let report = churn::run(&Scenario::endpoint_churn(true), |_| {})
        .await
        .unwrap();
    println!("with retries:\n{report}");
    check(&report);
    assert_eq!(report.failed_total(), 0, "{report}");
    assert_eq!(report.retries_refused, 0, "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_endpoint_churn_over_delta_xds_with_retries_no_request_fails() {
    let scenario = Scenario {
        delta: true,
        ..Scenario::endpoint_churn(true)
    };
    let report = churn::run(&scenario, |_| {}).await.unwrap();
    println!("over delta, with retries:\n{report}");
    check(&report);
    assert_eq!(report.failed_total(), 0, "{report}");
}
