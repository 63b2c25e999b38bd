//! Hot reload: new configurations apply to new requests, requests in flight
//! finish on the old one, and bad configurations are refused whole.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use meshlib::MeshClient;
use meshlib::config::MeshConfig;
use support::{Backend, send, tally};

fn split(v1: &Backend, v2: &Backend, v1_weight: u32, v2_weight: u32) -> String {
    format!(
        r#"
virtual_hosts:
  - name: reviews
    domains: ["reviews"]
    routes:
      - name: split
        match: {{ prefix: / }}
        route:
          weighted_clusters:
            clusters: [{{ name: reviews-v1, weight: {v1_weight} }}, {{ name: reviews-v2, weight: {v2_weight} }}]
clusters:
  - name: reviews-v1
    endpoints: [{{ address: "{}" }}]
  - name: reviews-v2
    endpoints: [{{ address: "{}" }}]
"#,
        v1.address, v2.address
    )
}

fn only_v2(v2: &Backend) -> MeshConfig {
    MeshConfig::from_yaml(&format!(
        r#"
virtual_hosts: [{{ name: reviews, domains: [reviews], routes: [{{ name: all, match: {{ prefix: / }}, route: {{ cluster: reviews-v2 }} }}] }}]
clusters: [{{ name: reviews-v2, endpoints: [{{ address: "{}" }}] }}]
"#,
        v2.address
    ))
    .unwrap()
}

/// Waits, up to 10 s, until `done` holds; panics naming `what` otherwise.
async fn until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting until {what}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reloading_under_concurrent_load_loses_no_request() {
    let (v1, v2) = (Backend::start("v1").await, Backend::start("v2").await);
    let mesh = MeshClient::new(MeshConfig::from_yaml(&split(&v1, &v2, 100, 0)).unwrap()).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let workers: Vec<_> = (0..8)
        .map(|_| {
            let (mesh, stop, ok, failed) = (mesh.clone(), stop.clone(), ok.clone(), failed.clone());
            tokio::spawn(async move {
                // Bounded: stops when told, or after 5,000 requests.
                for _ in 0..5_000 {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    match send(&mesh, "http://reviews/", &[]).await {
                        Ok(_) => ok.fetch_add(1, Ordering::SeqCst),
                        Err(e) => {
                            eprintln!("request failed: {e}");
                            failed.fetch_add(1, Ordering::SeqCst)
                        }
                    };
                }
            })
        })
        .collect();

    for round in 0..20u32 {
        let (w1, w2) = if round % 2 == 0 { (0, 100) } else { (100, 0) };
        let config = if round % 5 == 4 {
            // Every fifth update also drops cluster v1 altogether.
            only_v2(&v2)
        } else {
            MeshConfig::from_yaml(&split(&v1, &v2, w1, w2)).unwrap()
        };
        mesh.update(config).unwrap();
        let before = ok.load(Ordering::SeqCst);
        until("traffic flows on the new configuration", || {
            ok.load(Ordering::SeqCst) >= before + 20
        })
        .await;
    }
    stop.store(true, Ordering::SeqCst);
    for worker in workers {
        worker.await.unwrap();
    }
    assert_eq!(failed.load(Ordering::SeqCst), 0);
    assert!(v1.requests() > 0 && v2.requests() > 0);
    assert_eq!(mesh.version(), 21);
}

#[tokio::test]
async fn a_request_in_flight_finishes_on_the_configuration_it_started_with() {
    let (v1, v2) = (Backend::start("v1").await, Backend::start("v2").await);
    let mesh = MeshClient::new(MeshConfig::from_yaml(&split(&v1, &v2, 100, 0)).unwrap()).unwrap();
    let slow = {
        let mesh = mesh.clone();
        tokio::spawn(async move { send(&mesh, "http://reviews/", &[("x-delay-ms", "300")]).await })
    };
    until("the slow request reaches v1", || v1.requests() == 1).await;
    // The new configuration no longer has cluster v1 at all.
    mesh.update(only_v2(&v2)).unwrap();
    assert_eq!(send(&mesh, "http://reviews/", &[]).await.unwrap(), "v2");
    assert_eq!(slow.await.unwrap().unwrap(), "v1");
}

