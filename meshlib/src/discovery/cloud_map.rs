//! AWS Cloud Map endpoint discovery, in-process, on the AWS SDK for Rust.
//!
//! [`run`] follows the instances of one Cloud Map service, configured by a
//! [`CloudMapDiscovery`], and publishes the cluster's endpoints whenever they
//! change. It uses Cloud Map's API, not DNS, so it works for HTTP namespaces
//! and reads every attribute of an instance:
//!
//! - **Polling**: every `refresh_rate`, [`DiscoverInstancesRevision`][revision]
//!   asks whether the instances changed; when the revision differs from the
//!   one last seen, or `full_refresh_interval` has passed since the last
//!   [`DiscoverInstances`][discover] (a change of an instance's health does
//!   not move the revision: its API reference says so), `DiscoverInstances`
//!   is called with the namespace, service, `QueryParameters`,
//!   `OptionalParameters`, `HealthStatus` filter and `MaxResults`. The first
//!   refresh is a `DiscoverInstances`. The revision is only compared for
//!   equality, never for order.
//! - **Endpoints**: each instance is one endpoint, as the table of
//!   [`CloudMapDiscovery`] says (`AWS_INSTANCE_IPV4`/`AWS_INSTANCE_IPV6` by
//!   `ip_preference`, `AWS_INSTANCE_PORT` or `port`, weight, priority and
//!   locality attributes, `HealthStatus`). An instance without a usable
//!   address or port, or with a malformed weight or priority, is left out
//!   with a debug log. The list is published sorted by address, an address
//!   registered twice counted once (at its best priority), and only when it
//!   changed: Cloud Map returns the instances in random order. An empty answer
//!   is an answer: the cluster has no endpoints (`healthy_or_else_all` fails
//!   open instead).
//! - **Failures** (an error of either call, a throttled call —
//!   `ThrottlingException`, `RequestLimitExceeded` —, no answer within
//!   `request_timeout`, a client that cannot be set up): the last endpoints
//!   stay in force, the [`Publish`] is told through
//!   [`failed`](Publish::failed) with an [`ErrorKind::Discovery`] error naming
//!   the cluster, the namespace and service, the call and why, and one warning
//!   is logged per failure episode. The next try waits as
//!   `failure_refresh_rate` says (default: a backoff from `refresh_rate` up to
//!   ten times it), each wait drawn between half its ceiling and its ceiling.
//!   The SDK's own retries are off: this schedule is the retry.
//!
//! **The client.** [`run`] builds the AWS SDK client from `aws-config`'s
//! default chain (environment, shared profile, web identity, ECS and EC2
//! metadata), [`run_with_sdk_config`] from an
//! [`aws_sdk_servicediscovery::Config`] the application built; the cluster's
//! `region` and `endpoint_url` override either.
//!
//! **The `data-` host prefix.** Cloud Map's model gives `DiscoverInstances`
//! and `DiscoverInstancesRevision` the endpoint host prefix `data-` (AWS
//! serves them at `data-servicediscovery.<region>.amazonaws.com`), and the
//! SDK adds it to every endpoint, a custom one too: with `endpoint_url:
//! http://127.0.0.1:4566` it connects to `data-127.0.0.1:4566`, a name that
//! does not resolve, so LocalStack, moto and proxies could not be used. The
//! Rust SDK has no setting to turn the prefix off (other SDKs'
//! `disableHostPrefix`). So when a custom endpoint is in effect (the
//! cluster's `endpoint_url`, or with [`run`] the `AWS_ENDPOINT_URL` that
//! `aws-config` read), the client gets an interceptor that, after the SDK
//! applied the endpoint and before the request is signed, puts the
//! endpoint's host back: the request goes, and is signed for, the URL as
//! written. AWS's own endpoints keep the prefix. An endpoint meshlib cannot
//! see (one set inside the `Config` given to [`run_with_sdk_config`], or the
//! service-specific `AWS_ENDPOINT_URL_SERVICEDISCOVERY`) is prefixed as the
//! SDK does: give such an endpoint as the cluster's `endpoint_url`.
//!
//! All waiting is on `tokio::time`, so paused-time tests drive the schedule.
//!
//! [discover]: https://docs.aws.amazon.com/cloud-map/latest/api/API_DiscoverInstances.html
//! [revision]: https://docs.aws.amazon.com/cloud-map/latest/api/API_DiscoverInstancesRevision.html

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_servicediscovery::Client;
use aws_sdk_servicediscovery::config::interceptors::BeforeTransmitInterceptorContextMut;
use aws_sdk_servicediscovery::config::retry::RetryConfig;
use aws_sdk_servicediscovery::config::{
    BehaviorVersion, ConfigBag, Intercept, Region, RuntimeComponents,
};
use aws_sdk_servicediscovery::error::{BoxError, ProvideErrorMetadata, SdkError};
use aws_sdk_servicediscovery::types::{HealthStatus as SdkHealth, HealthStatusFilter};
use rand::RngExt;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use super::Publish;
use crate::config::{
    CloudMapDiscovery, CloudMapHealthFilter, Endpoint, FailureRefresh, HealthStatus, IpPreference,
    Locality,
};
use crate::{Error, ErrorKind};

