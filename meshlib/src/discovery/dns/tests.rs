//! The schedule, the SRV mapping and the loop, over a scripted resolver in
//! paused time: every wait below is exact.

use std::collections::HashMap;
use std::sync::Mutex;

use tokio::sync::mpsc;

use super::*;
use crate::config::{HealthStatus, Locality};

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s)
}

fn config_with(refresh: f64, failure: Option<(f64, f64)>, respect_ttl: bool) -> DnsDiscovery {
    let mut config = DnsDiscovery::strict(vec![DnsTarget::address("a.test", 80)]);
    config.refresh_rate = secs(refresh);
    config.failure_refresh_rate = failure.map(|(b, m)| FailureRefresh::new(secs(b), secs(m)));
    config.respect_ttl = respect_ttl;
    config
}

#[test]
fn the_schedule_refreshes_at_the_refresh_rate_or_the_ttl() {
    let mut plain = Schedule::new(&config_with(5.0, None, false));
    assert_eq!(plain.succeeded(Some(secs(30.0))), secs(5.0));
    assert_eq!(plain.succeeded(None), secs(5.0));

    let mut ttl = Schedule::new(&config_with(5.0, None, true));
    assert_eq!(ttl.succeeded(Some(secs(2.0))), secs(2.0));
    // Envoy takes the TTL even when it is longer than the refresh rate.
    assert_eq!(ttl.succeeded(Some(secs(30.0))), secs(30.0));
    // A TTL of 0 or an answer without records: the refresh rate.
    assert_eq!(ttl.succeeded(Some(Duration::ZERO)), secs(5.0));
    assert_eq!(ttl.succeeded(None), secs(5.0));
    // Never below the floor.
    assert_eq!(ttl.succeeded(Some(secs(0.2))), MIN_TTL_REFRESH);
}

#[test]
fn the_schedule_backs_off_doubling_to_the_max_and_starts_over() {
    let mut schedule = Schedule::new(&config_with(5.0, Some((1.0, 5.0)), false));
    let ceilings: Vec<Duration> = (0..5).map(|_| schedule.failed(1.0)).collect();
    assert_eq!(
        ceilings,
        [secs(1.0), secs(2.0), secs(4.0), secs(5.0), secs(5.0)]
    );
    assert_eq!(schedule.succeeded(None), secs(5.0));
    // Jitter waits between half the ceiling and the ceiling.
    assert_eq!(schedule.failed(0.5), secs(0.5));
    assert_eq!(schedule.failed(0.0), secs(1.0), "clamped to half of 2 s");
    assert_eq!(schedule.failed(0.75), secs(3.0));

    // Without a failure refresh rate, failures retry at the refresh rate.
    let mut plain = Schedule::new(&config_with(5.0, None, false));
    assert_eq!(plain.failed(0.5), secs(5.0));
    assert_eq!(plain.failed(1.0), secs(5.0));
}

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

fn addresses(ips: &[&str], ttl: Option<u64>) -> Result<Answer<IpAddr>, LookupError> {
    Ok(Answer {
        records: ips.iter().map(|s| ip(s)).collect(),
        ttl: ttl.map(Duration::from_secs),
    })
}

fn service(priority: u16, weight: u16, port: u16, host: &str) -> Service {
    Service {
        priority,
        weight,
        port,
        host: host.to_owned(),
    }
}

fn ep(address: &str, weight: u32, priority: u32) -> Endpoint {
    let mut endpoint = Endpoint::new(address.parse().unwrap());
    endpoint.weight = weight;
    endpoint.priority = priority;
    endpoint
}

#[test]
fn srv_priorities_rank_from_the_lowest_value_and_weight_0_counts_as_1() {
    let target = DnsTarget::srv("_http._tcp.s.test").with_priority(1);
    let answer = Answer {
        records: vec![
            service(20, 5, 8081, "h2.test."),
            service(10, 0, 8080, "h1.test."),
            service(30, 7, 8083, "gone.test."),
            service(10, 3, 8082, "h3.test."),
        ],
        ttl: Some(secs(30.0)),
    };
    let hosts = vec![
        addresses(&["127.0.0.2"], Some(10)),
        addresses(&["127.0.0.1", "::1"], Some(20)),
        Err(LookupError::NoSuchName),
        addresses(&["127.0.0.3"], Some(5)),
    ];
    let found = srv_endpoints(&target, &answer, hosts).unwrap();
    assert_eq!(
        found.endpoints,
        [
            ep("127.0.0.2:8081", 5, 2),
            ep("127.0.0.1:8080", 1, 1),
            ep("[::1]:8080", 1, 1),
            ep("127.0.0.3:8082", 3, 1),
        ]
    );
    assert_eq!(found.ttl, Some(secs(5.0)), "the lowest TTL, hosts included");

    // A host whose lookup failed fails the whole refresh (its endpoints are kept).
    let hosts = vec![
        addresses(&["127.0.0.2"], None),
        Err(LookupError::Failed("request timed out".to_owned())),
        Err(LookupError::NoSuchName),
        addresses(&["127.0.0.3"], None),
    ];
    assert_eq!(
        srv_endpoints(&target, &answer, hosts),
        Err(LookupError::Failed(
            "SRV host \"h1.test.\": request timed out".to_owned()
        ))
    );
}

