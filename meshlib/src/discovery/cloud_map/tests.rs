//! The schedule, the instance mapping, the loop over a scripted registry in
//! paused time (every wait below is exact), and the SDK client's requests,
//! caught before they are sent.

use std::sync::Mutex;

use tokio::sync::mpsc;

use super::*;

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s)
}

fn config() -> CloudMapDiscovery {
    CloudMapDiscovery::new("prod.internal", "reviews")
}

fn instance(id: &str, attributes: &[(&str, &str)], health: HealthStatus) -> Instance {
    Instance {
        id: id.to_owned(),
        attributes: attributes
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
        health,
    }
}

fn registered(ip: &str, port: &str) -> Instance {
    instance(ip, &[(IPV4, ip), (PORT, port)], HealthStatus::Healthy)
}

fn ep(address: &str, weight: u32, priority: u32, health: HealthStatus) -> Endpoint {
    Endpoint {
        address: address.parse().unwrap(),
        weight,
        health,
        locality: Locality::default(),
        priority,
    }
}

#[test]
fn the_schedule_polls_at_the_refresh_rate_and_discovers_when_a_full_refresh_is_due() {
    let mut config = config();
    config.refresh_rate = secs(5.0);
    config.full_refresh_interval = secs(30.0);
    let mut schedule = Schedule::new(&config);
    let start = Instant::now();
    assert!(schedule.full_due(start), "the first refresh is a full one");
    schedule.full_done(start);
    assert!(!schedule.full_due(start + secs(29.9)));
    assert!(schedule.full_due(start + secs(30.0)));
    assert_eq!(schedule.succeeded(), secs(5.0));

    // A full refresh interval below the refresh rate (refused by validation)
    // counts as the refresh rate: every refresh is a full one.
    config.full_refresh_interval = secs(1.0);
    let mut every = Schedule::new(&config);
    every.full_done(start);
    assert!(every.full_due(start + secs(5.0)));
}

#[test]
fn the_schedule_backs_off_doubling_to_the_max_and_starts_over() {
    let mut config = config();
    config.failure_refresh_rate = Some(FailureRefresh::new(secs(1.0), secs(5.0)));
    let mut schedule = Schedule::new(&config);
    let ceilings: Vec<Duration> = (0..5).map(|_| schedule.failed(1.0)).collect();
    assert_eq!(
        ceilings,
        [secs(1.0), secs(2.0), secs(4.0), secs(5.0), secs(5.0)]
    );
    assert_eq!(schedule.succeeded(), secs(5.0));
    assert_eq!(schedule.failed(0.5), secs(0.5));
    assert_eq!(schedule.failed(0.0), secs(1.0), "clamped to half of 2 s");

    // Without a failure refresh rate: from the refresh rate to ten times it.
    let mut plain = Schedule::new(&CloudMapDiscovery {
        refresh_rate: secs(2.0),
        ..self::config()
    });
    let ceilings: Vec<Duration> = (0..6).map(|_| plain.failed(1.0)).collect();
    assert_eq!(
        ceilings,
        [
            secs(2.0),
            secs(4.0),
            secs(8.0),
            secs(16.0),
            secs(20.0),
            secs(20.0)
        ]
    );
}

#[test]
fn instances_map_to_endpoints_with_their_attributes() {
    let mut config = config();
    config.sub_zone_attribute = Some("rack".to_owned());
    let found = endpoints(
        &config,
        &[
            instance(
                "a",
                &[
                    (IPV4, "10.0.0.1"),
                    (PORT, "8080"),
                    ("weight", "3"),
                    ("priority", "1"),
                    ("REGION", "eu-west-1"),
                    ("AVAILABILITY_ZONE", "eu-west-1a"),
                    ("rack", "r7"),
                ],
                HealthStatus::Unhealthy,
            ),
            instance(
                "b",
                &[(IPV4, " 10.0.0.2 "), (PORT, "8080")],
                HealthStatus::Unknown,
            ),
        ],
    );
    assert_eq!(
        found,
        [
            Endpoint {
                address: "10.0.0.1:8080".parse().unwrap(),
                weight: 3,
                health: HealthStatus::Unhealthy,
                locality: Locality {
                    region: "eu-west-1".to_owned(),
                    zone: "eu-west-1a".to_owned(),
                    sub_zone: "r7".to_owned(),
                },
                priority: 1,
            },
            ep("10.0.0.2:8080", 1, 0, HealthStatus::Unknown),
        ]
    );

    // Attributes not read: weight 1, priority 0, no locality.
    config.weight_attribute = None;
    config.priority_attribute = None;
    config.region_attribute = None;
    config.zone_attribute = None;
    config.sub_zone_attribute = None;
    let plain = endpoint(
        &config,
        &instance(
            "a",
            &[
                (IPV4, "10.0.0.1"),
                (PORT, "80"),
                ("weight", "junk"),
                ("priority", "junk"),
                ("REGION", "eu-west-1"),
            ],
            HealthStatus::Healthy,
        ),
    );
    assert_eq!(plain, Ok(ep("10.0.0.1:80", 1, 0, HealthStatus::Healthy)));
}