/// The shortest wait between two refreshes.
const MIN_REFRESH: Duration = Duration::from_millis(1);

/// Follows the Cloud Map service of `config` for cluster `cluster` until
/// `publish` says the cluster is gone, with an AWS SDK client built from
/// `aws-config`'s default chain (its region unless `config.region` is set,
/// and its credentials).
///
/// A client that cannot be set up is one [`Publish::failed`] call and
/// another try later, on the failure schedule. The task learns that the
/// cluster is gone only when it next publishes; dropping or aborting its task
/// ends it at once.
///
/// ```no_run
/// use std::sync::Arc;
/// use meshlib::config::{CloudMapDiscovery, Endpoint};
/// use meshlib::discovery::{Publish, cloud_map};
///
/// struct Print;
/// impl Publish for Print {
///     fn endpoints(&mut self, endpoints: Vec<Endpoint>) -> bool {
///         println!("{} endpoints", endpoints.len());
///         true
///     }
///     fn failed(&mut self, error: meshlib::Error) -> bool {
///         eprintln!("{error}");
///         true
///     }
/// }
///
/// # async fn example() {
/// let config = CloudMapDiscovery::new("prod.internal", "reviews");
/// tokio::spawn(cloud_map::run(Arc::from("reviews"), config, Print));
/// # }
/// ```
pub async fn run(cluster: Arc<str>, config: CloudMapDiscovery, publish: impl Publish) {
    let build = {
        let config = config.clone();
        move || {
            let config = config.clone();
            async move { Ok(Sdk::from_environment(&config).await) }
        }
    };
    drive(cluster, config, publish, build).await;
}

