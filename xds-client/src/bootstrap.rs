//! The bootstrap: which control plane to talk to and who this client is.
//!
//! The JSON format is gRPC's (gRFC A27, with A47 `server_features`, A65 TLS
//! credentials and A47/A71 `authorities`), read from the file named by
//! `GRPC_XDS_BOOTSTRAP` or the JSON in `GRPC_XDS_BOOTSTRAP_CONFIG`, so a
//! deployment of proxyless gRPC services works unchanged. Unknown fields are
//! ignored, as gRPC does, so newer bootstrap files still load.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use serde::Deserialize;

use crate::pb::envoy::config::core::v3 as core;
use crate::pb::google::protobuf::{ListValue, Struct, Value, value::Kind};

/// The server feature asking for `ignore_resource_deletion` (gRFC A53).
pub const IGNORE_RESOURCE_DELETION: &str = "ignore_resource_deletion";
/// The server feature selecting the incremental (delta) ADS protocol; gRPC's
/// clients ignore server features they do not know, so a shared bootstrap
/// file may carry it.
pub const DELTA_ADS: &str = "delta_ads";

/// A bootstrap could not be used; names the field and the problem.
///
/// ```
/// let err = meshlib_xds::Bootstrap::from_json(r#"{"xds_servers": [], "node": {"id": "n"}}"#).unwrap_err();
/// assert_eq!(err.to_string(), "xDS bootstrap: xds_servers: must list at least one server");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootstrapError {
    field: String,
    message: String,
}

impl BootstrapError {
    fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        BootstrapError {
            field: field.into(),
            message: message.into(),
        }
    }

    /// The field at fault, as a path (`xds_servers[0].server_uri`); empty for
    /// a document that could not be read at all.
    pub fn field(&self) -> &str {
        &self.field
    }
}

impl fmt::Display for BootstrapError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.field.is_empty() {
            write!(f, "xDS bootstrap: {}", self.message)
        } else {
            write!(f, "xDS bootstrap: {}: {}", self.field, self.message)
        }
    }
}

impl std::error::Error for BootstrapError {}

/// What an xDS client needs to start: its control plane(s) and its identity.
///
/// ```
/// use meshlib_xds::Bootstrap;
///
/// let bootstrap = Bootstrap::from_json(r#"{
///   "xds_servers": [{"server_uri": "127.0.0.1:18000", "channel_creds": [{"type": "insecure"}],
///                    "server_features": ["xds_v3"]}],
///   "node": {"id": "test-node", "cluster": "test", "locality": {"region": "r", "zone": "z1"}}
/// }"#)?;
/// assert_eq!(bootstrap.servers[0].uri, "http://127.0.0.1:18000");
/// assert_eq!(bootstrap.node.id, "test-node");
/// # Ok::<(), meshlib_xds::BootstrapError>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Bootstrap {
    /// The control planes, in order of preference.
    pub servers: Vec<XdsServer>,
    /// Who this client is, sent in every request.
    pub node: Node,
    /// Per-authority settings for `xdstp://` names (gRFC A47).
    pub authorities: BTreeMap<String, Authority>,
    /// The template for listener names of `xds:///name` targets; `%s` stands
    /// for the name. Empty means the name itself.
    pub client_default_listener_resource_name_template: String,
    /// Certificate provider plugin configurations, by instance name, kept
    /// as JSON for the security layers (gRFC A29).
    pub certificate_providers: BTreeMap<String, serde_json::Value>,
}

/// One control plane.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct XdsServer {
    /// Its URI for tonic: `http://host:port` or `https://host:port`, whatever
    /// form the bootstrap wrote (`host:port`, `dns:///host:port`, a URL).
    pub uri: String,
    /// The credentials chosen: the first supported entry of `channel_creds`.
    pub credentials: ChannelCredentials,
    /// `server_features`, as written.
    pub server_features: Vec<String>,
}

impl XdsServer {
    /// An insecure connection to `uri`, in any form `server_uri` accepts.
    pub fn insecure(uri: &str) -> Result<Self, BootstrapError> {
        Ok(XdsServer {
            uri: normalize_uri(uri, false).map_err(|m| BootstrapError::new("server_uri", m))?,
            credentials: ChannelCredentials::Insecure,
            server_features: Vec::new(),
        })
    }