#[test]
fn the_ip_preference_picks_one_address_per_instance() {
    let dual = instance(
        "d",
        &[(IPV4, "10.0.0.1"), (IPV6, "fd00::1"), (PORT, "80")],
        HealthStatus::Healthy,
    );
    let v4 = instance(
        "4",
        &[(IPV4, "10.0.0.2"), (PORT, "80")],
        HealthStatus::Healthy,
    );
    let v6 = instance(
        "6",
        &[(IPV6, "[fd00::2]"), (PORT, "80")],
        HealthStatus::Healthy,
    );
    let cases = [
        (
            IpPreference::Ipv4Preferred,
            ["10.0.0.1:80", "10.0.0.2:80", "[fd00::2]:80"].as_slice(),
        ),
        (
            IpPreference::Ipv6Preferred,
            &["10.0.0.2:80", "[fd00::1]:80", "[fd00::2]:80"],
        ),
        (IpPreference::Ipv4Only, &["10.0.0.1:80", "10.0.0.2:80"]),
        (IpPreference::Ipv6Only, &["[fd00::1]:80", "[fd00::2]:80"]),
    ];
    for (preference, expected) in cases {
        let mut config = config();
        config.ip_preference = preference;
        let found: Vec<String> = endpoints(&config, &[dual.clone(), v4.clone(), v6.clone()])
            .iter()
            .map(|e| e.address.to_string())
            .collect();
        assert_eq!(found, expected, "{preference:?}");
    }
}

#[test]
fn an_instance_without_a_usable_address_or_port_is_left_out() {
    let mut config = config();
    let why = |config: &CloudMapDiscovery, attributes: &[(&str, &str)]| {
        endpoint(config, &instance("i", attributes, HealthStatus::Healthy)).unwrap_err()
    };
    assert_eq!(
        why(&config, &[(PORT, "80")]),
        "it has neither AWS_INSTANCE_IPV4 nor AWS_INSTANCE_IPV6"
    );
    // A CNAME instance has no address meshlib could connect to.
    assert_eq!(
        why(&config, &[("AWS_INSTANCE_CNAME", "reviews.example.com")]),
        "it has neither AWS_INSTANCE_IPV4 nor AWS_INSTANCE_IPV6"
    );
    assert_eq!(
        why(&config, &[(IPV4, "10.0.0.300"), (PORT, "80")]),
        "AWS_INSTANCE_IPV4 \"10.0.0.300\" is not an IPv4 address"
    );
    // A malformed preferred address is not replaced by the other one.
    assert_eq!(
        why(
            &config,
            &[(IPV4, "fd00::1"), (IPV6, "fd00::1"), (PORT, "80")]
        ),
        "AWS_INSTANCE_IPV4 \"fd00::1\" is not an IPv4 address"
    );
    assert_eq!(
        why(&config, &[(IPV4, "10.0.0.1")]),
        "it has no AWS_INSTANCE_PORT and the cluster sets no `port`"
    );
    assert_eq!(
        why(&config, &[(IPV4, "10.0.0.1"), (PORT, "0")]),
        "AWS_INSTANCE_PORT \"0\" is not a port from 1 to 65535"
    );
    assert_eq!(
        why(
            &config,
            &[(IPV4, "10.0.0.1"), (PORT, "80"), ("weight", "0")]
        ),
        "weight attribute \"weight\" is \"0\", not an integer from 1"
    );
    assert_eq!(
        why(
            &config,
            &[(IPV4, "10.0.0.1"), (PORT, "80"), ("priority", "-1")]
        ),
        "priority attribute \"priority\" is \"-1\", not an integer from 0"
    );
    config.ip_preference = IpPreference::Ipv6Only;
    assert_eq!(
        why(&config, &[(IPV4, "10.0.0.1"), (PORT, "80")]),
        "it has no AWS_INSTANCE_IPV6 (ip_preference: ipv6_only)"
    );

    // The cluster's port stands in for a missing AWS_INSTANCE_PORT.
    config.ip_preference = IpPreference::Ipv4Preferred;
    config.port = Some(9080);
    assert_eq!(
        endpoint(
            &config,
            &instance("i", &[(IPV4, "10.0.0.1")], HealthStatus::Healthy)
        ),
        Ok(ep("10.0.0.1:9080", 1, 0, HealthStatus::Healthy))
    );

    // The others are still endpoints.
    let found = endpoints(
        &config,
        &[
            instance("bad", &[(PORT, "80")], HealthStatus::Healthy),
            registered("10.0.0.2", "80"),
        ],
    );
    assert_eq!(found, [ep("10.0.0.2:80", 1, 0, HealthStatus::Healthy)]);
}

