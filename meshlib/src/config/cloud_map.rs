//! The AWS Cloud Map endpoint source of a cluster, as the file writes it. This
//! module only describes and checks a source (it is compiled without the
//! `cloudmap` feature too, so a file can be validated anywhere);
//! `discovery::cloud_map` runs it.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::discovery::failure_refresh_problems;
use super::{FailureRefresh, Problem, duration};

/// Endpoints of a service registered in AWS Cloud Map, found with the
/// [`DiscoverInstances`][discover] API call (so HTTP namespaces work, and DNS
/// namespaces without DNS), and followed by polling
/// [`DiscoverInstancesRevision`][revision].
///
/// ```yaml
/// cloud_map:
///   namespace: prod.internal           # the namespace's HttpName
///   service: reviews
///   query_parameters: { version: v2 }  # only instances with every one of these attributes
///   optional_parameters: { AVAILABILITY_ZONE: eu-west-1a }  # preferred, when any match
///   health_status: healthy             # healthy | unhealthy | all | healthy_or_else_all
///   ip_preference: ipv4_preferred      # ipv4_preferred | ipv6_preferred | ipv4_only | ipv6_only
///   port: 9080                         # for instances without AWS_INSTANCE_PORT
///   refresh_rate: 5s                   # DiscoverInstancesRevision
///   full_refresh_interval: 30s         # DiscoverInstances even if the revision is the same
///   failure_refresh_rate: { base_interval: 1s, max_interval: 30s }
///   request_timeout: 10s
///   max_results: 1000                  # default: Cloud Map's, 100
///   region: eu-west-1                  # default: the AWS SDK's region chain
///   endpoint_url: http://127.0.0.1:4566  # LocalStack, moto, a VPC endpoint
///   weight_attribute: weight           # these four are the defaults
///   priority_attribute: priority
///   region_attribute: REGION
///   zone_attribute: AVAILABILITY_ZONE
///   sub_zone_attribute: null
/// ```
///
/// **Instances become endpoints** as follows (`examples/config/cloudmap.yaml`
/// shows whole clusters):
///
/// | endpoint field | from the instance |
/// |---|---|
/// | address | `AWS_INSTANCE_IPV4` or `AWS_INSTANCE_IPV6`, one of them, as [`ip_preference`](Self::ip_preference) says (one instance is one endpoint, never two) |
/// | port | `AWS_INSTANCE_PORT`, else [`port`](Self::port) |
/// | weight | the attribute named by [`weight_attribute`](Self::weight_attribute), an integer from 1; 1 when absent |
/// | priority | the attribute named by [`priority_attribute`](Self::priority_attribute), an integer from 0; 0 when absent |
/// | locality | region, zone and sub-zone from the attributes named by the `*_attribute` fields; Amazon ECS registers `REGION` and `AVAILABILITY_ZONE` for each task, the defaults |
/// | health | the instance's `HealthStatus`: `HEALTHY` healthy, `UNHEALTHY` unhealthy, `UNKNOWN` (or none) unknown, which takes traffic as in EDS |
///
/// An instance without a usable address or port (a `CNAME` or alias
/// instance, say), or with a weight or priority attribute that is not such a
/// number, is left out (logged at debug level), not a failure.
///
/// [discover]: https://docs.aws.amazon.com/cloud-map/latest/api/API_DiscoverInstances.html
/// [revision]: https://docs.aws.amazon.com/cloud-map/latest/api/API_DiscoverInstancesRevision.html
///
/// ```
/// use std::time::Duration;
/// use meshlib::config::{CloudMapDiscovery, CloudMapHealthFilter};
///
/// let cloud_map: CloudMapDiscovery = yaml_serde::from_str(
///     "{ namespace: prod.internal, service: reviews, query_parameters: { version: v2 }, health_status: all }",
/// )?;
/// let mut expected = CloudMapDiscovery::new("prod.internal", "reviews").with_query_parameter("version", "v2");
/// expected.health_status = CloudMapHealthFilter::All;
/// assert_eq!(cloud_map, expected);
/// assert_eq!(cloud_map.refresh_rate, Duration::from_secs(5));
/// assert!(cloud_map.validate("reviews").is_empty());
/// # Ok::<(), yaml_serde::Error>(())
/// ```
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CloudMapDiscovery {
    /// The namespace's name (its `HttpName`, which for most namespaces is its
    /// name).
    pub namespace: String,
    /// The service's name in the namespace.
    pub service: String,
    /// Only instances that have every one of these attributes with these
    /// values (DiscoverInstances' `QueryParameters`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub query_parameters: BTreeMap<String, String>,
    /// Of those, the instances that also have all of these, when there are
    /// any; otherwise all of them (DiscoverInstances' `OptionalParameters`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub optional_parameters: BTreeMap<String, String>,
    /// Which instances by health (DiscoverInstances' `HealthStatus`; Cloud Map
    /// ignores it for a service without health checks). Default `healthy`.
    #[serde(default)]
    pub health_status: CloudMapHealthFilter,
    /// Which address of an instance that registered both an IPv4 and an IPv6
    /// one is its endpoint's (App Mesh's `ipPreference`; default IPv4).
    #[serde(default)]
    pub ip_preference: IpPreference,
    /// The port of instances registered without `AWS_INSTANCE_PORT`; such an
    /// instance is left out when this is not set either.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// How often `DiscoverInstancesRevision` is asked whether the instances
    /// changed (default 5 s); when it did, `DiscoverInstances` follows.
    #[serde(default = "default_refresh_rate", with = "duration")]
    pub refresh_rate: Duration,
    /// The longest time between two `DiscoverInstances` calls, even when the
    /// revision stays the same (default 30 s): a change of health does not
    /// change the revision, so this is how soon one is seen.
    #[serde(default = "default_full_refresh_interval", with = "duration")]
    pub full_refresh_interval: Duration,
    /// How a failed refresh is retried. `None`: a backoff from `refresh_rate`
    /// up to ten times it. A throttled call (`ThrottlingException`,
    /// `RequestLimitExceeded`) is a failure like any other.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_refresh_rate: Option<FailureRefresh>,
    /// How long one API call may take, connecting and signing included,
    /// before it counts as failed (default 10 s).
    #[serde(default = "default_request_timeout", with = "duration")]
    pub request_timeout: Duration,
    /// The most instances one `DiscoverInstances` returns, 1 to 1,000. `None`:
    /// Cloud Map's default, 100. Cloud Map returns a random selection when
    /// more match, so a larger service needs this raised.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_results: Option<u32>,
    /// The AWS region. `None`: the AWS SDK's configuration (the client
    /// builder's, or `AWS_REGION`, the profile, the instance's metadata).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// Where the API is, instead of AWS's own endpoint for the region: for
    /// LocalStack, moto, or a proxy. Both calls go to this URL as written,
    /// without the `data-` host prefix the AWS SDK adds for AWS's endpoints.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint_url: Option<String>,
    /// The instance attribute holding an endpoint's weight (default `weight`;
    /// `null`: every endpoint has weight 1).
    #[serde(default = "default_weight_attribute")]
    pub weight_attribute: Option<String>,
    /// The instance attribute holding an endpoint's priority (default
    /// `priority`; `null`: every endpoint has priority 0).
    #[serde(default = "default_priority_attribute")]
    pub priority_attribute: Option<String>,
    /// The instance attribute holding an endpoint's region (default `REGION`,
    /// as Amazon ECS registers it; `null`: none).
    #[serde(default = "default_region_attribute")]
    pub region_attribute: Option<String>,
    /// The instance attribute holding an endpoint's zone (default
    /// `AVAILABILITY_ZONE`, as Amazon ECS registers it; `null`: none).
    #[serde(default = "default_zone_attribute")]
    pub zone_attribute: Option<String>,
    /// The instance attribute holding an endpoint's sub-zone (default none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sub_zone_attribute: Option<String>,
}

