use tokio::runtime::Handle;
use tower_layer::Layer;

use super::Mirror;

/// Wraps a service in [`Mirror`], running mirrored copies on its executor.
#[derive(Debug, Clone)]
pub struct MirrorLayer {
    executor: Handle,
}

impl MirrorLayer {
    /// The layer; copies run on `executor`.
    pub fn new(executor: Handle) -> Self {
        MirrorLayer { executor }
    }
}

impl<S> Layer<S> for MirrorLayer {
    type Service = Mirror<S>;

    fn layer(&self, inner: S) -> Mirror<S> {
        Mirror::new(inner, self.executor.clone())
    }
}
