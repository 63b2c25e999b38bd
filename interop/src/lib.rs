//! # meshlib-interop
//!
//! Conformance of meshlib against gRPC's reference xDS clients, driven by
//! gRPC's own interop protocol (meshlib issue #5). Nothing here yet.