#[test]
fn endpoints_are_sorted_and_an_address_counts_once_at_its_best_priority() {
    let found = endpoints(
        &config(),
        &[
            registered("10.0.0.3", "80"),
            instance(
                "again",
                &[(IPV4, "10.0.0.1"), (PORT, "80"), ("priority", "2")],
                HealthStatus::Healthy,
            ),
            registered("10.0.0.1", "80"),
            registered("10.0.0.2", "80"),
        ],
    );
    assert_eq!(
        found,
        [
            ep("10.0.0.1:80", 1, 0, HealthStatus::Healthy),
            ep("10.0.0.2:80", 1, 0, HealthStatus::Healthy),
            ep("10.0.0.3:80", 1, 0, HealthStatus::Healthy),
        ]
    );
}

#[test]
fn a_custom_endpoint_gets_its_host_back_and_nothing_else_changes() {
    let keep = KeepEndpointHost::for_url("http://127.0.0.1:4566").unwrap();
    assert_eq!(
        keep.restore("http://data-127.0.0.1:4566/"),
        Some("http://127.0.0.1:4566/".to_owned())
    );
    assert_eq!(keep.restore("http://127.0.0.1:4566/"), None, "as written");
    assert_eq!(keep.restore("http://other:4566/"), None);
    assert_eq!(keep.restore("http://data-127.0.0.1:4567/"), None);
    let named = KeepEndpointHost::for_url("https://localstack:4566/base").unwrap();
    assert_eq!(
        named.restore("https://data-localstack:4566/base?x=1"),
        Some("https://localstack:4566/base?x=1".to_owned())
    );
    assert!(KeepEndpointHost::for_url("not a url").is_none());
}

/// A request's URI and `Authorization` header.
type Request = (String, Option<String>);

/// Records each request the SDK is about to send, then stops it: nothing
/// leaves the process.
#[derive(Debug, Clone, Default)]
struct Caught(Arc<Mutex<Vec<Request>>>);

impl Intercept for Caught {
    fn name(&self) -> &'static str {
        "Caught"
    }

    fn read_before_transmit(
        &self,
        context: &aws_sdk_servicediscovery::config::interceptors::BeforeTransmitInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let request = context.request();
        let signed = request.headers().get("authorization").map(str::to_owned);
        self.0
            .lock()
            .unwrap()
            .push((request.uri().to_owned(), signed));
        Err("caught before sending".into())
    }
}

fn sdk_config(caught: &Caught) -> aws_sdk_servicediscovery::Config {
    aws_sdk_servicediscovery::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("eu-west-1"))
        .credentials_provider(aws_sdk_servicediscovery::config::Credentials::new(
            "AKID", "SECRET", None, None, "test",
        ))
        .interceptor(caught.clone())
        .build()
}

