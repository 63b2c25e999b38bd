use tower_layer::Layer;

use super::{DEFAULT_MAX_REPLAY_BYTES, Retry};

/// Wraps a service in [`Retry`].
#[derive(Debug, Clone, Copy)]
pub struct RetryLayer {
    max_replay_bytes: usize,
}

impl RetryLayer {
    /// The layer, keeping up to 64 KiB of a body for replay.
    pub fn new() -> Self {
        RetryLayer {
            max_replay_bytes: DEFAULT_MAX_REPLAY_BYTES,
        }
    }

    /// The layer, keeping up to `max_replay_bytes` of a body for replay.
    pub fn with_max_replay_bytes(max_replay_bytes: usize) -> Self {
        RetryLayer { max_replay_bytes }
    }
}

impl Default for RetryLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl<S> Layer<S> for RetryLayer {
    type Service = Retry<S>;

    fn layer(&self, inner: S) -> Retry<S> {
        Retry::new(inner).max_replay_bytes(self.max_replay_bytes)
    }
}
