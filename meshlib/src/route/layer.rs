use std::sync::Arc;

use tower_layer::Layer;

use super::{Route, RouteTable};

/// Wraps a service in [`Route`] with one shared [`RouteTable`].
#[derive(Debug, Clone)]
pub struct RouteLayer {
    table: Arc<RouteTable>,
}

impl RouteLayer {
    /// A layer routing with `table`.
    pub fn new(table: Arc<RouteTable>) -> Self {
        RouteLayer { table }
    }
}

impl<S> Layer<S> for RouteLayer {
    type Service = Route<S>;

    fn layer(&self, inner: S) -> Route<S> {
        Route::new(inner, self.table.clone())
    }
}
