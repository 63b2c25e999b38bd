use futures_util::future::{BoxFuture, Either};

use crate::error::Error;

/// The inner service's future for a request without a retry policy, else
/// the retry loop's (boxed: it holds an attempt, a backoff sleep and the
/// replayable body, and is taken only by routes with a policy).
pub type ResponseFuture<F, T> = Either<F, BoxFuture<'static, Result<T, Error>>>;