#[test]
fn an_address_found_twice_is_listed_once_at_its_best_priority() {
    let mut a = TargetState::new(&config_with(5.0, None, false), Instant::now());
    a.endpoints = Some(vec![ep("127.0.0.2:80", 1, 1), ep("127.0.0.1:80", 1, 0)]);
    let mut b = TargetState::new(&config_with(5.0, None, false), Instant::now());
    b.endpoints = Some(vec![ep("127.0.0.2:80", 4, 0)]);
    let never = TargetState::new(&config_with(5.0, None, false), Instant::now());
    assert_eq!(
        merge(&[a, b, never]),
        [ep("127.0.0.1:80", 1, 0), ep("127.0.0.2:80", 4, 0)]
    );
}

/// What a scripted name answers.
#[derive(Clone)]
enum Script {
    Addresses(Result<Answer<IpAddr>, LookupError>),
    Services(Result<Answer<Service>, LookupError>),
}

/// A resolver that answers from a script and records when it was asked.
#[derive(Clone, Default)]
struct Fake(Arc<Mutex<FakeState>>);

#[derive(Default)]
struct FakeState {
    script: HashMap<String, (Script, Duration)>,
    asked: Vec<(String, Instant)>,
}

impl Fake {
    fn answer(&self, name: &str, script: Script) {
        self.answer_after(name, script, Duration::ZERO);
    }

    /// Answers `script` for `name`, `delay` after being asked.
    fn answer_after(&self, name: &str, script: Script, delay: Duration) {
        self.0
            .lock()
            .unwrap()
            .script
            .insert(name.to_owned(), (script, delay));
    }

    /// When `name` was asked, as offsets from `start`.
    fn asked(&self, name: &str, start: Instant) -> Vec<Duration> {
        let state = self.0.lock().unwrap();
        state
            .asked
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, at)| *at - start)
            .collect()
    }

    async fn lookup(&self, name: &str) -> Option<Script> {
        let (script, delay) = {
            let mut state = self.0.lock().unwrap();
            state.asked.push((name.to_owned(), Instant::now()));
            state.script.get(name).cloned()?
        };
        tokio::time::sleep(delay).await;
        Some(script)
    }
}

impl Resolve for Fake {
    async fn addresses(&self, name: &str) -> Result<Answer<IpAddr>, LookupError> {
        match self.lookup(name).await {
            Some(Script::Addresses(answer)) => answer,
            _ => Err(LookupError::NoSuchName),
        }
    }

    async fn services(&self, name: &str) -> Result<Answer<Service>, LookupError> {
        match self.lookup(name).await {
            Some(Script::Services(answer)) => answer,
            _ => Err(LookupError::NoSuchName),
        }
    }
}

#[derive(Debug)]
enum Event {
    Endpoints(Duration, Vec<Endpoint>),
    Failed(Duration, String),
}

/// Forwards into a channel, stamped with the time since `start`; the cluster
/// is gone once the receiver is dropped.
struct Events {
    start: Instant,
    tx: mpsc::UnboundedSender<Event>,
}

impl Publish for Events {
    fn endpoints(&mut self, endpoints: Vec<Endpoint>) -> bool {
        self.tx
            .send(Event::Endpoints(self.start.elapsed(), endpoints))
            .is_ok()
    }

    fn failed(&mut self, error: Error) -> bool {
        assert_eq!(error.kind(), ErrorKind::Discovery);
        self.tx
            .send(Event::Failed(self.start.elapsed(), error.to_string()))
            .is_ok()
    }
}

struct Harness {
    start: Instant,
    rx: mpsc::UnboundedReceiver<Event>,
    task: tokio::task::JoinHandle<()>,
}

impl Harness {
    fn start(config: DnsDiscovery, fake: &Fake) -> Self {
        let fake = fake.clone();
        Self::start_with(config, move || Ok(fake.clone()))
    }