/// [`run`], with an AWS SDK client built from `sdk` (its credentials,
/// region, HTTP client, timeouts) instead of `aws-config`'s default chain;
/// `config.region` and `config.endpoint_url` override `sdk`'s. A custom
/// endpoint must be given as `config.endpoint_url` (the SDK's `Config` does
/// not tell its own), so that the `data-` host prefix is kept off it.
///
/// ```no_run
/// use std::sync::Arc;
/// use aws_sdk_servicediscovery::config::{BehaviorVersion, Credentials, Region};
/// use meshlib::config::CloudMapDiscovery;
/// use meshlib::discovery::{Publish, cloud_map};
/// # struct Print;
/// # impl Publish for Print {
/// #     fn endpoints(&mut self, _: Vec<meshlib::config::Endpoint>) -> bool { true }
/// #     fn failed(&mut self, _: meshlib::Error) -> bool { true }
/// # }
///
/// # async fn example() {
/// let sdk = aws_sdk_servicediscovery::Config::builder()
///     .behavior_version(BehaviorVersion::latest())
///     .region(Region::new("us-east-1"))
///     .credentials_provider(Credentials::new("test", "test", None, None, "static"))
///     .build();
/// let config = CloudMapDiscovery::new("dev.local", "reviews").with_endpoint_url("http://127.0.0.1:4566");
/// tokio::spawn(cloud_map::run_with_sdk_config(Arc::from("reviews"), config, sdk, Print));
/// # }
/// ```
pub async fn run_with_sdk_config(
    cluster: Arc<str>,
    config: CloudMapDiscovery,
    sdk: aws_sdk_servicediscovery::Config,
    publish: impl Publish,
) {
    let build = {
        let config = config.clone();
        move || std::future::ready(Ok(Sdk::from_config(&sdk, &config)))
    };
    drive(cluster, config, publish, build).await;
}

/// The loop of [`run`], over any registry: refreshes, publishes changes,
/// reports failures, waits.
async fn drive<R, B, F>(
    cluster: Arc<str>,
    config: CloudMapDiscovery,
    mut publish: impl Publish,
    mut build: B,
) where
    R: Registry,
    B: FnMut() -> F,
    F: Future<Output = Result<R, String>>,
{
    let limit = config.request_timeout.max(MIN_REFRESH);
    let mut schedule = Schedule::new(&config);
    let mut registry: Option<R> = None;
    let mut revision: Option<i64> = None;
    let mut published: Option<Vec<Endpoint>> = None;
    let mut failing = false;
    loop {
        if registry.is_none() {
            let why = match tokio::time::timeout(limit, build()).await {
                Ok(Ok(built)) => {
                    registry = Some(built);
                    None
                }
                Ok(Err(why)) => Some(format!("the AWS SDK client could not be set up: {why}")),
                Err(_) => Some(format!(
                    "the AWS SDK client was not set up within {limit:?}"
                )),
            };
            if let Some(why) = why {
                fail(&cluster, &config, &mut failing, &published, &why);
                if !publish.failed(error(&cluster, &config, &why)) {
                    return;
                }
                tokio::time::sleep(schedule.failed(jitter())).await;
                continue;
            }
        }
        let Some(client) = &registry else {
            continue;
        };
        let wait = match refresh(client, &config, &mut schedule, &mut revision, limit).await {
            Ok(found) => {
                if failing {
                    info!(cluster = %cluster, namespace = %config.namespace, service = %config.service, "Cloud Map answers again");
                    failing = false;
                }
                if let Some(endpoints) = found
                    && published.as_ref() != Some(&endpoints)
                {
                    if !publish.endpoints(endpoints.clone()) {
                        return;
                    }
                    published = Some(endpoints);
                }
                schedule.succeeded()
            }
            Err(why) => {
                fail(&cluster, &config, &mut failing, &published, &why);
                if !publish.failed(error(&cluster, &config, &why)) {
                    return;
                }
                schedule.failed(jitter())
            }
        };
        tokio::time::sleep(wait).await;
    }
}

/// Logs a failure: a warning for the first of an episode, debug after.
fn fail(
    cluster: &str,
    config: &CloudMapDiscovery,
    failing: &mut bool,
    published: &Option<Vec<Endpoint>>,
    why: &str,
) {
    let kept = published.as_ref().map_or(0, Vec::len);
    if *failing {
        debug!(cluster = %cluster, namespace = %config.namespace, service = %config.service, error = %why, "Cloud Map refresh failed again");
    } else {
        warn!(cluster = %cluster, namespace = %config.namespace, service = %config.service, error = %why, kept, "Cloud Map refresh failed; the cluster keeps its last endpoints");
        *failing = true;
    }
}

