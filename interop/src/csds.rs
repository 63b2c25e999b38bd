//! CSDS (`envoy.service.status.v3.ClientStatusDiscoveryService`) for a
//! meshlib xDS client: what the psm-interop driver reads to see which
//! resources a client accepted and why it refused the others.
//!
//! The dump is [`XdsClient::dump`]; each resource becomes a
//! `GenericXdsConfig` with its status: `REQUESTED` (asked for, no answer
//! yet), `DOES_NOT_EXIST`, `ACKED`, or `NACKED` with the refusal's reason in
//! `error_state.details` (the last good copy, if any, stays in `xds_config`),
//! as gRPC's clients report them.

use std::pin::Pin;

use meshlib_xds::pb::envoy::admin::v3::{ClientResourceStatus, UpdateFailureState};
use meshlib_xds::pb::envoy::service::status::v3::client_config::GenericXdsConfig;
use meshlib_xds::pb::envoy::service::status::v3::client_status_discovery_service_server::{
    ClientStatusDiscoveryService, ClientStatusDiscoveryServiceServer,
};
use meshlib_xds::pb::envoy::service::status::v3::{
    ClientConfig, ClientStatusRequest, ClientStatusResponse,
};
use meshlib_xds::{DumpEntry, Presence, XdsClient};
use tokio_stream::{Stream, StreamExt};
use tonic::{Request, Response, Status, Streaming};

/// One resource's CSDS status.
pub fn resource_status(entry: &DumpEntry) -> ClientResourceStatus {
    match (entry.presence, &entry.error) {
        (Presence::DoesNotExist, _) => ClientResourceStatus::DoesNotExist,
        (_, Some(_)) => ClientResourceStatus::Nacked,
        (Presence::Requested, None) => ClientResourceStatus::Requested,
        (Presence::Exists, None) => ClientResourceStatus::Acked,
    }
}

/// The dump of a client whose node is `node`, for the data plane target
/// `scope` (e.g. `xds:///greeter`), as CSDS reports it.
pub fn client_config(node: &meshlib_xds::Node, scope: &str, dump: &[DumpEntry]) -> ClientConfig {
    let generic_xds_configs = dump
        .iter()
        .map(|entry| GenericXdsConfig {
            type_url: entry.type_url.clone(),
            name: entry.name.clone(),
            version_info: entry.version.clone(),
            xds_config: entry.raw.clone(),
            client_status: resource_status(entry) as i32,
            error_state: entry.error.as_ref().map(|details| UpdateFailureState {
                details: details.clone(),
                ..UpdateFailureState::default()
            }),
            ..GenericXdsConfig::default()
        })
        .collect();
    #[allow(deprecated)] // `xds_config` (per type) is the deprecated field we leave empty.
    ClientConfig {
        node: Some(node.to_envoy()),
        generic_xds_configs,
        client_scope: scope.to_owned(),
        ..ClientConfig::default()
    }
}

/// The CSDS service of one xDS client, answering for its target `scope`.
#[derive(Debug, Clone)]
pub struct Csds {
    xds: XdsClient,
    scope: String,
}

impl Csds {
    /// CSDS for `xds`, reporting `scope` as the client scope.
    pub fn new(xds: XdsClient, scope: impl Into<String>) -> Self {
        Csds {
            xds,
            scope: scope.into(),
        }
    }

    /// The tonic service.
    pub fn service(self) -> ClientStatusDiscoveryServiceServer<Csds> {
        ClientStatusDiscoveryServiceServer::new(self)
    }

    async fn status(&self) -> Result<ClientStatusResponse, Status> {
        let dump = self
            .xds
            .dump()
            .await
            .map_err(|e| Status::unavailable(format!("xDS client: {e}")))?;
        Ok(ClientStatusResponse {
            config: vec![client_config(
                &self.xds.bootstrap().node,
                &self.scope,
                &dump,
            )],
        })
    }
}

type StatusStream = Pin<Box<dyn Stream<Item = Result<ClientStatusResponse, Status>> + Send>>;

#[tonic::async_trait]
impl ClientStatusDiscoveryService for Csds {
    type StreamClientStatusStream = StatusStream;

    async fn stream_client_status(
        &self,
        request: Request<Streaming<ClientStatusRequest>>,
    ) -> Result<Response<StatusStream>, Status> {
        let this = self.clone();
        let answers = request.into_inner().then(move |request| {
            let this = this.clone();
            async move {
                request?;
                this.status().await
            }
        });
        Ok(Response::new(Box::pin(answers)))
    }

    async fn fetch_client_status(
        &self,
        _request: Request<ClientStatusRequest>,
    ) -> Result<Response<ClientStatusResponse>, Status> {
        self.status().await.map(Response::new)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(presence: Presence, error: Option<&str>) -> DumpEntry {
        DumpEntry {
            type_url: "type.googleapis.com/envoy.config.cluster.v3.Cluster".to_owned(),
            name: "c".to_owned(),
            presence,
            version: "1".to_owned(),
            raw: None,
            error: error.map(str::to_owned),
        }
    }

    #[test]
    fn statuses_follow_presence_and_refusal() {
        use ClientResourceStatus::*;
        assert_eq!(
            resource_status(&entry(Presence::Requested, None)),
            Requested
        );
        assert_eq!(resource_status(&entry(Presence::Exists, None)), Acked);
        assert_eq!(
            resource_status(&entry(Presence::Exists, Some("bad"))),
            Nacked
        );
        assert_eq!(
            resource_status(&entry(Presence::Requested, Some("bad"))),
            Nacked
        );
        assert_eq!(
            resource_status(&entry(Presence::DoesNotExist, None)),
            DoesNotExist
        );
    }

    #[test]
    fn a_nack_carries_its_reason() {
        let node = meshlib_xds::Node {
            id: "n".to_owned(),
            ..Default::default()
        };
        let config = client_config(
            &node,
            "xds:///s",
            &[entry(Presence::Exists, Some("bad lb"))],
        );
        let resource = &config.generic_xds_configs[0];
        assert_eq!(resource.client_status, ClientResourceStatus::Nacked as i32);
        assert_eq!(resource.error_state.as_ref().unwrap().details, "bad lb");
        assert_eq!(config.client_scope, "xds:///s");
    }
}
