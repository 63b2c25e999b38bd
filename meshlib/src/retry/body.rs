//! A request body that can be sent again: the first attempt streams it
//! through, recording what it reads up to a bound; a later attempt replays
//! the record, then reads on from where the last reader stopped.
//!
//! One reader at a time holds the rest of the original body; another that
//! has replayed everything recorded waits until the holder is dropped (an
//! abandoned attempt's body is dropped by the connection it was sent on) or
//! records more. Past the bound the record is dropped: the body can no
//! longer be replayed, and the attempt holding it goes on unaffected.

use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};

use crate::body::BoxBody;
use crate::error::BoxError;

/// The default bound on a body kept for replay: 64 KiB, as linkerd2-proxy's.
pub const DEFAULT_MAX_REPLAY_BYTES: usize = 64 * 1024;

enum Recorded {
    Data(Bytes),
    Trailers(HeaderMap),
}

struct State {
    recorded: Vec<Recorded>,
    bytes: usize,
    /// The unread rest of the original body, when no reader holds it.
    rest: Option<BoxBody>,
    /// The original body has ended: everything is recorded.
    ended: bool,
    /// The record went past the bound and was dropped.
    overflowed: bool,
    /// A reader waiting for the rest or for more of the record.
    waiting: Option<Waker>,
}

struct Shared {
    state: Mutex<State>,
    limit: usize,
    size_hint: SizeHint,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Makes a [`ReplayBody`] for each attempt at a request.
#[derive(Clone)]
pub(crate) struct Replay {
    shared: Arc<Shared>,
}

/// One attempt's body.
pub(crate) struct ReplayBody {
    shared: Arc<Shared>,
    /// How many recorded frames this reader has yielded.
    position: usize,
    /// The rest of the original body, while this reader holds it.
    rest: Option<BoxBody>,
    done: bool,
}

/// The record was dropped past the bound, so this attempt's body cannot be
/// rebuilt (reached only when an earlier attempt read past the bound after
/// the retry was decided).
#[derive(Debug, thiserror::Error)]
#[error("the request body went past the replay bound of {0} bytes while being resent")]
pub(crate) struct TooLarge(usize);

impl Replay {
    /// The first attempt's body and its maker, or `body` back when its
    /// announced size is already above `limit` (it is then sent once).
    pub(crate) fn new(body: BoxBody, limit: usize) -> Result<(Replay, ReplayBody), BoxBody> {
        let size_hint = body.size_hint();
        if size_hint.lower() > limit as u64 {
            return Err(body);
        }
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                recorded: Vec::new(),
                bytes: 0,
                rest: None,
                ended: false,
                overflowed: false,
                waiting: None,
            }),
            limit,
            size_hint,
        });
        let first = ReplayBody {
            shared: shared.clone(),
            position: 0,
            rest: Some(body),
            done: false,
        };
        Ok((Replay { shared }, first))
    }

    /// Whether another attempt can still be given the whole body.
    pub(crate) fn replayable(&self) -> bool {
        !self.shared.lock().overflowed
    }

    /// The next attempt's body, replaying from the start.
    pub(crate) fn body(&self) -> ReplayBody {
        ReplayBody {
            shared: self.shared.clone(),
            position: 0,
            rest: None,
            done: false,
        }
    }
}

impl ReplayBody {
    /// Reads the rest of the original body, recording what it yields.
    fn poll_rest(
        &mut self,
        cx: &mut Context<'_>,
        mut rest: BoxBody,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let polled = Pin::new(&mut rest).poll_frame(cx);
        let end = rest.is_end_stream();
        let mut state = self.shared.lock();
        match &polled {
            Poll::Pending => {
                drop(state);
                self.rest = Some(rest);
                return Poll::Pending;
            }
            Poll::Ready(Some(Ok(frame))) => {
                if !state.overflowed {
                    if let Some(data) = frame.data_ref() {
                        state.bytes += data.len();
                        if state.bytes > self.shared.limit {
                            state.overflowed = true;
                            state.recorded = Vec::new();
                        } else {
                            state.recorded.push(Recorded::Data(data.clone()));
                        }
                    } else if let Some(trailers) = frame.trailers_ref() {
                        state.recorded.push(Recorded::Trailers(trailers.clone()));
                    }
                    self.position = state.recorded.len();
                }
                if end {
                    state.ended = true;
                    self.done = true;
                }
            }
            Poll::Ready(None) => {
                state.ended = true;
                self.done = true;
            }
            // A failed body is not replayed: the attempt fails with it.
            Poll::Ready(Some(Err(_))) => {
                state.overflowed = true;
                state.recorded = Vec::new();
                self.done = true;
            }
        }
        if let Some(waker) = state.waiting.take() {
            waker.wake();
        }
        drop(state);
        if !self.done {
            self.rest = Some(rest);
        }
        polled
    }
}