fn default_refresh_rate() -> Duration {
    Duration::from_secs(5)
}

fn default_full_refresh_interval() -> Duration {
    Duration::from_secs(30)
}

fn default_request_timeout() -> Duration {
    Duration::from_secs(10)
}

fn default_weight_attribute() -> Option<String> {
    Some("weight".to_owned())
}

fn default_priority_attribute() -> Option<String> {
    Some("priority".to_owned())
}

fn default_region_attribute() -> Option<String> {
    Some("REGION".to_owned())
}

fn default_zone_attribute() -> Option<String> {
    Some("AVAILABILITY_ZONE".to_owned())
}

/// DiscoverInstances' largest `MaxResults`.
const MAX_RESULTS: u32 = 1000;

impl CloudMapDiscovery {
    /// The instances of `service` in the namespace `namespace`, healthy ones
    /// only, with the defaults for the rest.
    pub fn new(namespace: impl Into<String>, service: impl Into<String>) -> Self {
        CloudMapDiscovery {
            namespace: namespace.into(),
            service: service.into(),
            query_parameters: BTreeMap::new(),
            optional_parameters: BTreeMap::new(),
            health_status: CloudMapHealthFilter::default(),
            ip_preference: IpPreference::default(),
            port: None,
            refresh_rate: default_refresh_rate(),
            full_refresh_interval: default_full_refresh_interval(),
            failure_refresh_rate: None,
            request_timeout: default_request_timeout(),
            max_results: None,
            region: None,
            endpoint_url: None,
            weight_attribute: default_weight_attribute(),
            priority_attribute: default_priority_attribute(),
            region_attribute: default_region_attribute(),
            zone_attribute: default_zone_attribute(),
            sub_zone_attribute: None,
        }
    }

