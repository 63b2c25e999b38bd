//! DNS endpoint discovery: Envoy's `STRICT_DNS` and `LOGICAL_DNS` clusters.
//!
//! [`run`] resolves the targets of a [`DnsDiscovery`] again and again and
//! publishes the cluster's endpoints whenever they change. The semantics are
//! Envoy's: the "Strict DNS" and "Logical DNS" sections of its
//! [service discovery overview][envoy-sd], and the `Cluster` fields
//! `dns_refresh_rate`, `dns_failure_refresh_rate`, `respect_dns_ttl` and
//! `dns_lookup_family` of [`cluster.proto`][envoy-cluster].
//!
//! - **Strict**: every address of every target is an endpoint, carrying the
//!   target's weight, priority, locality and health. The list is published
//!   sorted, an address found twice counted once (at the better priority), and
//!   only when it changed; the first list once every target has been tried.
//! - **SRV targets**: each SRV record's host is resolved to its addresses, at
//!   the record's port. The record's weight is the endpoints' weight (0 counts
//!   as 1: a weight-0 record is still usable, RFC 2782), and its priority's
//!   rank among the answer's priority values (lowest value first) is added to
//!   the target's priority. A host that does not exist adds no endpoint; a host
//!   whose lookup fails fails the target's refresh.
//! - **Logical**: one address target, and only the first address of its
//!   answer, in the order the server gave, is the cluster's one endpoint.
//! - **Refresh**: each target on its own timer, every `refresh_rate`, or with
//!   `respect_ttl` when its answer's lowest record TTL (CNAMEs and SRV hosts
//!   included) runs out (an answer with no records or a TTL of 0 falls back to
//!   `refresh_rate`, as in Envoy). Each refresh asks the name server: the
//!   resolver keeps no cache of its own.
//! - **Failures** (NXDOMAIN, no answer within `query_timeout`, server
//!   failures): the target keeps its
//!   last good endpoints while the other targets go on updating, the
//!   [`Publish`] is told through [`failed`](Publish::failed) with an
//!   [`ErrorKind::Discovery`] error naming the cluster, the name and why, and
//!   one warning is logged per failure episode. The target is retried with
//!   `failure_refresh_rate`'s backoff: the wait's ceiling starts at
//!   `base_interval` and doubles up to `max_interval`, each wait drawn between
//!   half the ceiling and the ceiling (Envoy draws between 0 and the ceiling;
//!   the half floor keeps a failing server from being asked again at once).
//!   Without `failure_refresh_rate`, at `refresh_rate`.
//! - **Empty answers** (NOERROR with no records) are answers: the target has no
//!   endpoints, as in Envoy.
//!
//! Names follow [Kubernetes' DNS schema][k8s-dns]: a ClusterIP Service
//! `svc.ns.svc.cluster.local` has one A/AAAA record (its cluster IP), a
//! headless Service has one per ready pod and SRV records
//! `_port._proto.svc.ns.svc.cluster.local` pointing at per-pod names, and an
//! ExternalName Service is a CNAME, which the resolver follows. With no
//! `resolvers`, the system's `/etc/resolv.conf` applies, with a pod's search
//! domains and `ndots:5`.
//!
//! All waiting is on `tokio::time`, so paused-time tests drive the schedule.
//!
//! [envoy-sd]: https://www.envoyproxy.io/docs/envoy/latest/intro/arch_overview/upstream/service_discovery
//! [envoy-cluster]: https://www.envoyproxy.io/docs/envoy/latest/api-v3/config/cluster/v3/cluster.proto
//! [k8s-dns]: https://github.com/kubernetes/dns/blob/master/docs/specification.md

use std::fmt;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use futures_util::future::join_all;
use futures_util::stream::FuturesUnordered;
use hickory_resolver::TokioResolver;
use hickory_resolver::config::{LookupIpStrategy, NameServerConfig, ResolveHosts, ResolverConfig};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::net::{DnsError, NetError};
use hickory_resolver::proto::op::ResponseCode;
use hickory_resolver::proto::rr::{RData, Record};
use rand::RngExt;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use super::Publish;
use crate::config::{
    DnsDiscovery, DnsMode, DnsTarget, DnsTargetKind, Endpoint, FailureRefresh, LookupFamily,
};
use crate::{Error, ErrorKind};

/// The shortest wait a TTL can ask for: DNS TTLs are whole seconds, so this
/// only matters if a resolver ever reports less.
const MIN_TTL_REFRESH: Duration = Duration::from_secs(1);