impl Body for ReplayBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        if this.done {
            return Poll::Ready(None);
        }
        if let Some(rest) = this.rest.take() {
            return this.poll_rest(cx, rest);
        }
        let mut state = this.shared.lock();
        if state.overflowed {
            this.done = true;
            return Poll::Ready(Some(Err(TooLarge(this.shared.limit).into())));
        }
        if let Some(recorded) = state.recorded.get(this.position) {
            this.position += 1;
            let frame = match recorded {
                Recorded::Data(data) => Frame::data(data.clone()),
                Recorded::Trailers(trailers) => Frame::trailers(trailers.clone()),
            };
            if state.ended && this.position == state.recorded.len() {
                this.done = true;
            }
            return Poll::Ready(Some(Ok(frame)));
        }
        if state.ended {
            this.done = true;
            return Poll::Ready(None);
        }
        match state.rest.take() {
            Some(rest) => {
                drop(state);
                this.poll_rest(cx, rest)
            }
            None => {
                state.waiting = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done
    }

    fn size_hint(&self) -> SizeHint {
        self.shared.size_hint
    }
}

impl Drop for ReplayBody {
    fn drop(&mut self) {
        if let Some(rest) = self.rest.take() {
            let mut state = self.shared.lock();
            state.rest = Some(rest);
            if let Some(waker) = state.waiting.take() {
                waker.wake();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use http_body_util::BodyExt;

    use super::*;
    use crate::body::{boxed, streamed};

    #[tokio::test]
    async fn a_body_within_the_bound_is_replayed_whole() {
        let (replay, first) = Replay::new(streamed(vec!["ab", "cd"]), 16).ok().unwrap();
        assert_eq!(first.collect().await.unwrap().to_bytes(), "abcd");
        assert!(replay.replayable());
        for _ in 0..2 {
            assert_eq!(replay.body().collect().await.unwrap().to_bytes(), "abcd");
        }
    }

    #[tokio::test]
    async fn a_later_attempt_reads_on_where_an_earlier_one_stopped() {
        let (replay, mut first) = Replay::new(streamed(vec!["ab", "cd", "ef"]), 16)
            .ok()
            .unwrap();
        assert_eq!(
            first.frame().await.unwrap().unwrap().into_data().unwrap(),
            "ab"
        );
        drop(first);
        assert!(replay.replayable());
        assert_eq!(replay.body().collect().await.unwrap().to_bytes(), "abcdef");
    }

    #[tokio::test]
    async fn a_body_past_the_bound_is_sent_once_and_not_replayed() {
        let (replay, first) = Replay::new(streamed(vec!["0123", "4567", "89"]), 6)
            .ok()
            .unwrap();
        assert_eq!(first.collect().await.unwrap().to_bytes(), "0123456789");
        assert!(!replay.replayable());
        assert!(replay.body().collect().await.is_err());

        // One announcing its size above the bound is not even wrapped.
        let full = boxed(http_body_util::Full::new(Bytes::from("0123456789")));
        assert!(Replay::new(full, 6).is_err());
    }

    #[tokio::test]
    async fn a_reader_waits_for_the_holder_then_takes_over() {
        let (replay, mut first) = Replay::new(streamed(vec!["ab", "cd"]), 16).ok().unwrap();
        first.frame().await.unwrap().unwrap();
        let second = tokio::spawn(replay.body().collect());
        tokio::task::yield_now().await;
        assert!(
            !second.is_finished(),
            "waits while the first attempt holds the rest"
        );
        drop(first);
        assert_eq!(second.await.unwrap().unwrap().to_bytes(), "abcd");
    }
}
