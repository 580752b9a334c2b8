//! HTTP/2 request bodies the handler did not read.
//!
//! When the service answers from the head alone (the probes, 404, 405, 415), hyper
//! drops the request body unread and h2 resets the stream with NO_ERROR, then
//! ignores what the client still sends on it. RFC 9113 section 8.1.1 wants a
//! malformed stream (DATA beyond or short of its `content-length`, a second HEADERS
//! without END_STREAM) to end in PROTOCOL_ERROR however the server answers, so an
//! unread body is read to its end after the answer, in a task of its own, bounded
//! by the body limit and the head deadline: h2 keeps validating the stream and
//! resets it with PROTOCOL_ERROR when the rest is malformed. A body the handler
//! did poll (read, or given up with 413 or 408) is left alone.
//!
//! While that rest is read the answer's end (END_STREAM) is held back
//! ([`HeldEnd`]): h2 stops looking at a stream's flow control once the answer is
//! complete, so a WINDOW_UPDATE overflowing the stream's window (RFC 9113 section
//! 6.9.1) would otherwise be refused or not depending on which frame came first.
//! Holding the end keeps the server a sender until the request is over, and the
//! overflow is refused with FLOW_CONTROL_ERROR however the frames are timed.
//!
//! HTTP/1 does not need this: hyper reads or discards the rest of an HTTP/1 body
//! itself, or closes the connection.

use std::future::Future as _;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt as _;
use hyper::body::Incoming;
use tokio::sync::oneshot;

use crate::handler::Body as ResponseBody;

/// How much of an unread body is read after the answer, and for how long.
#[derive(Debug, Clone, Copy)]
pub struct Budget {
    /// `MAX_BODY_BYTES`: a body declared larger was refused with 413 unread.
    pub bytes: usize,
    /// `HEADER_TIMEOUT`.
    pub within: Duration,
}

/// An HTTP/2 request body that is read to its end even if the handler does not.
pub struct UnreadBody {
    inner: Option<Incoming>,
    polled: bool,
    budget: Budget,
    /// Dropped once the body is over: read by the handler, read here, or given up.
    over: Option<oneshot::Sender<()>>,
}

impl UnreadBody {
    /// The body, and for one that is not over yet, what the answer's
    /// [`HeldEnd`] waits for.
    pub fn new(inner: Incoming, budget: Budget) -> (Self, Option<oneshot::Receiver<()>>) {
        // Nothing will be read after the answer for a body already over, or one
        // declared over the limit (refused with 413 unread): no end to hold.
        let (over, end) =
            if inner.is_end_stream() || inner.size_hint().lower() > budget.bytes as u64 {
                (None, None)
            } else {
                let (tx, rx) = oneshot::channel();
                (Some(tx), Some(rx))
            };
        let body = Self {
            inner: Some(inner),
            polled: false,
            budget,
            over,
        };
        (body, end)
    }
}

impl Body for UnreadBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = &mut *self;
        this.polled = true;
        match this.inner.as_mut() {
            Some(body) => Pin::new(body).poll_frame(cx),
            None => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.as_ref().is_none_or(Body::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        self.inner
            .as_ref()
            .map_or_else(|| SizeHint::with_exact(0), Body::size_hint)
    }
}

impl Drop for UnreadBody {
    fn drop(&mut self) {
        let Some(body) = self.inner.take() else {
            return;
        };
        if self.polled
            || body.is_end_stream()
            || body.size_hint().lower() > self.budget.bytes as u64
        {
            return;
        }
        // A drop outside the runtime (at shutdown): h2 resets the stream as before.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(read_rest(body, self.budget, self.over.take()));
        }
    }
}

/// Reads and drops the rest of a body, within its budget. An error means h2 has
/// reset the stream (PROTOCOL_ERROR for a malformed rest); past the budget the
/// body is dropped and h2 resets the stream with NO_ERROR, as it would have.
/// `over` is dropped when it returns, releasing the answer's end.
async fn read_rest(mut body: Incoming, budget: Budget, over: Option<oneshot::Sender<()>>) {
    let _over = over;
    let mut left = budget.bytes;
    let _ = tokio::time::timeout(budget.within, async {
        while let Some(frame) = body.frame().await {
            let Ok(frame) = frame else { return };
            let n = frame.data_ref().map_or(0, Bytes::len);
            if n > left {
                return;
            }
            left -= n;
        }
    })
    .await;
}

/// An HTTP/2 answer whose end waits until the request body is over (see the
/// module documentation). The answer's bytes go out at once; only the frame
/// carrying END_STREAM waits, bounded by the reading of the rest.
pub struct HeldEnd {
    body: ResponseBody,
    end: Option<oneshot::Receiver<()>>,
}

impl HeldEnd {
    pub fn new(body: ResponseBody, end: Option<oneshot::Receiver<()>>) -> Self {
        Self { body, end }
    }
}

impl Body for HeldEnd {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        if let Some(frame) = std::task::ready!(Pin::new(&mut this.body).poll_frame(cx)) {
            return Poll::Ready(Some(frame));
        }
        if let Some(end) = this.end.as_mut() {
            // Sent or dropped, the request body is over either way.
            let _ = std::task::ready!(Pin::new(end).poll(cx));
            this.end = None;
        }
        Poll::Ready(None)
    }

    fn is_end_stream(&self) -> bool {
        self.end.is_none() && self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn poll_once(
        body: &mut HeldEnd,
    ) -> Poll<Option<Result<Frame<Bytes>, std::convert::Infallible>>> {
        let mut cx = Context::from_waker(std::task::Waker::noop());
        Pin::new(body).poll_frame(&mut cx)
    }

    #[test]
    fn the_answer_goes_out_at_once_and_its_end_waits_for_the_request_body() {
        let (over, end) = oneshot::channel();
        let mut body = HeldEnd::new(ResponseBody::new(Bytes::from_static(b"ok")), Some(end));
        assert!(!body.is_end_stream());
        match poll_once(&mut body) {
            Poll::Ready(Some(Ok(frame))) => assert_eq!(frame.into_data().ok().unwrap(), "ok"),
            other => panic!("expected the data at once, got {other:?}"),
        }
        assert!(poll_once(&mut body).is_pending());
        drop(over);
        assert!(matches!(poll_once(&mut body), Poll::Ready(None)));
        assert!(body.is_end_stream());
    }

    #[test]
    fn without_a_body_to_wait_for_the_answer_ends_with_its_data() {
        let mut body = HeldEnd::new(ResponseBody::new(Bytes::from_static(b"ok")), None);
        assert!(matches!(poll_once(&mut body), Poll::Ready(Some(Ok(_)))));
        assert!(body.is_end_stream());
        assert!(matches!(poll_once(&mut body), Poll::Ready(None)));
    }
}