fn error(cluster: &str, config: &CloudMapDiscovery, why: &str) -> Error {
    Error::new(
        ErrorKind::Discovery,
        format!(
            "cluster {cluster:?}: Cloud Map service {:?} in namespace {:?}: {why}",
            config.service, config.namespace
        ),
    )
}

fn jitter() -> f64 {
    rand::rng().random_range(0.5..=1.0)
}

/// One refresh: the revision, when a full refresh is not due, and the
/// instances when it changed or is due. `Ok(None)`: nothing changed.
async fn refresh<R: Registry>(
    registry: &R,
    config: &CloudMapDiscovery,
    schedule: &mut Schedule,
    revision: &mut Option<i64>,
    limit: Duration,
) -> Result<Option<Vec<Endpoint>>, String> {
    let started = Instant::now();
    let polled = if schedule.full_due(started) {
        None
    } else {
        let current = bounded("DiscoverInstancesRevision", limit, registry.revision()).await?;
        if *revision == Some(current) {
            return Ok(None);
        }
        Some(current)
    };
    let discovered = bounded("DiscoverInstances", limit, registry.instances()).await?;
    schedule.full_done(started);
    *revision = discovered.revision.or(polled);
    Ok(Some(endpoints(config, &discovered.instances)))
}

async fn bounded<T>(
    call: &str,
    limit: Duration,
    future: impl Future<Output = Result<T, String>>,
) -> Result<T, String> {
    match tokio::time::timeout(limit, future).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(why)) => Err(format!("{call} failed: {why}")),
        Err(_) => Err(format!("{call} failed: no answer within {limit:?}")),
    }
}

/// When the next refresh is, and whether it must be a full one: a pure state
/// machine, so the timing rules are tested without Cloud Map or clocks.
#[derive(Debug, Clone)]
struct Schedule {
    refresh_rate: Duration,
    full_refresh_interval: Duration,
    failure: FailureRefresh,
    /// The ceiling of the next failure's wait.
    backoff: Duration,
    /// When the last `DiscoverInstances` that answered started.
    last_full: Option<Instant>,
}

impl Schedule {
    fn new(config: &CloudMapDiscovery) -> Self {
        let refresh_rate = config.refresh_rate.max(MIN_REFRESH);
        let failure = config
            .failure_refresh_rate
            .unwrap_or_else(|| FailureRefresh::new(refresh_rate, refresh_rate.saturating_mul(10)));
        Schedule {
            refresh_rate,
            full_refresh_interval: config.full_refresh_interval.max(refresh_rate),
            failure,
            backoff: failure.base_interval.max(MIN_REFRESH),
            last_full: None,
        }
    }

    /// Whether the refresh starting at `now` must call `DiscoverInstances`
    /// whatever the revision.
    fn full_due(&self, now: Instant) -> bool {
        self.last_full
            .is_none_or(|last| now.saturating_duration_since(last) >= self.full_refresh_interval)
    }

    /// A `DiscoverInstances` started at `at` answered.
    fn full_done(&mut self, at: Instant) {
        self.last_full = Some(at);
    }

    /// The wait after a refresh that answered; starts the backoff over.
    fn succeeded(&mut self) -> Duration {
        self.backoff = self.failure.base_interval.max(MIN_REFRESH);
        self.refresh_rate
    }

    /// The wait after a failed refresh; `jitter` in `[0.5, 1]` is the share of
    /// the backoff's ceiling waited.
    fn failed(&mut self, jitter: f64) -> Duration {
        let ceiling = self.backoff;
        let max = self.failure.max_interval.max(ceiling);
        self.backoff = ceiling.saturating_mul(2).min(max);
        ceiling.mul_f64(jitter.clamp(0.5, 1.0)).max(MIN_REFRESH)
    }
}

/// The instances one `DiscoverInstances` found, and their revision.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Discovered {
    instances: Vec<Instance>,
    revision: Option<i64>,
}