/// The shortest wait between two lookups of a target, Envoy's lower bound for
/// `dns_refresh_rate`.
const MIN_REFRESH: Duration = Duration::from_millis(1);

/// Resolves `config`'s targets for cluster `cluster` until `publish` says the
/// cluster is gone.
///
/// The resolver asks `config.resolvers`, or the servers of the system's
/// configuration. When it cannot be built (say, an unreadable
/// `/etc/resolv.conf`), that is one [`Publish::failed`] call and another try
/// later, on the failure schedule. A configuration with no target (one that
/// [`DnsDiscovery::validate`] refuses) publishes an empty list and returns.
///
/// The task learns that the cluster is gone only when it next publishes;
/// dropping or aborting its task ends it at once.
///
/// ```no_run
/// use std::sync::Arc;
/// use meshlib::config::{DnsDiscovery, DnsTarget, Endpoint};
/// use meshlib::discovery::{Publish, dns};
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
/// let config = DnsDiscovery::strict(vec![DnsTarget::address("reviews.default.svc.cluster.local", 9080)]);
/// tokio::spawn(dns::run(Arc::from("reviews"), config, Print));
/// # }
/// ```
pub async fn run(cluster: Arc<str>, config: DnsDiscovery, publish: impl Publish) {
    let build = {
        let config = config.clone();
        move || Hickory::build(&config)
    };
    drive(cluster, config, publish, build).await;
}

/// The loop of [`run`], over any resolver: starts the lookups that are due,
/// waits for one to finish or for the next to fall due, publishes changes.
async fn drive<R, B>(
    cluster: Arc<str>,
    config: DnsDiscovery,
    mut publish: impl Publish,
    mut build: B,
) where
    R: Resolve,
    B: FnMut() -> Result<R, String>,
{
    if config.targets.is_empty() {
        publish.endpoints(Vec::new());
        return;
    }
    let start = Instant::now();
    let mut targets: Vec<TargetState> = config
        .targets
        .iter()
        .map(|_| TargetState::new(&config, start))
        .collect();
    let mut resolver: Option<R> = None;
    let mut setup = Schedule::new(&config);
    let mut setup_failing = false;
    let mut lookups = FuturesUnordered::new();
    let mut published: Option<Vec<Endpoint>> = None;
    loop {
        if resolver.is_none() {
            match build() {
                Ok(built) => {
                    if setup_failing {
                        info!(cluster = %cluster, "the DNS resolver is set up");
                    }
                    resolver = Some(built);
                }
                Err(why) => {
                    if !setup_failing {
                        warn!(cluster = %cluster, error = %why, "the DNS resolver could not be set up");
                        setup_failing = true;
                    }
                    let error = Error::new(
                        ErrorKind::Discovery,
                        format!("cluster {cluster:?}: the DNS resolver could not be set up: {why}"),
                    );
                    if !publish.failed(error) {
                        return;
                    }
                    tokio::time::sleep(setup.failed(jitter())).await;
                    continue;
                }
            }
        }
        let Some(resolver) = &resolver else {
            continue;
        };

        let now = Instant::now();
        for (i, state) in targets.iter_mut().enumerate() {
            if !state.in_flight && state.due <= now {
                state.in_flight = true;
                let resolver = resolver.clone();
                let target = config.targets[i].clone();
                let (mode, limit) = (config.mode, config.query_timeout.max(MIN_REFRESH));
                lookups.push(async move {
                    let lookup = resolve_target(&resolver, &target, mode);
                    let result = tokio::time::timeout(limit, lookup)
                        .await
                        .unwrap_or_else(|_| {
                            Err(LookupError::Failed(format!("no answer within {limit:?}")))
                        });
                    (i, result)
                });
            }
        }
        let next_due = targets.iter().filter(|t| !t.in_flight).map(|t| t.due).min();
        let (i, result) = tokio::select! {
            Some(done) = lookups.next(), if !lookups.is_empty() => done,
            () = sleep_until(next_due) => continue,
        };

        let (Some(state), Some(target)) = (targets.get_mut(i), config.targets.get(i)) else {
            continue;
        };
        state.in_flight = false;
        state.tried = true;
        let now = Instant::now();
        match result {
            Ok(found) => {
                if found.endpoints.is_empty() {
                    debug!(cluster = %cluster, target = %target.name, "the DNS answer has no records: the target has no endpoints");
                }
                if state.failing {
                    info!(cluster = %cluster, target = %target.name, "the DNS target resolves again");
                    state.failing = false;
                }
                state.due = now + state.schedule.succeeded(found.ttl);
                state.endpoints = Some(found.endpoints);
            }
            Err(why) => {
                state.due = now + state.schedule.failed(jitter());
                let kept = state.endpoints.as_ref().map_or(0, Vec::len);
                if state.failing {
                    debug!(cluster = %cluster, target = %target.name, error = %why, "DNS refresh failed again");
                } else {
                    warn!(cluster = %cluster, target = %target.name, error = %why, kept, "DNS refresh failed; the target keeps its last endpoints");
                    state.failing = true;
                }
                let what = match target.kind {
                    DnsTargetKind::Address => "DNS name",
                    DnsTargetKind::Srv => "SRV name",
                };
                let error = Error::new(
                    ErrorKind::Discovery,
                    format!(
                        "cluster {cluster:?}: {what} {:?} did not resolve: {why}",
                        target.name
                    ),
                );
                if !publish.failed(error) {
                    return;
                }
            }
        }

        // The first list waits until every target was tried once, so that a
        // cluster does not start on some of its targets only; a target that has
        // never resolved adds nothing.
        if targets.iter().all(|t| t.tried) && targets.iter().any(|t| t.endpoints.is_some()) {
            let endpoints = merge(&targets);
            if published.as_ref() != Some(&endpoints) {
                if !publish.endpoints(endpoints.clone()) {
                    return;
                }
                published = Some(endpoints);
            }
        }
    }
}