    /// Whether resources missing from a response are kept rather than
    /// deleted (gRFC A53).
    pub fn ignore_resource_deletion(&self) -> bool {
        self.server_features
            .iter()
            .any(|f| f == IGNORE_RESOURCE_DELETION)
    }

    /// Whether to speak the incremental (delta) variant of ADS.
    pub fn delta(&self) -> bool {
        self.server_features.iter().any(|f| f == DELTA_ADS)
    }

    /// Adds a server feature, e.g. [`DELTA_ADS`].
    pub fn with_feature(mut self, feature: &str) -> Self {
        self.server_features.push(feature.to_owned());
        self
    }
}

/// How to secure the connection to a control plane.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChannelCredentials {
    /// Plain text.
    Insecure,
    /// TLS (gRFC A65), with PEM files; without a CA file the system's roots.
    Tls {
        /// CA certificates to verify the server with.
        ca_certificate_file: Option<PathBuf>,
        /// The client's certificate chain, for mutual TLS.
        certificate_file: Option<PathBuf>,
        /// The client's private key, for mutual TLS.
        private_key_file: Option<PathBuf>,
    },
}

/// Settings for one `xdstp://` authority.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authority {
    /// Its control planes; empty means the top-level `xds_servers`.
    pub servers: Vec<XdsServer>,
    /// The template for listener names of `xds://authority/name` targets.
    pub client_listener_resource_name_template: String,
}

/// This client's identity, Envoy's `Node`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Node {
    /// Unique id of this client.
    pub id: String,
    /// The service cluster it belongs to.
    pub cluster: String,
    /// Where it runs.
    pub locality: Locality,
    /// Opaque metadata for the control plane (a JSON object).
    pub metadata: serde_json::Map<String, serde_json::Value>,
}

impl Node {
    /// The node as Envoy's `Node`, exactly as [`XdsClient`](crate::XdsClient)
    /// sends it on its ADS stream: with this crate's user agent and the
    /// client features it declares.
    pub fn to_envoy(&self) -> core::Node {
        core::Node {
            id: self.id.clone(),
            cluster: self.cluster.clone(),
            locality: Some(core::Locality {
                region: self.locality.region.clone(),
                zone: self.locality.zone.clone(),
                sub_zone: self.locality.sub_zone.clone(),
            }),
            metadata: (!self.metadata.is_empty()).then(|| Struct {
                fields: self
                    .metadata
                    .iter()
                    .map(|(k, v)| (k.clone(), json_value(v)))
                    .collect(),
            }),
            user_agent_name: "meshlib-xds".to_owned(),
            user_agent_version_type: Some(core::node::UserAgentVersionType::UserAgentVersion(
                env!("CARGO_PKG_VERSION").to_owned(),
            )),
            client_features: vec!["envoy.lb.does_not_support_overprovisioning".to_owned()],
            ..Default::default()
        }
    }
}

fn json_value(value: &serde_json::Value) -> Value {
    let kind = match value {
        serde_json::Value::Null => Kind::NullValue(0),
        serde_json::Value::Bool(b) => Kind::BoolValue(*b),
        serde_json::Value::Number(n) => Kind::NumberValue(n.as_f64().unwrap_or_default()),
        serde_json::Value::String(s) => Kind::StringValue(s.clone()),
        serde_json::Value::Array(items) => Kind::ListValue(ListValue {
            values: items.iter().map(json_value).collect(),
        }),
        serde_json::Value::Object(fields) => Kind::StructValue(Struct {
            fields: fields
                .iter()
                .map(|(k, v)| (k.clone(), json_value(v)))
                .collect(),
        }),
    };
    Value { kind: Some(kind) }
}

/// Region, zone and sub-zone.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
pub struct Locality {
    /// Region.
    #[serde(default)]
    pub region: String,
    /// Zone.
    #[serde(default)]
    pub zone: String,
    /// Sub-zone.
    #[serde(default)]
    pub sub_zone: String,
}

/// The Listener type's name in `xdstp://` resource names.
const LISTENER_TYPE: &str = "envoy.config.listener.v3.Listener";

/// What `%s` in an `xdstp:` template percent-encodes (gRFC A47): everything
/// but RFC 3986's unreserved characters and `/`.
const XDSTP_ENCODED: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~')
    .remove(b'/');

