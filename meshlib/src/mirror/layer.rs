use tower_layer::Layer;

use super::Mirror;

/// Wraps a service in [`Mirror`].
#[derive(Debug, Clone, Copy, Default)]
pub struct MirrorLayer;

impl MirrorLayer {
    /// The layer.
    pub fn new() -> Self {
        MirrorLayer
    }
}

impl<S> Layer<S> for MirrorLayer {
    type Service = Mirror<S>;

    fn layer(&self, inner: S) -> Mirror<S> {
        Mirror::new(inner)
    }
}