async fn sleep_until(due: Option<Instant>) {
    match due {
        Some(due) => tokio::time::sleep_until(due).await,
        None => std::future::pending().await,
    }
}

fn jitter() -> f64 {
    rand::rng().random_range(0.5..=1.0)
}

/// What the loop knows of one target.
struct TargetState {
    schedule: Schedule,
    /// When it is looked up next.
    due: Instant,
    in_flight: bool,
    /// Whether it was looked up at least once, successfully or not.
    tried: bool,
    /// Whether its last lookup failed (a warning was logged for the episode).
    failing: bool,
    /// Its last good endpoints; `None` until it first resolved.
    endpoints: Option<Vec<Endpoint>>,
}

impl TargetState {
    fn new(config: &DnsDiscovery, due: Instant) -> Self {
        TargetState {
            schedule: Schedule::new(config),
            due,
            in_flight: false,
            tried: false,
            failing: false,
            endpoints: None,
        }
    }
}

/// Every target's last good endpoints, sorted by address, an address listed
/// once at its best (lowest) priority.
fn merge(targets: &[TargetState]) -> Vec<Endpoint> {
    let all: Vec<Endpoint> = targets
        .iter()
        .filter_map(|t| t.endpoints.as_deref())
        .flatten()
        .cloned()
        .collect();
    super::canonical(all)
}

/// When one target is looked up next, given how its last lookup went: a pure
/// state machine, so the timing rules are tested without DNS or clocks.
#[derive(Debug, Clone)]
struct Schedule {
    refresh_rate: Duration,
    respect_ttl: bool,
    failure: Option<FailureRefresh>,
    /// The ceiling of the next failure's wait.
    backoff: Duration,
}

impl Schedule {
    fn new(config: &DnsDiscovery) -> Self {
        let failure = config.failure_refresh_rate;
        Schedule {
            refresh_rate: config.refresh_rate.max(MIN_REFRESH),
            respect_ttl: config.respect_ttl,
            failure,
            backoff: failure.map_or(MIN_REFRESH, |f| f.base_interval.max(MIN_REFRESH)),
        }
    }

    /// The wait after a lookup that answered, with the answer's lowest TTL
    /// (`None`: no records). Starts the failure backoff over.
    fn succeeded(&mut self, ttl: Option<Duration>) -> Duration {
        if let Some(failure) = self.failure {
            self.backoff = failure.base_interval.max(MIN_REFRESH);
        }
        match ttl {
            Some(ttl) if self.respect_ttl && !ttl.is_zero() => ttl.max(MIN_TTL_REFRESH),
            _ => self.refresh_rate,
        }
    }

    /// The wait after a failed lookup; `jitter` in `[0.5, 1]` is the share of
    /// the backoff's ceiling waited.
    fn failed(&mut self, jitter: f64) -> Duration {
        let Some(failure) = self.failure else {
            return self.refresh_rate;
        };
        let ceiling = self.backoff;
        let max = failure.max_interval.max(ceiling);
        self.backoff = ceiling.saturating_mul(2).min(max);
        ceiling.mul_f64(jitter.clamp(0.5, 1.0)).max(MIN_REFRESH)
    }
}

