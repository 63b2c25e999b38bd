//! The request body type inside the mesh.

use bytes::Bytes;
use http_body::Body;
use http_body_util::BodyExt;

use crate::error::BoxError;

/// Every request body is boxed into this once, on entry, so the stack below
/// has one concrete body type whatever the caller sends (hyper bodies,
/// `Full`, tonic's body…).
pub type BoxBody = http_body_util::combinators::UnsyncBoxBody<Bytes, BoxError>;

/// Boxes `body` into a [`BoxBody`].
pub fn boxed<B>(body: B) -> BoxBody
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    body.map_err(Into::into).boxed_unsync()
}

/// A body of these chunks, one frame each, as a streaming upload sends it.
#[cfg(test)]
pub(crate) fn streamed(chunks: Vec<&'static str>) -> BoxBody {
    let frames = chunks
        .into_iter()
        .map(|c| Ok::<_, std::convert::Infallible>(http_body::Frame::data(Bytes::from(c))));
    boxed(http_body_util::StreamBody::new(futures_util::stream::iter(
        frames,
    )))
}
