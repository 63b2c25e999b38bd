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