/// A target's endpoints from one lookup, and how long the answer is good for.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Found {
    endpoints: Vec<Endpoint>,
    ttl: Option<Duration>,
}

/// Looks `target` up once.
async fn resolve_target<R: Resolve>(
    resolver: &R,
    target: &DnsTarget,
    mode: DnsMode,
) -> Result<Found, LookupError> {
    let mut found = match target.kind {
        DnsTargetKind::Address => {
            let port = target
                .port
                .ok_or_else(|| LookupError::Failed("an address target needs a port".to_owned()))?;
            let answer = resolver.addresses(&target.name).await?;
            let endpoints = answer
                .records
                .iter()
                .map(|ip| {
                    endpoint(
                        target,
                        SocketAddr::new(*ip, port),
                        target.weight,
                        target.priority,
                    )
                })
                .collect();
            Found {
                endpoints,
                ttl: answer.ttl,
            }
        }
        DnsTargetKind::Srv => {
            let answer = resolver.services(&target.name).await?;
            let hosts = join_all(answer.records.iter().map(|s| resolver.addresses(&s.host))).await;
            srv_endpoints(target, &answer, hosts)?
        }
    };
    if mode == DnsMode::Logical {
        found.endpoints.truncate(1);
    }
    Ok(found)
}

/// The endpoints of an SRV answer, given each record's host lookup (in the
/// records' order).
fn srv_endpoints(
    target: &DnsTarget,
    answer: &Answer<Service>,
    hosts: Vec<Result<Answer<IpAddr>, LookupError>>,
) -> Result<Found, LookupError> {
    let mut priorities: Vec<u16> = answer.records.iter().map(|s| s.priority).collect();
    priorities.sort_unstable();
    priorities.dedup();
    let mut ttl = answer.ttl;
    let mut endpoints = Vec::new();
    for (service, host) in answer.records.iter().zip(hosts) {
        let rank = priorities.partition_point(|p| *p < service.priority);
        let priority = target
            .priority
            .saturating_add(u32::try_from(rank).unwrap_or(u32::MAX));
        let weight = u32::from(service.weight).max(1);
        match host {
            Ok(addresses) => {
                ttl = lowest(ttl, addresses.ttl);
                endpoints.extend(addresses.records.iter().map(|ip| {
                    endpoint(target, SocketAddr::new(*ip, service.port), weight, priority)
                }));
            }
            Err(LookupError::NoSuchName) => {
                debug!(target = %target.name, host = %service.host, "an SRV record's host does not exist; it adds no endpoint");
            }
            Err(LookupError::Failed(why)) => {
                return Err(LookupError::Failed(format!(
                    "SRV host {:?}: {why}",
                    service.host
                )));
            }
        }
    }
    Ok(Found { endpoints, ttl })
}

fn endpoint(target: &DnsTarget, address: SocketAddr, weight: u32, priority: u32) -> Endpoint {
    Endpoint {
        address,
        weight,
        health: target.health,
        locality: target.locality.clone(),
        priority,
    }
}

fn lowest(a: Option<Duration>, b: Option<Duration>) -> Option<Duration> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, None) => a,
        (None, b) => b,
    }
}

/// One lookup's records and their lowest TTL (`None` when there are none).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Answer<T> {
    records: Vec<T>,
    ttl: Option<Duration>,
}

impl<T> Answer<T> {
    fn empty() -> Self {
        Answer {
            records: Vec::new(),
            ttl: None,
        }
    }
}

/// One SRV record.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Service {
    priority: u16,
    weight: u16,
    port: u16,
    /// The host, as an absolute name.
    host: String,
}

/// Why a lookup found nothing usable. An empty answer is not an error.
#[derive(Debug, Clone, PartialEq, Eq)]
enum LookupError {
    /// NXDOMAIN: the name does not exist.
    NoSuchName,
    /// No answer: a timeout, a refused query, a server failure.
    Failed(String),
}

impl fmt::Display for LookupError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LookupError::NoSuchName => f.write_str("no such name (NXDOMAIN)"),
            LookupError::Failed(why) => f.write_str(why),
        }
    }
}

