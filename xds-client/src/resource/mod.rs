//! xDS resource types: what a type URL decodes to, and how it is validated.
//!
//! A [`Resource`] decodes one resource from its protobuf bytes and validates
//! it; a validation error becomes the NACK reason for that resource (gRFC
//! A46), while valid siblings in the same response are accepted. The four
//! types of the ADS core are implemented for Envoy's messages with decoding
//! checks only; a consumer with stricter needs (meshlib checks what it can
//! route with) implements `Resource` for its own validated type.

use std::any::{Any, TypeId};
use std::sync::Arc;

use prost::{Message, Name};

use crate::pb::envoy::config::cluster::v3::Cluster;
use crate::pb::envoy::config::endpoint::v3::ClusterLoadAssignment;
use crate::pb::envoy::config::listener::v3::Listener;
use crate::pb::envoy::config::route::v3::RouteConfiguration;

/// Why a resource was refused: its name when it could be read, and the reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceError {
    /// The resource's name, if decoding got that far.
    pub name: Option<String>,
    /// What is wrong, for the NACK's `error_detail`.
    pub reason: String,
}

impl ResourceError {
    /// An error in the resource named `name`.
    pub fn named(name: impl Into<String>, reason: impl Into<String>) -> Self {
        ResourceError {
            name: Some(name.into()),
            reason: reason.into(),
        }
    }

    /// An error in a resource whose name could not be read.
    pub fn unnamed(reason: impl Into<String>) -> Self {
        ResourceError {
            name: None,
            reason: reason.into(),
        }
    }
}

impl std::fmt::Display for ResourceError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.name {
            Some(name) => write!(f, "resource {name:?}: {}", self.reason),
            None => write!(f, "unnamed resource: {}", self.reason),
        }
    }
}

/// A kind of xDS resource.
///
/// ```
/// use meshlib_xds::Resource;
/// use meshlib_xds::pb::envoy::config::cluster::v3::Cluster;
///
/// assert_eq!(Cluster::TYPE_URL, "type.googleapis.com/envoy.config.cluster.v3.Cluster");
/// let bytes = prost::Message::encode_to_vec(&Cluster { name: "reviews".into(), ..Default::default() });
/// assert_eq!(Cluster::decode_resource(&bytes).unwrap().resource_name(), "reviews");
/// ```
pub trait Resource: Sized + Send + Sync + std::fmt::Debug + 'static {
    /// The type URL, `type.googleapis.com/…`.
    const TYPE_URL: &'static str;
    /// Whether a state-of-the-world response carries every resource of this
    /// type the client subscribed to (true for LDS and CDS), so that one
    /// missing from a response has been deleted.
    const ALL_IN_EACH_RESPONSE: bool;

    /// Decodes and validates one resource.
    fn decode_resource(bytes: &[u8]) -> Result<Self, ResourceError>;

    /// The resource's name.
    fn resource_name(&self) -> &str;
}

/// Decodes an Envoy message and checks it has a name.
fn decode_named<M: Message + Default + Name>(
    bytes: &[u8],
    name: fn(&M) -> &str,
) -> Result<M, ResourceError> {
    let message = M::decode(bytes)
        .map_err(|e| ResourceError::unnamed(format!("cannot decode {}: {e}", M::full_name())))?;
    if name(&message).is_empty() {
        return Err(ResourceError::unnamed("the resource has an empty name"));
    }
    Ok(message)
}

/// `Resource` for an Envoy message: decoding checks only.
macro_rules! envoy_resource {
    ($message:ty, $type_url:literal, all_in_each_response: $all:literal, name: $field:ident) => {
        impl Resource for $message {
            const TYPE_URL: &'static str = $type_url;
            const ALL_IN_EACH_RESPONSE: bool = $all;

            fn decode_resource(bytes: &[u8]) -> Result<Self, ResourceError> {
                decode_named(bytes, |m: &Self| &m.$field)
            }

            fn resource_name(&self) -> &str {
                &self.$field
            }
        }
    };
}

