//! The future the mesh's layers return: the inner service's, or a failure
//! decided before the inner service was called.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use pin_project_lite::pin_project;

use crate::error::Error;

pin_project! {
    /// Either the inner service's response future, or an [`Error`] the layer
    /// decided on by itself (no route, unknown cluster, …).
    #[project = Projection]
    pub struct ResponseFuture<F> {
        #[pin]
        state: State<F>,
    }
}

pin_project! {
    #[project = StateProjection]
    enum State<F> {
        Called { #[pin] future: F },
        Failed { error: Option<Error> },
    }
}

impl<F> ResponseFuture<F> {
    pub(crate) fn called(future: F) -> Self {
        ResponseFuture {
            state: State::Called { future },
        }
    }

    pub(crate) fn failed(error: Error) -> Self {
        ResponseFuture {
            state: State::Failed { error: Some(error) },
        }
    }
}

impl<F, T, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<T, E>>,
    E: From<Error>,
{
    type Output = Result<T, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().state.project() {
            StateProjection::Called { future } => future.poll(cx),
            StateProjection::Failed { error } => match error.take() {
                Some(error) => Poll::Ready(Err(error.into())),
                None => panic!("ResponseFuture polled after completion"),
            },
        }
    }
}