    /// The same source, keeping only instances whose attribute `name` is `value`.
    pub fn with_query_parameter(
        mut self,
        name: impl Into<String>,
        value: impl Into<String>,
    ) -> Self {
        self.query_parameters.insert(name.into(), value.into());
        self
    }

    /// The same source, calling the API at `url` (LocalStack, moto, a proxy).
    pub fn with_endpoint_url(mut self, url: impl Into<String>) -> Self {
        self.endpoint_url = Some(url.into());
        self
    }

    /// The same source, in the AWS region `region`.
    pub fn with_region(mut self, region: impl Into<String>) -> Self {
        self.region = Some(region.into());
        self
    }

    /// The rules the types cannot express, as problems naming `cluster` and the
    /// field; empty when there are none.
    ///
    /// ```
    /// use std::time::Duration;
    /// use meshlib::config::CloudMapDiscovery;
    ///
    /// let mut cloud_map = CloudMapDiscovery::new("prod.internal", "");
    /// cloud_map.full_refresh_interval = Duration::from_secs(1);
    /// let problems: Vec<String> = cloud_map.validate("reviews").iter().map(ToString::to_string).collect();
    /// assert_eq!(
    ///     problems,
    ///     [
    ///         "cluster \"reviews\": cloud_map: service: must not be empty",
    ///         "cluster \"reviews\": cloud_map: full_refresh_interval: 1s is below refresh_rate 5s",
    ///     ]
    /// );
    /// ```
    pub fn validate(&self, cluster: &str) -> Vec<Problem> {
        let resource = format!("cluster {cluster:?}");
        let mut problems = Vec::new();
        let mut push = |field: &str, message: String| {
            problems.push(Problem {
                resource: resource.clone(),
                field: format!("cloud_map: {field}"),
                message,
            });
        };
        if self.namespace.trim().is_empty() {
            push("namespace", "must not be empty".to_owned());
        }
        if self.service.trim().is_empty() {
            push("service", "must not be empty".to_owned());
        }
        for (field, parameters) in [
            ("query_parameters", &self.query_parameters),
            ("optional_parameters", &self.optional_parameters),
        ] {
            for (name, value) in parameters {
                if let Err(why) = check_attribute_name(name) {
                    push(&format!("{field}: {name:?}"), why);
                }
                if let Err(why) = check_attribute_value(value) {
                    push(&format!("{field}: {name:?}"), why);
                }
            }
        }
        if self.port == Some(0) {
            push("port", "must be above 0".to_owned());
        }
        for (field, value) in [
            ("refresh_rate", self.refresh_rate),
            ("full_refresh_interval", self.full_refresh_interval),
            ("request_timeout", self.request_timeout),
        ] {
            if value.is_zero() {
                push(field, "must be above 0".to_owned());
            }
        }
        if !self.full_refresh_interval.is_zero() && self.full_refresh_interval < self.refresh_rate {
            push(
                "full_refresh_interval",
                format!(
                    "{} is below refresh_rate {}",
                    duration::format(self.full_refresh_interval),
                    duration::format(self.refresh_rate)
                ),
            );
        }
        if let Some(failure) = &self.failure_refresh_rate {
            for (field, message) in failure_refresh_problems(failure) {
                push(field, message);
            }
        }
        if let Some(max) = self.max_results
            && !(1..=MAX_RESULTS).contains(&max)
        {
            push(
                "max_results",
                format!("{max} is outside DiscoverInstances' range, 1 to {MAX_RESULTS}"),
            );
        }
        if let Some(region) = &self.region
            && let Err(why) = check_region(region)
        {
            push("region", why);
        }
        if let Some(url) = &self.endpoint_url
            && let Err(why) = check_endpoint_url(url)
        {
            push("endpoint_url", why);
        }
        for (field, name) in [
            ("weight_attribute", &self.weight_attribute),
            ("priority_attribute", &self.priority_attribute),
            ("region_attribute", &self.region_attribute),
            ("zone_attribute", &self.zone_attribute),
            ("sub_zone_attribute", &self.sub_zone_attribute),
        ] {
            if let Some(name) = name
                && let Err(why) = check_attribute_name(name)
            {
                push(field, why);
            }
        }
        problems
    }
}