/// One instance as `DiscoverInstances` describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Instance {
    id: String,
    attributes: HashMap<String, String>,
    health: HealthStatus,
}

/// Well-known attributes of a Cloud Map instance (RegisterInstance's).
const IPV4: &str = "AWS_INSTANCE_IPV4";
const IPV6: &str = "AWS_INSTANCE_IPV6";
const PORT: &str = "AWS_INSTANCE_PORT";

/// The endpoints of `instances`, sorted by address, an address listed once at
/// its best (lowest) priority; instances that cannot be endpoints left out.
fn endpoints(config: &CloudMapDiscovery, instances: &[Instance]) -> Vec<Endpoint> {
    let all: Vec<Endpoint> = instances
        .iter()
        .filter_map(|instance| match endpoint(config, instance) {
            Ok(endpoint) => Some(endpoint),
            Err(why) => {
                debug!(namespace = %config.namespace, service = %config.service, instance = %instance.id, %why, "Cloud Map instance left out");
                None
            }
        })
        .collect();
    super::canonical(all)
}

/// The endpoint of one instance, or why it has none.
fn endpoint(config: &CloudMapDiscovery, instance: &Instance) -> Result<Endpoint, String> {
    let attribute = |name: &Option<String>| {
        name.as_deref()
            .and_then(|name| instance.attributes.get(name))
            .map(String::as_str)
    };
    let ipv4 = instance
        .attributes
        .get(IPV4)
        .map(|text| {
            text.trim()
                .parse::<Ipv4Addr>()
                .map_err(|_| format!("{IPV4} {text:?} is not an IPv4 address"))
        })
        .transpose();
    let ipv6 = instance
        .attributes
        .get(IPV6)
        .map(|text| {
            let trimmed = text.trim().trim_start_matches('[').trim_end_matches(']');
            trimmed
                .parse::<Ipv6Addr>()
                .map_err(|_| format!("{IPV6} {text:?} is not an IPv6 address"))
        })
        .transpose();
    let ip: IpAddr = match config.ip_preference {
        IpPreference::Ipv4Preferred => match (ipv4?, ipv6) {
            (Some(v4), _) => v4.into(),
            (None, v6) => v6?
                .ok_or(format!("it has neither {IPV4} nor {IPV6}"))?
                .into(),
        },
        IpPreference::Ipv6Preferred => match (ipv6?, ipv4) {
            (Some(v6), _) => v6.into(),
            (None, v4) => v4?
                .ok_or(format!("it has neither {IPV6} nor {IPV4}"))?
                .into(),
        },
        IpPreference::Ipv4Only => ipv4?
            .ok_or(format!("it has no {IPV4} (ip_preference: ipv4_only)"))?
            .into(),
        IpPreference::Ipv6Only => ipv6?
            .ok_or(format!("it has no {IPV6} (ip_preference: ipv6_only)"))?
            .into(),
    };
    let port = match instance.attributes.get(PORT) {
        Some(text) => match text.trim().parse::<u16>() {
            Ok(port) if port > 0 => port,
            _ => return Err(format!("{PORT} {text:?} is not a port from 1 to 65535")),
        },
        None => config
            .port
            .filter(|port| *port > 0)
            .ok_or(format!("it has no {PORT} and the cluster sets no `port`"))?,
    };
    let weight = match attribute(&config.weight_attribute) {
        Some(text) => match text.trim().parse::<u32>() {
            Ok(weight) if weight > 0 => weight,
            _ => {
                return Err(format!(
                    "weight attribute {:?} is {text:?}, not an integer from 1",
                    config.weight_attribute.as_deref().unwrap_or_default()
                ));
            }
        },
        None => 1,
    };
    let priority = match attribute(&config.priority_attribute) {
        Some(text) => text.trim().parse::<u32>().map_err(|_| {
            format!(
                "priority attribute {:?} is {text:?}, not an integer from 0",
                config.priority_attribute.as_deref().unwrap_or_default()
            )
        })?,
        None => 0,
    };
    let text = |name: &Option<String>| attribute(name).unwrap_or_default().to_owned();
    Ok(Endpoint {
        address: SocketAddr::new(ip, port),
        weight,
        health: instance.health,
        locality: Locality {
            region: text(&config.region_attribute),
            zone: text(&config.zone_attribute),
            sub_zone: text(&config.sub_zone_attribute),
        },
        priority,
    })
}