envoy_resource!(Listener, "type.googleapis.com/envoy.config.listener.v3.Listener", all_in_each_response: true, name: name);
envoy_resource!(RouteConfiguration, "type.googleapis.com/envoy.config.route.v3.RouteConfiguration", all_in_each_response: false, name: name);
envoy_resource!(Cluster, "type.googleapis.com/envoy.config.cluster.v3.Cluster", all_in_each_response: true, name: name);
envoy_resource!(
    ClusterLoadAssignment,
    "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment",
    all_in_each_response: false,
    name: cluster_name
);

/// A decoded resource of some type.
pub(crate) type Erased = Arc<dyn Any + Send + Sync>;

/// Decodes one resource of some type into its name and the erased value.
type Decoder = fn(&[u8]) -> Result<(String, Erased), ResourceError>;

/// A [`Resource`] type with its Rust type erased, for the type-agnostic state.
#[derive(Clone, Copy)]
pub(crate) struct ResourceType {
    pub(crate) type_url: &'static str,
    pub(crate) all_in_each_response: bool,
    pub(crate) type_id: TypeId,
    pub(crate) type_name: &'static str,
    decode: Decoder,
}

impl std::fmt::Debug for ResourceType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResourceType")
            .field("type_url", &self.type_url)
            .field("type_name", &self.type_name)
            .finish()
    }
}

impl ResourceType {
    pub(crate) fn of<T: Resource>() -> Self {
        ResourceType {
            type_url: T::TYPE_URL,
            all_in_each_response: T::ALL_IN_EACH_RESPONSE,
            type_id: TypeId::of::<T>(),
            type_name: std::any::type_name::<T>(),
            decode: |bytes| {
                let resource = T::decode_resource(bytes)?;
                let name = resource.resource_name().to_owned();
                Ok((name, Arc::new(resource) as Erased))
            },
        }
    }

    pub(crate) fn decode(&self, bytes: &[u8]) -> Result<(String, Erased), ResourceError> {
        (self.decode)(bytes).map(|(name, resource)| (canonical_name(&name).into_owned(), resource))
    }
}

/// A resource name as the cache keys it: an `xdstp://` name with its
/// context parameters (the query) sorted by key, as gRFC A47 has client and
/// server compare them; any other name as it is.
///
/// ```
/// use meshlib_xds::canonical_name;
///
/// assert_eq!(
///     canonical_name("xdstp://a.example/envoy.config.cluster.v3.Cluster/c?zone=z1&env=prod"),
///     "xdstp://a.example/envoy.config.cluster.v3.Cluster/c?env=prod&zone=z1"
/// );
/// assert_eq!(canonical_name("old-style?b&a"), "old-style?b&a");
/// ```
pub fn canonical_name(name: &str) -> std::borrow::Cow<'_, str> {
    let Some((path, query)) = name
        .strip_prefix("xdstp://")
        .and_then(|_| name.split_once('?'))
    else {
        return name.into();
    };
    let mut params: Vec<&str> = query.split('&').collect();
    if params.is_sorted() {
        return name.into();
    }
    params.sort_unstable();
    format!("{path}?{}", params.join("&")).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type_urls_match_the_protobuf_names() {
        assert_eq!(Listener::TYPE_URL, Listener::type_url());
        assert_eq!(RouteConfiguration::TYPE_URL, RouteConfiguration::type_url());
        assert_eq!(Cluster::TYPE_URL, Cluster::type_url());
        assert_eq!(
            ClusterLoadAssignment::TYPE_URL,
            ClusterLoadAssignment::type_url()
        );
    }

    #[test]
    fn bad_bytes_and_empty_names_are_refused_with_a_reason() {
        let err = Cluster::decode_resource(&[0xff, 0xff]).unwrap_err();
        assert!(
            err.reason
                .starts_with("cannot decode envoy.config.cluster.v3.Cluster"),
            "{err}"
        );
        let err = Cluster::decode_resource(&Cluster::default().encode_to_vec()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "unnamed resource: the resource has an empty name"
        );
    }
}