#[tokio::test]
async fn the_sdk_calls_a_custom_endpoint_as_written_and_aws_with_its_data_prefix() {
    // With an endpoint_url: both calls go to it as written, signed.
    let caught = Caught::default();
    let sdk = Sdk::from_config(
        &sdk_config(&caught),
        &config().with_endpoint_url("http://127.0.0.1:4566"),
    );
    let error = sdk.revision().await.unwrap_err();
    assert!(error.contains("caught before sending"), "{error}");
    assert!(sdk.instances().await.is_err());
    let requests = caught.0.lock().unwrap().clone();
    assert_eq!(requests.len(), 2, "one attempt each: {requests:?}");
    for (uri, signed) in &requests {
        assert_eq!(uri, "http://127.0.0.1:4566/");
        assert!(
            signed
                .as_deref()
                .is_some_and(|s| s.starts_with("AWS4-HMAC-SHA256"))
        );
    }

    // What the SDK alone does with the same endpoint: `data-127.0.0.1`.
    let caught = Caught::default();
    let plain = Client::from_conf(
        sdk_config(&caught)
            .to_builder()
            .endpoint_url("http://127.0.0.1:4566")
            .build(),
    );
    let _ = plain
        .discover_instances()
        .namespace_name("prod.internal")
        .service_name("reviews")
        .send()
        .await;
    assert_eq!(caught.0.lock().unwrap()[0].0, "http://data-127.0.0.1:4566/");

    // AWS's own endpoint keeps the prefix: that is where AWS serves these calls.
    let caught = Caught::default();
    let aws = Sdk::from_config(&sdk_config(&caught), &config());
    let _ = aws.instances().await;
    assert_eq!(
        caught.0.lock().unwrap()[0].0,
        "https://data-servicediscovery.eu-west-1.amazonaws.com/"
    );
}

/// A scripted Cloud Map: the instances and revision it answers, or a failure,
/// or no answer at all; and the calls it was asked, with when.
#[derive(Clone, Default)]
struct Fake(Arc<Mutex<Script>>);

#[derive(Default)]
struct Script {
    instances: Vec<Instance>,
    revision: i64,
    failure: Option<String>,
    silent: bool,
    calls: Vec<(Instant, &'static str)>,
}

impl Fake {
    fn set(&self, instances: Vec<Instance>, revision: i64) {
        let mut script = self.0.lock().unwrap();
        script.instances = instances;
        script.revision = revision;
    }

    fn fail(&self, failure: Option<&str>) {
        self.0.lock().unwrap().failure = failure.map(str::to_owned);
    }

    fn silent(&self, silent: bool) {
        self.0.lock().unwrap().silent = silent;
    }

    /// The calls made, as (seconds since `start`, which).
    fn calls(&self, start: Instant) -> Vec<(f64, &'static str)> {
        let script = self.0.lock().unwrap();
        script
            .calls
            .iter()
            .map(|(at, call)| ((*at - start).as_secs_f64(), *call))
            .collect()
    }

    async fn answer<T>(
        &self,
        call: &'static str,
        read: impl Fn(&Script) -> T,
    ) -> Result<T, String> {
        let silent = {
            let mut script = self.0.lock().unwrap();
            script.calls.push((Instant::now(), call));
            script.silent
        };
        if silent {
            std::future::pending::<()>().await;
        }
        let script = self.0.lock().unwrap();
        match &script.failure {
            Some(failure) => Err(failure.clone()),
            None => Ok(read(&script)),
        }
    }
}

impl Registry for Fake {
    async fn revision(&self) -> Result<i64, String> {
        self.answer("revision", |s| s.revision).await
    }

    async fn instances(&self) -> Result<Discovered, String> {
        self.answer("instances", |s| Discovered {
            // Cloud Map answers in random order: the reverse, here.
            instances: s.instances.iter().rev().cloned().collect(),
            revision: Some(s.revision),
        })
        .await
    }
}

#[derive(Debug)]
enum Event {
    Endpoints(Duration, Vec<Endpoint>),
    Failed(Duration, String),
}

struct Events {
    start: Instant,
    tx: mpsc::UnboundedSender<Event>,
    /// After this many events, answer that the cluster is gone.
    gone_after: Option<usize>,
    sent: usize,
}

impl Events {
    fn send(&mut self, event: Event) -> bool {
        let delivered = self.tx.send(event).is_ok();
        self.sent += 1;
        delivered && self.gone_after.is_none_or(|limit| self.sent <= limit)
    }
}

impl Publish for Events {
    fn endpoints(&mut self, endpoints: Vec<Endpoint>) -> bool {
        let at = self.start.elapsed();
        self.send(Event::Endpoints(at, endpoints))
    }