impl Bootstrap {
    /// The Listener resource a client target stands for, as gRPC resolves
    /// it (gRFC A47): `xds:///name` (or a bare `name`) through
    /// `client_default_listener_resource_name_template`, `xds://authority/name`
    /// through that authority's `client_listener_resource_name_template`
    /// (by default `xdstp://authority/envoy.config.listener.v3.Listener/%s`).
    /// In an `xdstp:` template the name is percent-encoded.
    ///
    /// ```
    /// let bootstrap = meshlib_xds::Bootstrap::from_json(r#"{
    ///   "xds_servers": [{"server_uri": "127.0.0.1:18000", "channel_creds": [{"type": "insecure"}]}],
    ///   "authorities": {"mesh.example": {}}
    /// }"#)?;
    /// assert_eq!(bootstrap.listener_name("xds:///greeter")?, "greeter");
    /// assert_eq!(
    ///     bootstrap.listener_name("xds://mesh.example/greeter")?,
    ///     "xdstp://mesh.example/envoy.config.listener.v3.Listener/greeter"
    /// );
    /// assert!(bootstrap.listener_name("xds://other.example/greeter").is_err());
    /// # Ok::<(), meshlib_xds::BootstrapError>(())
    /// ```
    pub fn listener_name(&self, target: &str) -> Result<String, BootstrapError> {
        let refuse =
            |message: String| BootstrapError::new("", format!("target {target:?}: {message}"));
        let (template, name) = match target.strip_prefix("xds://") {
            Some(rest) => {
                let (authority, name) = rest
                    .split_once('/')
                    .ok_or_else(|| refuse("expected xds://[authority]/name".to_owned()))?;
                if authority.is_empty() {
                    (
                        self.client_default_listener_resource_name_template.clone(),
                        name,
                    )
                } else {
                    let settings = self.authorities.get(authority).ok_or_else(|| {
                        refuse(format!("the bootstrap has no authority {authority:?}"))
                    })?;
                    let template = match settings.client_listener_resource_name_template.as_str() {
                        "" => format!("xdstp://{authority}/{LISTENER_TYPE}/%s"),
                        template => template.to_owned(),
                    };
                    (template, name)
                }
            }
            None if target.contains("://") || target.starts_with("xds:") => {
                return Err(refuse(
                    "expected xds:///name, xds://authority/name or a name".to_owned(),
                ));
            }
            None => (
                self.client_default_listener_resource_name_template.clone(),
                target,
            ),
        };
        if name.is_empty() {
            return Err(refuse("the name is empty".to_owned()));
        }
        Ok(if template.is_empty() {
            name.to_owned()
        } else if template.starts_with("xdstp:") {
            let name = name.strip_prefix('/').unwrap_or(name);
            let encoded = percent_encoding::utf8_percent_encode(name, XDSTP_ENCODED).to_string();
            template.replace("%s", &encoded)
        } else {
            template.replace("%s", name)
        })
    }

    /// The control planes that serve the resource `name`, in order of
    /// preference (gRFC A47): an `xdstp://` name's authority's servers (the
    /// top-level ones when it lists none), and the top-level ones for any
    /// other name. `None` for an `xdstp://` name of an authority the
    /// bootstrap does not list.
    pub fn servers_for(&self, name: &str) -> Option<&[XdsServer]> {
        let Some(rest) = name.strip_prefix("xdstp://") else {
            return Some(&self.servers);
        };
        let authority = rest.split('/').next().unwrap_or_default();
        let settings = self.authorities.get(authority)?;
        Some(if settings.servers.is_empty() {
            &self.servers
        } else {
            &settings.servers
        })
    }

    /// One insecure control plane at `server_uri` and a node id: the least a
    /// client needs, for code that builds its bootstrap itself.
    pub fn new(server_uri: &str, node_id: &str) -> Result<Self, BootstrapError> {
        Ok(Bootstrap {
            servers: vec![XdsServer::insecure(server_uri)?],
            node: Node {
                id: node_id.to_owned(),
                ..Node::default()
            },
            authorities: BTreeMap::new(),
            client_default_listener_resource_name_template: String::new(),
            certificate_providers: BTreeMap::new(),
        })
    }

    /// Reads the bootstrap the way gRPC does: the file named by
    /// `GRPC_XDS_BOOTSTRAP`, else the JSON in `GRPC_XDS_BOOTSTRAP_CONFIG`.
    pub fn from_env() -> Result<Self, BootstrapError> {
        Self::from_variables(
            std::env::var_os("GRPC_XDS_BOOTSTRAP"),
            std::env::var("GRPC_XDS_BOOTSTRAP_CONFIG").ok(),
        )
    }