    fn start_with(
        config: DnsDiscovery,
        build: impl FnMut() -> Result<Fake, String> + Send + 'static,
    ) -> Self {
        let start = Instant::now();
        let (tx, rx) = mpsc::unbounded_channel();
        let task = tokio::spawn(drive(
            Arc::from("reviews"),
            config,
            Events { start, tx },
            build,
        ));
        Harness { start, rx, task }
    }

    async fn next(&mut self) -> Event {
        tokio::time::timeout(Duration::from_secs(3600), self.rx.recv())
            .await
            .expect("an event within the hour")
            .expect("the task is running")
    }

    async fn endpoints(&mut self) -> (Duration, Vec<Endpoint>) {
        match self.next().await {
            Event::Endpoints(at, endpoints) => (at, endpoints),
            other => panic!("expected endpoints, got {other:?}"),
        }
    }

    async fn failed(&mut self) -> (Duration, String) {
        match self.next().await {
            Event::Failed(at, message) => (at, message),
            other => panic!("expected a failure, got {other:?}"),
        }
    }
}

#[tokio::test(start_paused = true)]
async fn strict_refreshes_every_refresh_rate_and_publishes_only_changes() {
    let fake = Fake::default();
    fake.answer(
        "a.test",
        Script::Addresses(addresses(&["127.0.0.2", "127.0.0.1"], Some(1))),
    );
    let mut h = Harness::start(config_with(5.0, None, false), &fake);
    let (at, endpoints) = h.endpoints().await;
    assert_eq!(at, Duration::ZERO);
    assert_eq!(
        endpoints,
        [ep("127.0.0.1:80", 1, 0), ep("127.0.0.2:80", 1, 0)],
        "sorted"
    );

    tokio::time::sleep(secs(12.0)).await;
    assert_eq!(
        fake.asked("a.test", h.start),
        [secs(0.0), secs(5.0), secs(10.0)]
    );
    fake.answer(
        "a.test",
        Script::Addresses(addresses(&["127.0.0.3"], Some(1))),
    );
    let (at, endpoints) = h.endpoints().await;
    assert_eq!(at, secs(15.0));
    assert_eq!(endpoints, [ep("127.0.0.3:80", 1, 0)]);
    assert!(
        h.rx.try_recv().is_err(),
        "unchanged answers publish nothing"
    );
}

#[tokio::test(start_paused = true)]
async fn respect_ttl_refreshes_when_the_ttl_runs_out() {
    let fake = Fake::default();
    fake.answer(
        "a.test",
        Script::Addresses(addresses(&["127.0.0.1"], Some(2))),
    );
    let h = Harness::start(config_with(5.0, None, true), &fake);
    tokio::time::sleep(secs(5.0)).await;
    assert_eq!(
        fake.asked("a.test", h.start),
        [secs(0.0), secs(2.0), secs(4.0)]
    );
    // A TTL of 0: back to the refresh rate.
    fake.answer(
        "a.test",
        Script::Addresses(addresses(&["127.0.0.1"], Some(0))),
    );
    tokio::time::sleep(secs(10.0)).await;
    assert_eq!(
        fake.asked("a.test", h.start),
        [secs(0.0), secs(2.0), secs(4.0), secs(6.0), secs(11.0)]
    );
}

#[tokio::test(start_paused = true)]
async fn failures_back_off_keep_the_endpoints_and_start_over_after_a_success() {
    let fake = Fake::default();
    fake.answer("a.test", Script::Addresses(addresses(&["127.0.0.1"], None)));
    let mut h = Harness::start(config_with(5.0, Some((1.0, 4.0)), false), &fake);
    assert_eq!(h.endpoints().await.1, [ep("127.0.0.1:80", 1, 0)]);

    fake.answer(
        "a.test",
        Script::Addresses(Err(LookupError::Failed("request timed out".to_owned()))),
    );
    let mut failures = Vec::new();
    for _ in 0..5 {
        let (at, message) = h.failed().await;
        assert_eq!(
            message,
            "discovery failed: cluster \"reviews\": DNS name \"a.test\" did not resolve: request timed out"
        );
        failures.push(at);
    }
    assert_eq!(failures[0], secs(5.0));
    let waits: Vec<f64> = failures
        .windows(2)
        .map(|w| (w[1] - w[0]).as_secs_f64())
        .collect();
    for (wait, ceiling) in waits.iter().zip([1.0, 2.0, 4.0, 4.0]) {
        assert!(
            (ceiling / 2.0..=ceiling).contains(wait),
            "waits {waits:?}: {wait} should be within [{}, {ceiling}]",
            ceiling / 2.0
        );
    }

    // Back: the same endpoints publish nothing, the next refresh is at the
    // refresh rate, and the next failure starts the backoff over.
    fake.answer("a.test", Script::Addresses(addresses(&["127.0.0.1"], None)));
    tokio::time::sleep(secs(4.0)).await;
    let last_failure = *failures.last().unwrap();
    let success = *fake.asked("a.test", h.start).last().unwrap();
    assert!(success > last_failure && success <= last_failure + secs(4.0));
    fake.answer("a.test", Script::Addresses(Err(LookupError::NoSuchName)));
    let (at, message) = h.failed().await;
    assert_eq!(at, success + secs(5.0));
    assert!(
        message.ends_with("did not resolve: no such name (NXDOMAIN)"),
        "{message}"
    );
    let (again, _) = h.failed().await;
    assert!(
        (secs(0.5)..=secs(1.0)).contains(&(again - at)),
        "{:?}",
        again - at
    );
    assert!(h.rx.try_recv().is_err(), "no empty list while failing");
}

