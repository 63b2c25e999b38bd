//! What the xDS client's integration tests share.
#![allow(dead_code, unreachable_pub)]

use std::time::Duration;

/// Waits, at most 10 s, for `done`, looking every 5 ms.
pub async fn eventually(what: &str, done: impl Fn() -> bool) {
    let wait = async {
        while !done() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(10), wait)
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"));
}
