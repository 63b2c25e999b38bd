//! # meshlib-xds
//!
//! An xDS client for Rust: ADS over tonic in the state-of-the-world and delta
//! variants, gRPC's bootstrap format, typed watches, ACK/NACK and the failure
//! modes of gRFC A57. It knows nothing of meshlib and can serve any project.
//!
//! This crate is being built (meshlib issue #3); it has no public API yet.

// Library code does not panic on input; tests may unwrap.
#![warn(clippy::unwrap_used, clippy::expect_used)]
