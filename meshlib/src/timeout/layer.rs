use tower_layer::Layer;

use super::Timeout;

/// Wraps a service in [`Timeout`].
#[derive(Debug, Clone, Copy, Default)]
pub struct TimeoutLayer;

impl TimeoutLayer {
    /// The layer.
    pub fn new() -> Self {
        TimeoutLayer
    }
}

impl<S> Layer<S> for TimeoutLayer {
    type Service = Timeout<S>;

    fn layer(&self, inner: S) -> Timeout<S> {
        Timeout::new(inner)
    }
}