/// The two lookups discovery makes; [`Hickory`] in service, a scripted fake in
/// the tests.
trait Resolve: Clone + Send + Sync + 'static {
    /// The addresses of `name`, following CNAMEs, in the configured families.
    fn addresses(
        &self,
        name: &str,
    ) -> impl Future<Output = Result<Answer<IpAddr>, LookupError>> + Send;

    /// The SRV records of `name`.
    fn services(
        &self,
        name: &str,
    ) -> impl Future<Output = Result<Answer<Service>, LookupError>> + Send;
}

/// hickory-resolver, set up from a [`DnsDiscovery`].
#[derive(Clone)]
struct Hickory(TokioResolver);

impl Hickory {
    fn build(config: &DnsDiscovery) -> Result<Self, String> {
        let mut builder = if config.resolvers.is_empty() {
            TokioResolver::builder_tokio()
                .map_err(|e| format!("reading the system's DNS configuration: {e}"))?
        } else {
            let servers = config
                .resolvers
                .iter()
                .map(|address| {
                    let mut server = NameServerConfig::udp_and_tcp(address.ip());
                    for connection in &mut server.connections {
                        connection.port = address.port();
                    }
                    server
                })
                .collect();
            let mut builder = TokioResolver::builder_with_config(
                ResolverConfig::from_name_servers(servers),
                TokioRuntimeProvider::default(),
            );
            builder.options_mut().use_hosts_file = ResolveHosts::Never;
            builder
        };
        let options = builder.options_mut();
        options.ip_strategy = match config.lookup_family {
            LookupFamily::Auto => LookupIpStrategy::Ipv6thenIpv4,
            LookupFamily::V4Only => LookupIpStrategy::Ipv4Only,
            LookupFamily::V6Only => LookupIpStrategy::Ipv6Only,
            LookupFamily::V4Preferred => LookupIpStrategy::Ipv4thenIpv6,
            LookupFamily::All => LookupIpStrategy::Ipv4AndIpv6,
        };
        // hickory tries a server three times (measured: 3 × `timeout` against
        // a dead one); the tries fit in `query_timeout`, which `drive` also
        // enforces over a whole refresh.
        options.timeout = (config.query_timeout / 3).max(Duration::from_millis(10));
        // Every refresh asks the server: `refresh_rate` (or the TTL, with
        // `respect_ttl`) paces re-resolution, not hickory's cache, which would
        // answer from memory until the TTL ran out.
        options.cache_size = 0;
        builder.build().map(Hickory).map_err(|e| e.to_string())
    }
}

impl Resolve for Hickory {
    async fn addresses(&self, name: &str) -> Result<Answer<IpAddr>, LookupError> {
        match self.0.lookup_ip(name).await {
            Ok(lookup) => Ok(Answer {
                records: lookup.iter().collect(),
                ttl: lowest_ttl(lookup.as_lookup().answers()),
            }),
            Err(e) => no_answer(e),
        }
    }

    async fn services(&self, name: &str) -> Result<Answer<Service>, LookupError> {
        match self.0.srv_lookup(name).await {
            Ok(lookup) => {
                let records = lookup
                    .answers()
                    .iter()
                    .filter_map(|record| match &record.data {
                        // A target of "." means the service is decidedly not
                        // available at this name (RFC 2782).
                        RData::SRV(srv) if !srv.target.is_root() => Some(Service {
                            priority: srv.priority,
                            weight: srv.weight,
                            port: srv.port,
                            host: srv.target.to_ascii(),
                        }),
                        _ => None,
                    })
                    .collect();
                Ok(Answer {
                    records,
                    ttl: lowest_ttl(lookup.answers()),
                })
            }
            Err(e) => no_answer(e),
        }
    }
}

/// The lowest TTL of an answer's records, CNAMEs of the chain included.
fn lowest_ttl(records: &[Record]) -> Option<Duration> {
    records
        .iter()
        .map(|r| Duration::from_secs(r.ttl.into()))
        .min()
}

/// hickory reports an answer without records as an error: NOERROR (the name
/// exists, with no records of the type asked) is an empty answer, NXDOMAIN
/// the name's absence, anything else a failure.
fn no_answer<T>(error: NetError) -> Result<Answer<T>, LookupError> {
    if let NetError::Dns(DnsError::NoRecordsFound(no_records)) = &error {
        match no_records.response_code {
            ResponseCode::NoError => return Ok(Answer::empty()),
            ResponseCode::NXDomain => return Err(LookupError::NoSuchName),
            _ => {}
        }
    }
    Err(LookupError::Failed(error.to_string()))
}

#[cfg(test)]
mod tests;