    /// [`Bootstrap::from_env`] given the two variables' values.
    fn from_variables(
        file: Option<std::ffi::OsString>,
        inline: Option<String>,
    ) -> Result<Self, BootstrapError> {
        if let Some(path) = file {
            let text = std::fs::read_to_string(&path).map_err(|e| {
                BootstrapError::new(
                    "",
                    format!("cannot read GRPC_XDS_BOOTSTRAP file {path:?}: {e}"),
                )
            })?;
            return Self::from_json(&text);
        }
        match inline {
            Some(text) => Self::from_json(&text),
            None => Err(BootstrapError::new(
                "",
                "neither GRPC_XDS_BOOTSTRAP nor GRPC_XDS_BOOTSTRAP_CONFIG is set",
            )),
        }
    }

    /// Parses a bootstrap document.
    pub fn from_json(text: &str) -> Result<Self, BootstrapError> {
        let raw: raw::Bootstrap =
            serde_json::from_str(text).map_err(|e| BootstrapError::new("", e.to_string()))?;
        let servers = parse_servers(raw.xds_servers, "xds_servers")?;
        if servers.is_empty() {
            return Err(BootstrapError::new(
                "xds_servers",
                "must list at least one server",
            ));
        }
        let node = raw.node.unwrap_or_default();
        let authorities = raw
            .authorities
            .into_iter()
            .map(|(name, authority)| {
                let field = format!("authorities[{name:?}]");
                let template = authority
                    .client_listener_resource_name_template
                    .unwrap_or_default();
                let prefix = format!("xdstp://{name}/");
                if !template.is_empty() && !template.starts_with(&prefix) {
                    return Err(BootstrapError::new(
                        format!("{field}.client_listener_resource_name_template"),
                        format!("must start with {prefix:?}"),
                    ));
                }
                Ok((
                    name,
                    Authority {
                        servers: parse_servers(
                            authority.xds_servers,
                            &format!("{field}.xds_servers"),
                        )?,
                        client_listener_resource_name_template: template,
                    },
                ))
            })
            .collect::<Result<_, _>>()?;
        Ok(Bootstrap {
            servers,
            node: Node {
                id: node.id,
                cluster: node.cluster,
                locality: node.locality.unwrap_or_default(),
                metadata: node.metadata,
            },
            authorities,
            client_default_listener_resource_name_template: raw
                .client_default_listener_resource_name_template
                .unwrap_or_default(),
            certificate_providers: raw.certificate_providers,
        })
    }
}

fn parse_servers(raw: Vec<raw::Server>, field: &str) -> Result<Vec<XdsServer>, BootstrapError> {
    raw.into_iter()
        .enumerate()
        .map(|(i, server)| {
            let field = format!("{field}[{i}]");
            let credentials = credentials(&server.channel_creds, &field)?;
            let tls = matches!(credentials, ChannelCredentials::Tls { .. });
            let uri = normalize_uri(&server.server_uri, tls)
                .map_err(|m| BootstrapError::new(format!("{field}.server_uri"), m))?;
            Ok(XdsServer {
                uri,
                credentials,
                server_features: server.server_features,
            })
        })
        .collect()
}

/// gRPC takes the first `channel_creds` entry whose type it supports.
fn credentials(
    creds: &[raw::ChannelCreds],
    field: &str,
) -> Result<ChannelCredentials, BootstrapError> {
    if creds.is_empty() {
        return Err(BootstrapError::new(
            format!("{field}.channel_creds"),
            "must list at least one credential type (e.g. {\"type\": \"insecure\"})",
        ));
    }
    for cred in creds {
        match cred.kind.as_str() {
            "insecure" => return Ok(ChannelCredentials::Insecure),
            "tls" => {
                let file = |key: &str| {
                    cred.config
                        .get(key)
                        .and_then(|v| v.as_str())
                        .map(PathBuf::from)
                };
                let credentials = ChannelCredentials::Tls {
                    ca_certificate_file: file("ca_certificate_file"),
                    certificate_file: file("certificate_file"),
                    private_key_file: file("private_key_file"),
                };
                if let ChannelCredentials::Tls {
                    certificate_file,
                    private_key_file,
                    ..
                } = &credentials
                    && certificate_file.is_some() != private_key_file.is_some()
                {
                    return Err(BootstrapError::new(
                        format!("{field}.channel_creds"),
                        "tls: certificate_file and private_key_file go together",
                    ));
                }
                return Ok(credentials);
            }
            _ => continue,
        }
    }
    let kinds: Vec<&str> = creds.iter().map(|c| c.kind.as_str()).collect();
    Err(BootstrapError::new(
        format!("{field}.channel_creds"),
        format!("no supported credential type among {kinds:?} (supported: \"insecure\", \"tls\")"),
    ))
}