/// The two calls discovery makes; [`Sdk`] in service, a scripted fake in the
/// tests.
trait Registry: Send + Sync + 'static {
    /// `DiscoverInstancesRevision`.
    fn revision(&self) -> impl Future<Output = Result<i64, String>> + Send;

    /// `DiscoverInstances`.
    fn instances(&self) -> impl Future<Output = Result<Discovered, String>> + Send;
}

/// The AWS SDK client and the query of one [`CloudMapDiscovery`].
#[derive(Debug, Clone)]
struct Sdk {
    client: Client,
    namespace: String,
    service: String,
    query_parameters: Option<HashMap<String, String>>,
    optional_parameters: Option<HashMap<String, String>>,
    health_status: HealthStatusFilter,
    max_results: Option<i32>,
}

impl Sdk {
    /// A client on `aws-config`'s default chain.
    async fn from_environment(config: &CloudMapDiscovery) -> Self {
        let mut loader = aws_config::defaults(BehaviorVersion::latest());
        if let Some(region) = &config.region {
            loader = loader.region(Region::new(region.clone()));
        }
        let shared = loader.load().await;
        // AWS_ENDPOINT_URL, or a profile's `endpoint_url`.
        let environment = shared.endpoint_url().map(str::to_owned);
        Self::new(
            aws_sdk_servicediscovery::config::Builder::from(&shared),
            config,
            config.endpoint_url.clone().or(environment),
        )
    }

    /// A client on the application's `sdk` configuration.
    fn from_config(sdk: &aws_sdk_servicediscovery::Config, config: &CloudMapDiscovery) -> Self {
        Self::new(sdk.to_builder(), config, config.endpoint_url.clone())
    }

    fn new(
        mut builder: aws_sdk_servicediscovery::config::Builder,
        config: &CloudMapDiscovery,
        endpoint_url: Option<String>,
    ) -> Self {
        if let Some(region) = &config.region {
            builder = builder.region(Region::new(region.clone()));
        }
        if let Some(url) = endpoint_url {
            if let Some(keep) = KeepEndpointHost::for_url(&url) {
                builder = builder.interceptor(keep);
            }
            builder = builder.endpoint_url(url);
        }
        // One attempt per call: the discovery schedule retries, with its backoff.
        builder = builder.retry_config(RetryConfig::disabled());
        let parameters = |map: &std::collections::BTreeMap<String, String>| {
            (!map.is_empty()).then(|| map.clone().into_iter().collect())
        };
        Sdk {
            client: Client::from_conf(builder.build()),
            namespace: config.namespace.clone(),
            service: config.service.clone(),
            query_parameters: parameters(&config.query_parameters),
            optional_parameters: parameters(&config.optional_parameters),
            health_status: match config.health_status {
                CloudMapHealthFilter::Healthy => HealthStatusFilter::Healthy,
                CloudMapHealthFilter::Unhealthy => HealthStatusFilter::Unhealthy,
                CloudMapHealthFilter::All => HealthStatusFilter::All,
                CloudMapHealthFilter::HealthyOrElseAll => HealthStatusFilter::HealthyOrElseAll,
            },
            max_results: config
                .max_results
                .map(|max| i32::try_from(max).unwrap_or(i32::MAX)),
        }
    }
}