/// Cloud Map's rule for attribute keys: 1 to 255 printable ASCII characters,
/// no spaces.
fn check_attribute_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("an attribute name must not be empty".to_owned());
    }
    if name.len() > 255 {
        return Err(format!(
            "an attribute name has at most 255 characters, found {}",
            name.len()
        ));
    }
    if let Some(c) = name.chars().find(|c| !c.is_ascii_graphic()) {
        return Err(format!("{c:?} is not allowed in an attribute name"));
    }
    Ok(())
}

/// Cloud Map's rule for attribute values: at most 1,024 printable ASCII
/// characters, spaces and tabs only inside.
fn check_attribute_value(value: &str) -> Result<(), String> {
    if value.len() > 1024 {
        return Err(format!(
            "an attribute value has at most 1024 characters, found {}",
            value.len()
        ));
    }
    if let Some(c) = value
        .chars()
        .find(|c| !(c.is_ascii_graphic() || *c == ' ' || *c == '\t'))
    {
        return Err(format!("{c:?} is not allowed in an attribute value"));
    }
    if value.starts_with([' ', '\t']) || value.ends_with([' ', '\t']) {
        return Err("an attribute value must not start or end with a space".to_owned());
    }
    Ok(())
}

fn check_region(region: &str) -> Result<(), String> {
    if region.is_empty() {
        return Err("must not be empty (leave it out for the AWS SDK's region)".to_owned());
    }
    if let Some(c) = region
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-'))
    {
        return Err(format!(
            "{region:?} is not a region name such as eu-west-1: {c:?} is not allowed"
        ));
    }
    Ok(())
}

/// An absolute `http` or `https` URL with a host, as the AWS SDK takes it.
fn check_endpoint_url(url: &str) -> Result<(), String> {
    let bad = |why: &str| {
        format!(
            "{url:?} is not an http:// or https:// URL with a host, such as http://127.0.0.1:4566: {why}"
        )
    };
    let uri: http::Uri = url
        .parse()
        .map_err(|e: http::uri::InvalidUri| bad(&e.to_string()))?;
    match uri.scheme_str() {
        Some("http" | "https") => {}
        Some(other) => return Err(bad(&format!("the scheme is {other:?}"))),
        None => return Err(bad("it has no scheme")),
    }
    match uri.host() {
        Some(host) if !host.is_empty() => {}
        _ => return Err(bad("it has no host")),
    }
    if uri.query().is_some() {
        return Err(bad("it has a query"));
    }
    Ok(())
}