/// `host:port`, `dns:///host:port`, `http://host:port` or `https://host:port`
/// → a URL tonic connects to. A bare form takes its scheme from the credentials.
fn normalize_uri(uri: &str, tls: bool) -> Result<String, String> {
    let uri = uri.trim();
    if uri.is_empty() {
        return Err("must not be empty".to_owned());
    }
    let (scheme, rest) = if let Some(rest) = uri.strip_prefix("http://") {
        ("http", rest)
    } else if let Some(rest) = uri.strip_prefix("https://") {
        ("https", rest)
    } else if let Some(rest) = uri.strip_prefix("dns:///") {
        (if tls { "https" } else { "http" }, rest)
    } else if let Some(rest) = uri.strip_prefix("dns://") {
        // dns://resolver/host:port: the resolver authority is not supported;
        // the host is resolved with the system's resolver.
        let host = rest.split_once('/').map(|(_, host)| host).unwrap_or(rest);
        (if tls { "https" } else { "http" }, host)
    } else if uri.contains("://") || uri.starts_with("unix:") {
        return Err(format!(
            "{uri:?}: only host:port, dns:///host:port, http:// and https:// are supported"
        ));
    } else {
        (if tls { "https" } else { "http" }, uri)
    };
    let authority: http::uri::Authority = rest
        .trim_end_matches('/')
        .parse()
        .map_err(|e| format!("{uri:?} is not host:port: {e}"))?;
    if authority.port_u16().is_none() {
        return Err(format!("{uri:?} has no port"));
    }
    Ok(format!("{scheme}://{authority}"))
}

mod raw {
    use std::collections::BTreeMap;

    use serde::Deserialize;

    #[derive(Deserialize)]
    pub(super) struct Bootstrap {
        #[serde(default)]
        pub(super) xds_servers: Vec<Server>,
        pub(super) node: Option<Node>,
        #[serde(default)]
        pub(super) authorities: BTreeMap<String, Authority>,
        pub(super) client_default_listener_resource_name_template: Option<String>,
        #[serde(default)]
        pub(super) certificate_providers: BTreeMap<String, serde_json::Value>,
    }

    #[derive(Deserialize)]
    pub(super) struct Server {
        pub(super) server_uri: String,
        #[serde(default)]
        pub(super) channel_creds: Vec<ChannelCreds>,
        #[serde(default)]
        pub(super) server_features: Vec<String>,
    }

    #[derive(Deserialize)]
    pub(super) struct ChannelCreds {
        #[serde(rename = "type")]
        pub(super) kind: String,
        #[serde(default)]
        pub(super) config: serde_json::Map<String, serde_json::Value>,
    }

    #[derive(Deserialize, Default)]
    pub(super) struct Node {
        #[serde(default)]
        pub(super) id: String,
        #[serde(default)]
        pub(super) cluster: String,
        pub(super) locality: Option<super::Locality>,
        #[serde(default)]
        pub(super) metadata: serde_json::Map<String, serde_json::Value>,
    }

    #[derive(Deserialize)]
    pub(super) struct Authority {
        #[serde(default)]
        pub(super) xds_servers: Vec<Server>,
        pub(super) client_listener_resource_name_template: Option<String>,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server_json(uri: &str, creds: &str) -> String {
        format!(
            r#"{{"xds_servers": [{{"server_uri": "{uri}", "channel_creds": {creds}}}], "node": {{"id": "n"}}}}"#
        )
    }