    fn failed(&mut self, error: crate::Error) -> bool {
        assert_eq!(error.kind(), ErrorKind::Discovery);
        let at = self.start.elapsed();
        self.send(Event::Failed(at, error.to_string()))
    }
}

struct Harness {
    start: Instant,
    rx: mpsc::UnboundedReceiver<Event>,
    task: tokio::task::JoinHandle<()>,
}

impl Harness {
    fn start(config: CloudMapDiscovery, fake: &Fake) -> Self {
        let fake = fake.clone();
        Self::start_with(config, None, move || std::future::ready(Ok(fake.clone())))
    }

    fn start_with<F>(
        config: CloudMapDiscovery,
        gone_after: Option<usize>,
        build: impl FnMut() -> F + Send + 'static,
    ) -> Self
    where
        F: Future<Output = Result<Fake, String>> + Send + 'static,
    {
        let start = Instant::now();
        let (tx, rx) = mpsc::unbounded_channel();
        let events = Events {
            start,
            tx,
            gone_after,
            sent: 0,
        };
        let task = tokio::spawn(drive(Arc::from("reviews"), config, events, build));
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

fn polling(refresh: f64, full: f64) -> CloudMapDiscovery {
    let mut config = config();
    config.refresh_rate = secs(refresh);
    config.full_refresh_interval = secs(full);
    config
}

#[tokio::test(start_paused = true)]
async fn the_first_refresh_discovers_then_the_revision_is_polled_until_a_full_refresh() {
    let fake = Fake::default();
    fake.set(
        vec![registered("10.0.0.2", "80"), registered("10.0.0.1", "80")],
        2,
    );
    let mut h = Harness::start(polling(5.0, 30.0), &fake);
    let (at0, endpoints) = h.endpoints().await;
    assert_eq!(at0, Duration::ZERO);
    assert_eq!(
        endpoints,
        [
            ep("10.0.0.1:80", 1, 0, HealthStatus::Healthy),
            ep("10.0.0.2:80", 1, 0, HealthStatus::Healthy)
        ]
    );
    tokio::time::sleep(secs(36.0)).await;
    assert_eq!(
        fake.calls(h.start),
        [
            (0.0, "instances"),
            (5.0, "revision"),
            (10.0, "revision"),
            (15.0, "revision"),
            (20.0, "revision"),
            (25.0, "revision"),
            (30.0, "instances"),
            (35.0, "revision"),
        ]
    );
    assert!(
        h.rx.try_recv().is_err(),
        "nothing changed: nothing published"
    );
}

#[tokio::test(start_paused = true)]
async fn a_new_revision_brings_the_instances_at_the_next_poll() {
    let fake = Fake::default();
    fake.set(vec![registered("10.0.0.1", "80")], 1);
    let mut h = Harness::start(polling(5.0, 30.0), &fake);
    h.endpoints().await;
    tokio::time::sleep(secs(7.0)).await;
    fake.set(
        vec![registered("10.0.0.1", "80"), registered("10.0.0.3", "81")],
        2,
    );
    let (at, endpoints) = h.endpoints().await;
    assert_eq!(at, secs(10.0));
    assert_eq!(endpoints.len(), 2);
    // The revision may also go down (moto's does): only equality counts.
    fake.set(vec![registered("10.0.0.3", "81")], 1);
    let (at, endpoints) = h.endpoints().await;
    assert_eq!(at, secs(15.0));
    assert_eq!(endpoints, [ep("10.0.0.3:81", 1, 0, HealthStatus::Healthy)]);
}

#[tokio::test(start_paused = true)]
async fn a_health_change_under_the_same_revision_is_seen_at_the_full_refresh() {
    let fake = Fake::default();
    fake.set(vec![registered("10.0.0.1", "80")], 1);
    let mut h = Harness::start(polling(5.0, 30.0), &fake);
    h.endpoints().await;
    let mut unhealthy = registered("10.0.0.1", "80");
    unhealthy.health = HealthStatus::Unhealthy;
    fake.set(vec![unhealthy], 1);
    let (at, endpoints) = h.endpoints().await;
    assert_eq!(at, secs(30.0));
    assert_eq!(
        endpoints,
        [ep("10.0.0.1:80", 1, 0, HealthStatus::Unhealthy)]
    );
}

#[tokio::test(start_paused = true)]
async fn an_empty_service_is_an_answer() {
    let fake = Fake::default();
    let mut h = Harness::start(polling(5.0, 30.0), &fake);
    assert_eq!(h.endpoints().await, (Duration::ZERO, Vec::new()));
}

#[tokio::test(start_paused = true)]
async fn failures_keep_the_endpoints_are_reported_and_back_off() {
    let fake = Fake::default();
    fake.set(vec![registered("10.0.0.1", "80")], 1);
    let mut config = polling(5.0, 30.0);
    config.failure_refresh_rate = Some(FailureRefresh::new(secs(1.0), secs(4.0)));
    let mut h = Harness::start(config, &fake);
    h.endpoints().await;

    fake.fail(Some("throttled (ThrottlingException): Rate exceeded"));
    let (first, message) = h.failed().await;
    assert_eq!(first, secs(5.0));
    assert_eq!(
        message,
        "discovery failed: cluster \"reviews\": Cloud Map service \"reviews\" in namespace \
         \"prod.internal\": DiscoverInstancesRevision failed: throttled (ThrottlingException): Rate exceeded"
    );
    let mut last = first;
    for ceiling in [1.0, 2.0, 4.0, 4.0] {
        let (at, _) = h.failed().await;
        let waited = at - last;
        assert!(
            (secs(ceiling / 2.0)..=secs(ceiling)).contains(&waited),
            "{waited:?} for a ceiling of {ceiling}s"
        );
        last = at;
    }

    // Back, with the same instances: nothing to publish, the refresh rate
    // again, and the next failure starts the backoff over.
    fake.fail(None);
    tokio::time::sleep(secs(4.5)).await;
    let back = fake.calls(h.start).last().copied().unwrap();
    assert_eq!(back.1, "revision");
    assert!(
        h.rx.try_recv().is_err(),
        "the kept endpoints are not re-sent"
    );
    fake.fail(Some("ServiceNotFound: no such service"));
    let (at, message) = h.failed().await;
    assert_eq!(at, secs(back.0 + 5.0));
    assert!(
        message.ends_with("DiscoverInstancesRevision failed: ServiceNotFound: no such service"),
        "{message}"
    );
    let (again, _) = h.failed().await;
    assert!(
        (secs(0.5)..=secs(1.0)).contains(&(again - at)),
        "{:?}",
        again - at
    );
}

#[tokio::test(start_paused = true)]
async fn a_call_with_no_answer_fails_after_the_request_timeout() {
    let fake = Fake::default();
    fake.silent(true);
    let mut config = polling(5.0, 30.0);
    config.request_timeout = secs(2.0);
    let mut h = Harness::start(config, &fake);
    let (at, message) = h.failed().await;
    assert_eq!(at, secs(2.0));
    assert!(
        message.ends_with("DiscoverInstances failed: no answer within 2s"),
        "{message}"
    );

    // It answers again: the first answer is a full one, and is published.
    fake.silent(false);
    fake.set(vec![registered("10.0.0.1", "80")], 1);
    let (_, endpoints) = h.endpoints().await;
    assert_eq!(endpoints.len(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_client_that_cannot_be_set_up_is_reported_and_tried_again() {
    let fake = Fake::default();
    fake.set(vec![registered("10.0.0.1", "80")], 1);
    let mut tries = 0;
    let built = fake.clone();
    let mut h = Harness::start_with(polling(5.0, 30.0), None, move || {
        tries += 1;
        std::future::ready(if tries == 1 {
            Err("no credentials".to_owned())
        } else {
            Ok(built.clone())
        })
    });
    let (at, message) = h.failed().await;
    assert_eq!(at, Duration::ZERO);
    assert!(
        message.ends_with("the AWS SDK client could not be set up: no credentials"),
        "{message}"
    );
    let (at, endpoints) = h.endpoints().await;
    assert!((secs(2.5)..=secs(5.0)).contains(&at), "{at:?}");
    assert_eq!(endpoints.len(), 1);
}

#[tokio::test(start_paused = true)]
async fn the_task_ends_when_the_cluster_is_gone() {
    let fake = Fake::default();
    fake.set(vec![registered("10.0.0.1", "80")], 1);
    let built = fake.clone();
    let mut h = Harness::start_with(polling(5.0, 30.0), Some(1), move || {
        std::future::ready(Ok(built.clone()))
    });
    h.endpoints().await;
    fake.set(vec![registered("10.0.0.2", "80")], 2);
    // The next publication is refused: the task returns.
    tokio::time::timeout(secs(60.0), &mut h.task)
        .await
        .expect("the task ends")
        .unwrap();
}