#[tokio::test]
async fn a_bad_configuration_is_refused_with_a_named_error_and_the_old_one_keeps_serving() {
    let (v1, v2) = (Backend::start("v1").await, Backend::start("v2").await);
    let mesh = MeshClient::new(MeshConfig::from_yaml(&split(&v1, &v2, 100, 0)).unwrap()).unwrap();
    let mut bad = MeshConfig::from_yaml(&split(&v1, &v2, 100, 0)).unwrap();
    bad.clusters.retain(|c| c.name != "reviews-v1");
    let error = mesh.update(bad).unwrap_err();
    assert_eq!(
        error.to_string(),
        "virtual_host \"reviews\": route \"split\": weighted_clusters: no cluster named \"reviews-v1\""
    );
    assert_eq!(mesh.version(), 1);
    assert_eq!(mesh.last_refused().as_deref(), Some(&error));
    let counts = tally(&mesh, "http://reviews/", &[], 20).await;
    assert_eq!(counts.get("v1"), Some(&20));
}

#[tokio::test]
async fn an_endpoint_change_keeps_the_clusters_connections() {
    let (v1, v2, v1b) = (
        Backend::start("v1").await,
        Backend::start("v2").await,
        Backend::start("v1b").await,
    );
    let mesh = MeshClient::new(MeshConfig::from_yaml(&split(&v1, &v2, 100, 0)).unwrap()).unwrap();
    send(&mesh, "http://reviews/", &[]).await.unwrap();
    let mut config = MeshConfig::from_yaml(&split(&v1, &v2, 100, 0)).unwrap();
    config.clusters[0]
        .endpoints
        .push(meshlib::config::Endpoint::new(v1b.address));
    mesh.update(config).unwrap();
    let mut seen = Vec::new();
    for _ in 0..4 {
        // One at a time, so HTTP/1.1 needs no second connection.
        seen.push(send(&mesh, "http://reviews/", &[]).await.unwrap());
    }
    seen.sort();
    assert_eq!(seen, ["v1", "v1", "v1b", "v1b"]);
    assert_eq!(
        v1.connections(),
        1,
        "v1's pooled connection survived the update"
    );
}

#[tokio::test]
async fn a_watched_file_applies_good_versions_and_refuses_bad_ones() {
    // Each version is written beside the file and renamed over it, as
    // Kubernetes swaps a ConfigMap: the test never depends on a read racing
    // a write (the watch's two-reads rule guards in-place writes too).
    let (v1, v2) = (Backend::start("v1").await, Backend::start("v2").await);
    let dir = std::env::temp_dir().join(format!("meshlib-watch-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("mesh.yaml");
    let write = |text: String| {
        let staged = dir.join("mesh.yaml.new");
        std::fs::write(&staged, text).unwrap();
        std::fs::rename(&staged, &path).unwrap();
    };
    write(split(&v1, &v2, 100, 0));

    let mesh = MeshClient::builder()
        .file(&path)
        .watch(Duration::from_millis(20))
        .build()
        .unwrap();
    assert_eq!(send(&mesh, "http://reviews/", &[]).await.unwrap(), "v1");

    write(split(&v1, &v2, 0, 100));
    until("the new file is applied", || mesh.version() == 2).await;
    assert_eq!(send(&mesh, "http://reviews/", &[]).await.unwrap(), "v2");

    write(split(&v1, &v2, 0, 100).replace("weight: 100", "weight: 0"));
    until("the broken file is refused", || {
        mesh.last_refused().is_some()
    })
    .await;
    let refused = mesh.last_refused().unwrap().to_string();
    assert!(
        refused.starts_with(&format!("file {:?}: ", path.display().to_string()))
            && refused.ends_with("route \"split\": weighted_clusters: weights sum to 0"),
        "{refused}"
    );
    assert_eq!(mesh.version(), 2);
    assert_eq!(send(&mesh, "http://reviews/", &[]).await.unwrap(), "v2");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn a_zero_watch_interval_is_refused_at_build_and_an_emptied_file_is_not_applied() {
    let v1 = Backend::start("v1").await;
    let dir = std::env::temp_dir().join(format!("meshlib-watch-empty-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("mesh.yaml");
    std::fs::write(&path, split(&v1, &v1, 100, 0)).unwrap();

    // A zero period once passed build() and panicked in the watch task.
    let error = MeshClient::builder()
        .file(&path)
        .watch(Duration::ZERO)
        .build()
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("watch: the interval must be more than zero"),
        "{error}"
    );

    let mesh = MeshClient::builder()
        .file(&path)
        .watch(Duration::from_millis(10))
        .build()
        .unwrap();
    // Emptied in place, as an editor or a copy leaves it for a moment.
    std::fs::write(&path, "  \n").unwrap();
    until("the emptied file is refused", || {
        mesh.last_refused().is_some()
    })
    .await;
    let refused = mesh.last_refused().unwrap().to_string();
    assert!(refused.contains("the file is empty"), "{refused}");
    assert_eq!(mesh.version(), 1);
    assert_eq!(send(&mesh, "http://reviews/", &[]).await.unwrap(), "v1");
    std::fs::remove_dir_all(&dir).unwrap();
}