    #[test]
    fn the_environment_names_a_file_or_carries_the_json() {
        let json = server_json("cp:1", r#"[{"type": "insecure"}]"#);
        let inline = Bootstrap::from_variables(None, Some(json.clone())).unwrap();
        assert_eq!(inline.servers[0].uri, "http://cp:1");

        let path =
            std::env::temp_dir().join(format!("meshlib-bootstrap-{}.json", std::process::id()));
        std::fs::write(&path, json.replace("cp:1", "cp:2")).unwrap();
        let from_file = Bootstrap::from_variables(Some(path.clone().into()), Some(json)).unwrap();
        assert_eq!(
            from_file.servers[0].uri, "http://cp:2",
            "the file wins, as in gRPC"
        );
        std::fs::remove_file(&path).unwrap();

        let err = Bootstrap::from_variables(Some(path.clone().into()), None).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("xDS bootstrap: cannot read GRPC_XDS_BOOTSTRAP file"),
            "{err}"
        );
        let err = Bootstrap::from_variables(None, None).unwrap_err();
        assert_eq!(
            err.to_string(),
            "xDS bootstrap: neither GRPC_XDS_BOOTSTRAP nor GRPC_XDS_BOOTSTRAP_CONFIG is set"
        );
    }

    #[test]
    fn every_server_uri_form_gives_a_url() {
        let cases = [
            ("127.0.0.1:18000", "http://127.0.0.1:18000"),
            ("dns:///xds.example.com:443", "http://xds.example.com:443"),
            (
                "dns://8.8.8.8/xds.example.com:443",
                "http://xds.example.com:443",
            ),
            ("http://127.0.0.1:18000", "http://127.0.0.1:18000"),
            ("https://istiod:15012/", "https://istiod:15012"),
            ("[::1]:18000", "http://[::1]:18000"),
        ];
        for (written, url) in cases {
            let b =
                Bootstrap::from_json(&server_json(written, r#"[{"type": "insecure"}]"#)).unwrap();
            assert_eq!(b.servers[0].uri, url, "{written}");
        }
        let tls = Bootstrap::from_json(&server_json(
            "istiod:15012",
            r#"[{"type": "tls", "config": {}}]"#,
        ))
        .unwrap();
        assert_eq!(tls.servers[0].uri, "https://istiod:15012");
    }

    #[test]
    fn the_first_supported_credentials_win() {
        let b = Bootstrap::from_json(&server_json(
            "h:1",
            r#"[{"type": "google_default"}, {"type": "tls", "config": {"ca_certificate_file": "/ca.pem"}}, {"type": "insecure"}]"#,
        ))
        .unwrap();
        assert_eq!(
            b.servers[0].credentials,
            ChannelCredentials::Tls {
                ca_certificate_file: Some("/ca.pem".into()),
                certificate_file: None,
                private_key_file: None
            }
        );
    }

    #[test]
    fn errors_name_the_field() {
        let cases = [
            (
                server_json("", r#"[{"type": "insecure"}]"#),
                "xDS bootstrap: xds_servers[0].server_uri: must not be empty",
            ),
            (
                server_json("h", r#"[{"type": "insecure"}]"#),
                "xDS bootstrap: xds_servers[0].server_uri: \"h\" has no port",
            ),
            (
                server_json("unix:/tmp/s", r#"[{"type": "insecure"}]"#),
                "xDS bootstrap: xds_servers[0].server_uri: \"unix:/tmp/s\": only host:port, dns:///host:port, http:// and https:// are supported",
            ),
            (
                server_json("h:1", "[]"),
                "xDS bootstrap: xds_servers[0].channel_creds: must list at least one credential type (e.g. {\"type\": \"insecure\"})",
            ),
            (
                server_json("h:1", r#"[{"type": "google_default"}]"#),
                "xDS bootstrap: xds_servers[0].channel_creds: no supported credential type among [\"google_default\"] (supported: \"insecure\", \"tls\")",
            ),
            (
                server_json(
                    "h:1",
                    r#"[{"type": "tls", "config": {"certificate_file": "c.pem"}}]"#,
                ),
                "xDS bootstrap: xds_servers[0].channel_creds: tls: certificate_file and private_key_file go together",
            ),
        ];
        for (json, message) in cases {
            assert_eq!(
                Bootstrap::from_json(&json).unwrap_err().to_string(),
                message
            );
        }
        let err = Bootstrap::from_json("{\"xds_servers\": 3}").unwrap_err();
        assert!(
            err.to_string()
                .starts_with("xDS bootstrap: invalid type: integer `3`"),
            "{err}"
        );
    }

    #[test]
    fn node_features_authorities_and_templates_are_read() {
        let b = Bootstrap::from_json(
            r#"{
              "xds_servers": [{"server_uri": "cp:18000", "channel_creds": [{"type": "insecure"}],
                               "server_features": ["xds_v3", "ignore_resource_deletion", "delta_ads"]}],
              "node": {"id": "n1", "cluster": "c", "locality": {"region": "r", "zone": "z"},
                       "metadata": {"TRAFFICDIRECTOR_NETWORK_NAME": "default"}},
              "authorities": {"a.example": {"client_listener_resource_name_template": "xdstp://a.example/envoy.config.listener.v3.Listener/%s"}},
              "client_default_listener_resource_name_template": "prefix/%s",
              "certificate_providers": {"default": {"plugin_name": "file_watcher", "config": {}}},
              "some_future_field": true
            }"#,
        )
        .unwrap();
        assert!(b.servers[0].ignore_resource_deletion() && b.servers[0].delta());
        assert_eq!(b.node.locality.zone, "z");
        assert_eq!(b.node.metadata["TRAFFICDIRECTOR_NETWORK_NAME"], "default");
        assert!(b.authorities["a.example"].servers.is_empty());
        assert_eq!(b.listener_name("greeter").unwrap(), "prefix/greeter");
        assert!(b.certificate_providers.contains_key("default"));

        // As sent on the ADS stream (and shown in CSDS): metadata as a Struct.
        let sent = b.node.to_envoy();
        assert_eq!((sent.id.as_str(), sent.cluster.as_str()), ("n1", "c"));
        assert_eq!(sent.locality.unwrap().zone, "z");
        assert_eq!(
            sent.metadata.unwrap().fields["TRAFFICDIRECTOR_NETWORK_NAME"].kind,
            Some(Kind::StringValue("default".to_owned()))
        );
        assert_eq!(sent.user_agent_name, "meshlib-xds");

        let err = Bootstrap::from_json(
            r#"{"xds_servers": [{"server_uri": "cp:1", "channel_creds": [{"type": "insecure"}]}],
                "authorities": {"a": {"client_listener_resource_name_template": "xdstp://b/x/%s"}}}"#,
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "xDS bootstrap: authorities[\"a\"].client_listener_resource_name_template: must start with \"xdstp://a/\""
        );
    }

    #[test]
    fn targets_resolve_to_listener_names_and_names_to_servers() {
        let b = Bootstrap::from_json(
            r#"{"xds_servers": [{"server_uri": "top:1", "channel_creds": [{"type": "insecure"}]}],
                "client_default_listener_resource_name_template": "xdstp://a.example/envoy.config.listener.v3.Listener/%s",
                "authorities": {
                  "a.example": {},
                  "b.example": {"xds_servers": [{"server_uri": "b:1", "channel_creds": [{"type": "insecure"}]}],
                                "client_listener_resource_name_template": "xdstp://b.example/L/%s"}}}"#,
        )
        .unwrap();
        // The default template is an xdstp one: the name is percent-encoded, `/` kept.
        assert_eq!(
            b.listener_name("xds:///svc/v1 beta?x").unwrap(),
            "xdstp://a.example/envoy.config.listener.v3.Listener/svc/v1%20beta%3Fx"
        );
        assert_eq!(
            b.listener_name("xds://a.example/greeter").unwrap(),
            "xdstp://a.example/envoy.config.listener.v3.Listener/greeter"
        );
        assert_eq!(
            b.listener_name("xds://b.example/greeter").unwrap(),
            "xdstp://b.example/L/greeter"
        );
        for (target, problem) in [
            ("xds://c.example/greeter", "no authority \"c.example\""),
            ("xds:///", "the name is empty"),
            ("dns:///greeter", "expected xds:///name"),
            ("xds://a.example", "expected xds://[authority]/name"),
        ] {
            let error = b.listener_name(target).unwrap_err().to_string();
            assert!(
                error.contains(problem) && error.contains(target),
                "{target}: {error}"
            );
        }

        let uri = |name: &str| b.servers_for(name).map(|s| s[0].uri.clone());
        assert_eq!(uri("plain-name").as_deref(), Some("http://top:1"));
        // An authority without servers of its own uses the top-level ones.
        assert_eq!(
            uri("xdstp://a.example/envoy.config.cluster.v3.Cluster/c").as_deref(),
            Some("http://top:1")
        );
        assert_eq!(
            uri("xdstp://b.example/envoy.config.cluster.v3.Cluster/c").as_deref(),
            Some("http://b:1")
        );
        assert_eq!(
            uri("xdstp://c.example/envoy.config.cluster.v3.Cluster/c"),
            None
        );
    }
}