#[tokio::test(start_paused = true)]
async fn without_a_failure_refresh_rate_failures_retry_at_the_refresh_rate() {
    let fake = Fake::default();
    fake.answer(
        "a.test",
        Script::Addresses(Err(LookupError::Failed("refused".to_owned()))),
    );
    let mut h = Harness::start(config_with(5.0, None, false), &fake);
    assert_eq!(h.failed().await.0, secs(0.0));
    assert_eq!(h.failed().await.0, secs(5.0));
    assert_eq!(h.failed().await.0, secs(10.0));
    assert!(
        h.rx.try_recv().is_err(),
        "a target that never resolved publishes nothing"
    );
}

#[tokio::test(start_paused = true)]
async fn a_failing_target_keeps_its_endpoints_while_the_others_update() {
    let fake = Fake::default();
    fake.answer("a.test", Script::Addresses(addresses(&["127.0.0.1"], None)));
    fake.answer("b.test", Script::Addresses(addresses(&["127.0.0.2"], None)));
    let mut config = DnsDiscovery::strict(vec![
        DnsTarget::address("a.test", 80),
        DnsTarget::address("b.test", 81)
            .with_priority(1)
            .with_weight(3),
    ]);
    config.refresh_rate = secs(1.0);
    let mut h = Harness::start(config, &fake);
    assert_eq!(
        h.endpoints().await.1,
        [ep("127.0.0.1:80", 1, 0), ep("127.0.0.2:81", 3, 1)]
    );

    fake.answer("b.test", Script::Addresses(Err(LookupError::NoSuchName)));
    fake.answer("a.test", Script::Addresses(addresses(&["127.0.0.3"], None)));
    let mut saw_failure = false;
    let mut saw_update = false;
    while !(saw_failure && saw_update) {
        match h.next().await {
            Event::Failed(_, message) => {
                assert_eq!(
                    message,
                    "discovery failed: cluster \"reviews\": DNS name \"b.test\" did not resolve: no such name (NXDOMAIN)"
                );
                saw_failure = true;
            }
            Event::Endpoints(_, endpoints) => {
                assert_eq!(
                    endpoints,
                    [ep("127.0.0.2:81", 3, 1), ep("127.0.0.3:80", 1, 0)]
                );
                saw_update = true;
            }
        }
    }
}

#[tokio::test(start_paused = true)]
async fn srv_targets_resolve_their_hosts() {
    let fake = Fake::default();
    fake.answer(
        "_http._tcp.s.test",
        Script::Services(Ok(Answer {
            records: vec![
                service(10, 0, 8080, "h1.test."),
                service(20, 4, 8081, "h2.test."),
            ],
            ttl: Some(secs(30.0)),
        })),
    );
    fake.answer(
        "h1.test.",
        Script::Addresses(addresses(&["127.0.0.1"], Some(3))),
    );
    fake.answer(
        "h2.test.",
        Script::Addresses(addresses(&["127.0.0.2"], Some(30))),
    );
    let mut config = DnsDiscovery::strict(vec![DnsTarget::srv("_http._tcp.s.test")]);
    config.respect_ttl = true;
    let target_locality = Locality {
        zone: "z1".to_owned(),
        ..Locality::default()
    };
    config.targets[0] = config.targets[0]
        .clone()
        .with_locality(target_locality.clone());
    config.targets[0].health = HealthStatus::Unknown;
    let mut h = Harness::start(config, &fake);
    let (_, endpoints) = h.endpoints().await;
    let mut expected = vec![ep("127.0.0.1:8080", 1, 0), ep("127.0.0.2:8081", 4, 1)];
    for e in &mut expected {
        e.locality = target_locality.clone();
        e.health = HealthStatus::Unknown;
    }
    assert_eq!(endpoints, expected);
    tokio::time::sleep(secs(4.0)).await;
    assert_eq!(
        fake.asked("_http._tcp.s.test", h.start),
        [secs(0.0), secs(3.0)],
        "refreshed at the lowest TTL, a host's"
    );
}