impl Registry for Sdk {
    async fn revision(&self) -> Result<i64, String> {
        let output = self
            .client
            .discover_instances_revision()
            .namespace_name(&self.namespace)
            .service_name(&self.service)
            .send()
            .await
            .map_err(describe)?;
        output
            .instances_revision()
            .ok_or_else(|| "the answer has no InstancesRevision".to_owned())
    }

    async fn instances(&self) -> Result<Discovered, String> {
        let output = self
            .client
            .discover_instances()
            .namespace_name(&self.namespace)
            .service_name(&self.service)
            .set_query_parameters(self.query_parameters.clone())
            .set_optional_parameters(self.optional_parameters.clone())
            .health_status(self.health_status.clone())
            .set_max_results(self.max_results)
            .send()
            .await
            .map_err(describe)?;
        let instances = output
            .instances()
            .iter()
            .map(|summary| Instance {
                id: summary.instance_id().unwrap_or_default().to_owned(),
                attributes: summary.attributes().cloned().unwrap_or_default(),
                health: match summary.health_status() {
                    Some(SdkHealth::Healthy) => HealthStatus::Healthy,
                    Some(SdkHealth::Unhealthy) => HealthStatus::Unhealthy,
                    // UNKNOWN, a value this SDK does not know, or none.
                    _ => HealthStatus::Unknown,
                },
            })
            .collect();
        Ok(Discovered {
            instances,
            revision: output.instances_revision(),
        })
    }
}

/// What went wrong with a call, in a line: the service's error code and
/// message when it answered (a throttled call says so), else the SDK's chain
/// of causes (connection refused, a timeout, no region, no credentials).
fn describe<E, R>(error: SdkError<E, R>) -> String
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    match (error.code(), error.message()) {
        (Some(code @ ("ThrottlingException" | "RequestLimitExceeded")), message) => {
            format!("throttled ({code}): {}", message.unwrap_or("no message"))
        }
        (Some(code), Some(message)) => format!("{code}: {message}"),
        (Some(code), None) => code.to_owned(),
        (None, _) => causes(&error),
    }
}

/// `error` and its sources, outermost first, each said once.
fn causes(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let said = cause.to_string();
        if !text.contains(&said) {
            text.push_str(": ");
            text.push_str(&said);
        }
        source = cause.source();
    }
    text
}

/// Puts a custom endpoint's host back where the SDK prefixed it with
/// `data-`, before the request is signed (see the module docs).
#[derive(Debug, Clone)]
struct KeepEndpointHost {
    /// The endpoint's `host[:port]`, as written.
    authority: String,
}

impl KeepEndpointHost {
    /// The interceptor for the endpoint `url`; `None` when it has no host.
    fn for_url(url: &str) -> Option<Self> {
        let uri: http::Uri = url.parse().ok()?;
        Some(KeepEndpointHost {
            authority: uri.authority()?.as_str().to_owned(),
        })
    }

    /// `uri` with its authority put back to the endpoint's, when the SDK
    /// prefixed it; `None` when it is as written (or not the endpoint's).
    fn restore(&self, uri: &str) -> Option<String> {
        let parsed: http::Uri = uri.parse().ok()?;
        let found = parsed.authority()?.as_str();
        let prefix = found.strip_suffix(self.authority.as_str())?;
        // A host label prefix such as `data-`; anything else is left alone.
        if prefix.is_empty()
            || !prefix
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
        {
            return None;
        }
        let scheme = parsed.scheme_str()?;
        let path = parsed.path_and_query().map_or("", |p| p.as_str());
        Some(format!("{scheme}://{}{path}", self.authority))
    }
}

impl Intercept for KeepEndpointHost {
    fn name(&self) -> &'static str {
        "meshlib::discovery::cloud_map::KeepEndpointHost"
    }

    fn modify_before_signing(
        &self,
        context: &mut BeforeTransmitInterceptorContextMut<'_>,
        _runtime_components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let request = context.request_mut();
        if let Some(uri) = self.restore(request.uri()) {
            request.set_uri(uri)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
