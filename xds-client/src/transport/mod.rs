//! The one task that does I/O: it owns the ADS stream to the control plane,
//! feeds the protocol state machine, and reconnects with backoff.

mod backoff;
mod task;

pub(crate) use backoff::Backoff;
pub(crate) use task::{Command, TransportConfig, run};