#[tokio::test(start_paused = true)]
async fn logical_takes_the_first_address_of_the_answer() {
    let fake = Fake::default();
    fake.answer(
        "a.test",
        Script::Addresses(addresses(&["127.0.0.9", "127.0.0.1", "::1"], None)),
    );
    let mut h = Harness::start(
        DnsDiscovery::logical(DnsTarget::address("a.test", 443)),
        &fake,
    );
    assert_eq!(h.endpoints().await.1, [ep("127.0.0.9:443", 1, 0)]);
}

#[tokio::test(start_paused = true)]
async fn an_empty_answer_is_published_as_no_endpoints() {
    let fake = Fake::default();
    fake.answer("a.test", Script::Addresses(addresses(&["127.0.0.1"], None)));
    let mut h = Harness::start(config_with(1.0, None, false), &fake);
    assert_eq!(h.endpoints().await.1.len(), 1);
    fake.answer("a.test", Script::Addresses(Ok(Answer::empty())));
    assert_eq!(h.endpoints().await, (secs(1.0), Vec::new()));
}

#[tokio::test(start_paused = true)]
async fn the_first_list_waits_until_every_target_was_tried() {
    let fake = Fake::default();
    fake.answer("a.test", Script::Addresses(addresses(&["127.0.0.1"], None)));
    fake.answer_after(
        "b.test",
        Script::Addresses(addresses(&["127.0.0.2"], None)),
        secs(2.5),
    );
    let mut config = DnsDiscovery::strict(vec![
        DnsTarget::address("a.test", 80),
        DnsTarget::address("b.test", 80),
    ]);
    config.refresh_rate = secs(1.0);
    let mut h = Harness::start(config, &fake);
    let (at, endpoints) = h.endpoints().await;
    assert_eq!(at, secs(2.5));
    assert_eq!(endpoints.len(), 2);
    // The slow lookup held up no other target's refreshes.
    assert_eq!(
        fake.asked("a.test", h.start),
        [secs(0.0), secs(1.0), secs(2.0)]
    );
}

#[tokio::test(start_paused = true)]
async fn a_resolver_that_cannot_be_built_is_reported_and_retried() {
    let fake = Fake::default();
    fake.answer("a.test", Script::Addresses(addresses(&["127.0.0.1"], None)));
    let mut builds = 0;
    let mut h = Harness::start_with(config_with(5.0, Some((1.0, 10.0)), false), move || {
        builds += 1;
        if builds == 1 {
            Err("no nameservers in /etc/resolv.conf".to_owned())
        } else {
            Ok(fake.clone())
        }
    });
    let (at, message) = h.failed().await;
    assert_eq!(at, secs(0.0));
    assert_eq!(
        message,
        "discovery failed: cluster \"reviews\": the DNS resolver could not be set up: no nameservers in /etc/resolv.conf"
    );
    let (at, endpoints) = h.endpoints().await;
    assert!((secs(0.5)..=secs(1.0)).contains(&at), "{at:?}");
    assert_eq!(endpoints.len(), 1);
}

#[tokio::test(start_paused = true)]
async fn the_task_ends_when_the_cluster_is_gone() {
    let fake = Fake::default();
    fake.answer("a.test", Script::Addresses(addresses(&["127.0.0.1"], None)));
    let mut h = Harness::start(config_with(1.0, None, false), &fake);
    h.endpoints().await;
    drop(h.rx);
    fake.answer("a.test", Script::Addresses(addresses(&["127.0.0.2"], None)));
    tokio::time::timeout(secs(2.0), &mut h.task)
        .await
        .expect("the task ends at its next publish")
        .unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_refresh_that_takes_longer_than_the_query_timeout_fails() {
    let fake = Fake::default();
    fake.answer_after(
        "a.test",
        Script::Addresses(addresses(&["127.0.0.1"], None)),
        secs(10.0),
    );
    let mut config = config_with(5.0, None, false);
    config.query_timeout = secs(2.0);
    let mut h = Harness::start(config, &fake);
    let (at, message) = h.failed().await;
    assert_eq!(at, secs(2.0));
    assert!(
        message.ends_with("did not resolve: no answer within 2s"),
        "{message}"
    );
    // Retried at the refresh rate, after the failure.
    assert_eq!(h.failed().await.0, secs(9.0));
}
