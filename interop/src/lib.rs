//! # meshlib-interop
//!
//! Conformance of meshlib against gRPC's reference xDS clients, driven by
//! gRPC's own interop protocol (the `grpc.testing` services described in
//! grpc/grpc's `doc/xds-test-descriptions.md`).
//!
//! - [`pb`]: the protocol, generated from `proto/` (our copy, wire-compatible).
//! - [`behavior`]: the `rpc-behavior` metadata a test server obeys.
//! - [`stats`]: the per-window and accumulated RPC statistics a test client serves.
//! - [`csds`]: a meshlib xDS dump as a CSDS `ClientConfig`.
//!
//! The binaries `xds-interop-server` and `xds-interop-client` are built on
//! these; the harness in `tests/` runs them beside gRPC's Python and Node
//! clients (see `INTEROP.md`).

pub mod behavior;
pub mod csds;
pub mod stats;

/// gRPC's interop protocol, package `grpc.testing`, generated at build time.
#[allow(missing_docs, unreachable_pub, clippy::all, clippy::pedantic)]
pub mod pb {
    tonic::include_proto!("grpc.testing");
}
