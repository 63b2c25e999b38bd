//! The request body split in two: the primary's frames pass straight on,
//! and a copy of each goes to every shadow through a bounded channel. A
//! shadow that falls behind, or whose request is gone, is cut off; the
//! primary never waits for one.

use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use tokio::sync::mpsc;

use crate::body::BoxBody;
use crate::error::BoxError;

/// How many frames a shadow may lag behind the primary before it is cut
/// off. A frame is a `Bytes` clone, sharing the primary's buffer.
const SHADOW_BUFFER_FRAMES: usize = 16;

enum Item {
    Frame(Frame<Bytes>),
    /// The primary's body ended here: without it, a closed channel means the
    /// shadow was cut off and its body must fail, not end early.
    End,
}

/// The primary's body, copying each frame to the shadows.
pub(super) struct Tee {
    inner: BoxBody,
    shadows: Vec<mpsc::Sender<Item>>,
}

/// A shadow's body: the frames the primary's body yielded, or an error once
/// the shadow was cut off.
pub(super) struct ShadowBody {
    frames: mpsc::Receiver<Item>,
    size_hint: SizeHint,
    ended: bool,
}

/// The shadow was cut off: it fell behind the primary, or the primary's body
/// failed or was dropped before its end.
#[derive(Debug, thiserror::Error)]
#[error("the shadow request's body was cut off from the primary request's")]
pub(super) struct CutOff;

/// Splits `body` into the primary's and `shadows` copies.
pub(super) fn tee(body: BoxBody, shadows: usize) -> (Tee, Vec<ShadowBody>) {
    let size_hint = body.size_hint();
    let (senders, bodies) = (0..shadows)
        .map(|_| {
            let (sender, frames) = mpsc::channel(SHADOW_BUFFER_FRAMES);
            let body = ShadowBody {
                frames,
                size_hint,
                ended: false,
            };
            (sender, body)
        })
        .unzip();
    (
        Tee {
            inner: body,
            shadows: senders,
        },
        bodies,
    )
}

impl Tee {
    /// Offers `item` to every shadow, cutting off those that cannot take it now.
    fn offer(&mut self, item: impl Fn() -> Item) {
        self.shadows
            .retain(|shadow| shadow.try_send(item()).is_ok());
    }
}

impl Body for Tee {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        let frame = ready!(Pin::new(&mut this.inner).poll_frame(cx));
        if !this.shadows.is_empty() {
            match &frame {
                Some(Ok(frame)) => {
                    if let Some(data) = frame.data_ref() {
                        this.offer(|| Item::Frame(Frame::data(data.clone())));
                    } else if let Some(trailers) = frame.trailers_ref() {
                        this.offer(|| Item::Frame(Frame::trailers(trailers.clone())));
                    }
                    // A sender may stop polling once the body says it is done.
                    if this.inner.is_end_stream() {
                        this.offer(|| Item::End);
                        this.shadows.clear();
                    }
                }
                Some(Err(_)) => this.shadows.clear(),
                None => {
                    this.offer(|| Item::End);
                    this.shadows.clear();
                }
            }
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Body for ShadowBody {
    type Data = Bytes;
    type Error = CutOff;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, CutOff>>> {
        if self.ended {
            return Poll::Ready(None);
        }
        match ready!(self.frames.poll_recv(cx)) {
            Some(Item::Frame(frame)) => Poll::Ready(Some(Ok(frame))),
            Some(Item::End) => {
                self.ended = true;
                Poll::Ready(None)
            }
            None => {
                self.ended = true;
                Poll::Ready(Some(Err(CutOff)))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.ended
    }

    fn size_hint(&self) -> SizeHint {
        self.size_hint
    }
}

#[cfg(test)]
mod tests {
    use http_body_util::BodyExt;

    use super::*;
    use crate::body::{boxed, streamed};

    #[tokio::test]
    async fn every_shadow_gets_every_frame_and_the_end() {
        let (primary, shadows) = tee(streamed(vec!["a", "b", "c"]), 2);
        let primary = primary.collect().await.unwrap().to_bytes();
        assert_eq!(primary, "abc");
        for shadow in shadows {
            assert_eq!(shadow.collect().await.unwrap().to_bytes(), "abc");
        }
    }

    #[tokio::test]
    async fn a_body_that_says_it_is_done_ends_the_shadows_too() {
        // `Full` is done after its one frame: a sender need not poll it again.
        let (mut primary, shadows) = tee(boxed(http_body_util::Full::new(Bytes::from("x"))), 1);
        let frame = primary.frame().await.unwrap().unwrap();
        assert_eq!(frame.into_data().unwrap(), "x");
        assert!(primary.is_end_stream());
        drop(primary);
        let [shadow] = <[ShadowBody; 1]>::try_from(shadows).ok().unwrap();
        assert_eq!(shadow.collect().await.unwrap().to_bytes(), "x");
    }

    #[tokio::test]
    async fn a_shadow_that_falls_behind_is_cut_off_and_the_primary_goes_on() {
        let chunks = vec!["0123456789"; SHADOW_BUFFER_FRAMES * 4];
        let (primary, shadows) = tee(streamed(chunks.clone()), 1);
        // The shadow reads nothing while the primary streams it all.
        let primary = primary.collect().await.unwrap().to_bytes();
        assert_eq!(primary.len(), chunks.concat().len());
        let shadow = shadows.into_iter().next().unwrap();
        let error = shadow.collect().await.unwrap_err();
        assert_eq!(error.to_string(), CutOff.to_string());
    }

    #[tokio::test]
    async fn a_primary_dropped_midway_cuts_the_shadow_off() {
        let (mut primary, shadows) = tee(streamed(vec!["a", "b"]), 1);
        primary.frame().await.unwrap().unwrap();
        drop(primary);
        let shadow = shadows.into_iter().next().unwrap();
        assert!(
            shadow.collect().await.is_err(),
            "a truncated body must not look complete"
        );
    }
}