/// Which instances DiscoverInstances returns, by health: its `HealthStatus`
/// parameter.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CloudMapHealthFilter {
    /// Healthy instances only (`HEALTHY`, the default).
    #[default]
    Healthy,
    /// Unhealthy instances only (`UNHEALTHY`).
    Unhealthy,
    /// Every instance (`ALL`); unhealthy ones become unhealthy endpoints,
    /// which take no traffic but count in their priority's health.
    All,
    /// Healthy instances, or every instance when none is healthy
    /// (`HEALTHY_OR_ELSE_ALL`: failing open).
    HealthyOrElseAll,
}

/// Which of an instance's addresses is its endpoint's: App Mesh's
/// `ipPreference` for Cloud Map service discovery.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IpPreference {
    /// `AWS_INSTANCE_IPV4`, else `AWS_INSTANCE_IPV6` (the default).
    #[default]
    Ipv4Preferred,
    /// `AWS_INSTANCE_IPV6`, else `AWS_INSTANCE_IPV4`.
    Ipv6Preferred,
    /// `AWS_INSTANCE_IPV4` only; an instance without one is left out.
    Ipv4Only,
    /// `AWS_INSTANCE_IPV6` only; an instance without one is left out.
    Ipv6Only,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems(yaml: &str) -> Vec<String> {
        let cloud_map: CloudMapDiscovery = yaml_serde::from_str(yaml).unwrap();
        cloud_map
            .validate("reviews")
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    #[test]
    fn the_file_shape_reads_with_the_defaults() {
        let cloud_map: CloudMapDiscovery =
            yaml_serde::from_str("{ namespace: prod.internal, service: reviews }").unwrap();
        assert_eq!(
            cloud_map,
            CloudMapDiscovery::new("prod.internal", "reviews")
        );
        assert!(cloud_map.query_parameters.is_empty());
        assert_eq!(cloud_map.health_status, CloudMapHealthFilter::Healthy);
        assert_eq!(cloud_map.ip_preference, IpPreference::Ipv4Preferred);
        assert_eq!(cloud_map.port, None);
        assert_eq!(cloud_map.refresh_rate, Duration::from_secs(5));
        assert_eq!(cloud_map.full_refresh_interval, Duration::from_secs(30));
        assert_eq!(cloud_map.failure_refresh_rate, None);
        assert_eq!(cloud_map.request_timeout, Duration::from_secs(10));
        assert_eq!(cloud_map.max_results, None);
        assert_eq!(cloud_map.region, None);
        assert_eq!(cloud_map.endpoint_url, None);
        assert_eq!(cloud_map.weight_attribute.as_deref(), Some("weight"));
        assert_eq!(cloud_map.priority_attribute.as_deref(), Some("priority"));
        assert_eq!(cloud_map.region_attribute.as_deref(), Some("REGION"));
        assert_eq!(
            cloud_map.zone_attribute.as_deref(),
            Some("AVAILABILITY_ZONE")
        );
        assert_eq!(cloud_map.sub_zone_attribute, None);
        assert!(cloud_map.validate("reviews").is_empty());
    }

    #[test]
    fn every_field_reads_and_writes_back() {
        let cloud_map: CloudMapDiscovery = yaml_serde::from_str(
            "namespace: prod.internal
service: reviews
query_parameters: { version: v2, stage: prod }
optional_parameters: { AVAILABILITY_ZONE: eu-west-1a }
health_status: healthy_or_else_all
ip_preference: ipv6_only
port: 9080
refresh_rate: 250ms
full_refresh_interval: 2s
failure_refresh_rate: { base_interval: 1s }
request_timeout: 3s
max_results: 1000
region: eu-west-1
endpoint_url: http://127.0.0.1:4566
weight_attribute: lb_weight
priority_attribute: null
region_attribute: null
zone_attribute: zone
sub_zone_attribute: rack",
        )
        .unwrap();
        assert_eq!(cloud_map.query_parameters.len(), 2);
        assert_eq!(
            cloud_map.optional_parameters["AVAILABILITY_ZONE"],
            "eu-west-1a"
        );
        assert_eq!(
            cloud_map.health_status,
            CloudMapHealthFilter::HealthyOrElseAll
        );
        assert_eq!(cloud_map.ip_preference, IpPreference::Ipv6Only);
        assert_eq!(cloud_map.port, Some(9080));
        assert_eq!(cloud_map.refresh_rate, Duration::from_millis(250));
        assert_eq!(cloud_map.full_refresh_interval, Duration::from_secs(2));
        assert_eq!(
            cloud_map.failure_refresh_rate,
            Some(FailureRefresh::new(
                Duration::from_secs(1),
                Duration::from_secs(10)
            ))
        );
        assert_eq!(cloud_map.request_timeout, Duration::from_secs(3));
        assert_eq!(cloud_map.max_results, Some(1000));
        assert_eq!(cloud_map.region.as_deref(), Some("eu-west-1"));
        assert_eq!(
            cloud_map.endpoint_url.as_deref(),
            Some("http://127.0.0.1:4566")
        );
        assert_eq!(cloud_map.weight_attribute.as_deref(), Some("lb_weight"));
        assert_eq!(cloud_map.priority_attribute, None);
        assert_eq!(cloud_map.region_attribute, None);
        assert_eq!(cloud_map.zone_attribute.as_deref(), Some("zone"));
        assert_eq!(cloud_map.sub_zone_attribute.as_deref(), Some("rack"));
        assert!(cloud_map.validate("reviews").is_empty());
        let written = serde_json::to_string(&cloud_map).unwrap();
        assert_eq!(
            serde_json::from_str::<CloudMapDiscovery>(&written).unwrap(),
            cloud_map
        );
        let defaults = CloudMapDiscovery::new("a", "b");
        let written = serde_json::to_string(&defaults).unwrap();
        assert_eq!(
            serde_json::from_str::<CloudMapDiscovery>(&written).unwrap(),
            defaults
        );
    }

    #[test]
    fn unknown_fields_and_values_are_refused() {
        let error = |yaml: &str| {
            yaml_serde::from_str::<CloudMapDiscovery>(yaml)
                .unwrap_err()
                .to_string()
        };
        let typo = error("{ namespace: a, service: b, refresh: 1s }");
        assert!(typo.contains("unknown field `refresh`"), "{typo}");
        let health = error("{ namespace: a, service: b, health_status: HEALTHY }");
        assert!(health.contains("unknown variant `HEALTHY`"), "{health}");
        let missing = error("{ namespace: a }");
        assert!(missing.contains("missing field `service`"), "{missing}");
    }

    #[test]
    fn problems_name_the_cluster_and_the_field() {
        let found = problems(
            "namespace: ''
service: ' '
query_parameters: { '': v, 'a b': ok, version: \" v2\" }
optional_parameters: { zone: \"new\\nline\" }
port: 0
refresh_rate: 0s
full_refresh_interval: 0s
request_timeout: 0s
failure_refresh_rate: { base_interval: 5s, max_interval: 1s }
max_results: 1001
region: EU West
endpoint_url: localhost:4566
weight_attribute: ''",
        );
        let expected = [
            "cluster \"reviews\": cloud_map: namespace: must not be empty",
            "cluster \"reviews\": cloud_map: service: must not be empty",
            "cluster \"reviews\": cloud_map: query_parameters: \"\": an attribute name must not be empty",
            "cluster \"reviews\": cloud_map: query_parameters: \"a b\": ' ' is not allowed in an attribute name",
            "cluster \"reviews\": cloud_map: query_parameters: \"version\": an attribute value must not start or end with a space",
            "cluster \"reviews\": cloud_map: optional_parameters: \"zone\": '\\n' is not allowed in an attribute value",
            "cluster \"reviews\": cloud_map: port: must be above 0",
            "cluster \"reviews\": cloud_map: refresh_rate: must be above 0",
            "cluster \"reviews\": cloud_map: full_refresh_interval: must be above 0",
            "cluster \"reviews\": cloud_map: request_timeout: must be above 0",
            "cluster \"reviews\": cloud_map: failure_refresh_rate: base_interval 5s is above max_interval 1s",
            "cluster \"reviews\": cloud_map: max_results: 1001 is outside DiscoverInstances' range, 1 to 1000",
            "cluster \"reviews\": cloud_map: region: \"EU West\" is not a region name such as eu-west-1: 'E' is not allowed",
            "cluster \"reviews\": cloud_map: endpoint_url: \"localhost:4566\" is not an http:// or https:// URL with a host, such as http://127.0.0.1:4566: it has no scheme",
            "cluster \"reviews\": cloud_map: weight_attribute: an attribute name must not be empty",
        ];
        assert_eq!(found, expected, "{found:#?}");
    }

    #[test]
    fn the_full_refresh_comes_no_more_often_than_the_revision_poll() {
        assert!(problems("{ namespace: a, service: b, refresh_rate: 10s }").is_empty());
        assert_eq!(
            problems("{ namespace: a, service: b, refresh_rate: 1m, full_refresh_interval: 30s }"),
            [
                "cluster \"reviews\": cloud_map: full_refresh_interval: 30s is below refresh_rate 60s"
            ]
        );
        assert!(
            problems("{ namespace: a, service: b, refresh_rate: 30s, full_refresh_interval: 30s }")
                .is_empty()
        );
    }

    #[test]
    fn endpoint_urls_are_absolute_http_urls() {
        for good in [
            "http://127.0.0.1:4566",
            "https://servicediscovery.eu-west-1.amazonaws.com",
            "http://[::1]:5000/",
            "http://localstack:4566/prefix",
        ] {
            assert_eq!(check_endpoint_url(good), Ok(()), "{good}");
        }
        for bad in [
            "",
            "127.0.0.1:4566",
            "ftp://127.0.0.1",
            "http:///path",
            "http://a:1/?x=1",
            "not a url",
        ] {
            assert!(check_endpoint_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_example_file_parses_into_the_model() {
        // examples/config/cloudmap.yaml loads whole, as a mesh configuration.
        let text = include_str!("../../../examples/config/cloudmap.yaml");
        // Parsed only: without the `cloudmap` feature validation refuses it.
        let config: crate::config::MeshConfig = yaml_serde::from_str(text).unwrap();
        let found: Vec<(String, CloudMapDiscovery)> = config
            .clusters
            .iter()
            .map(|cluster| match &cluster.discovery {
                crate::config::Discovery::CloudMap(cloud_map) => {
                    (cluster.name.clone(), (**cloud_map).clone())
                }
                other => panic!("cluster {}: {other:?}", cluster.name),
            })
            .collect();
        let [(_, reviews), (_, ratings), (_, local)] = &found[..] else {
            panic!("expected three clusters, found {}", found.len());
        };
        assert_eq!(reviews.namespace, "prod.internal");
        assert_eq!(reviews.service, "reviews");
        assert_eq!(reviews.health_status, CloudMapHealthFilter::Healthy);
        assert_eq!(ratings.query_parameters["version"], "v2");
        assert_eq!(
            ratings.health_status,
            CloudMapHealthFilter::HealthyOrElseAll
        );
        assert_eq!(ratings.max_results, Some(1000));
        assert_eq!(local.endpoint_url.as_deref(), Some("http://127.0.0.1:4566"));
        assert_eq!(local.region.as_deref(), Some("us-east-1"));
        for (name, cloud_map) in &found {
            assert!(cloud_map.validate(name).is_empty(), "{name}");
        }
        // With the feature the file is a valid configuration as it stands;
        // without it, every Cloud Map cluster is refused, saying why.
        let validated = crate::config::MeshConfig::from_yaml(text);
        #[cfg(feature = "cloudmap")]
        assert_eq!(validated.unwrap(), config);
        #[cfg(not(feature = "cloudmap"))]
        {
            let error = validated.unwrap_err().to_string();
            assert_eq!(
                error
                    .matches("meshlib was built without the `cloudmap` feature")
                    .count(),
                3,
                "{error}"
            );
        }
    }
}
