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
//! HTTP/1 does not need this: hyper reads or discards the rest of an HTTP/1 body
//! itself, or closes the connection.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt as _;
use hyper::body::Incoming;

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
}

impl UnreadBody {
    pub fn new(inner: Incoming, budget: Budget) -> Self {
        Self {
            inner: Some(inner),
            polled: false,
            budget,
        }
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
            runtime.spawn(read_rest(body, self.budget));
        }
    }
}

/// Reads and drops the rest of a body, within its budget. An error means h2 has
/// reset the stream (PROTOCOL_ERROR for a malformed rest); past the budget the
/// body is dropped and h2 resets the stream with NO_ERROR, as it would have.
async fn read_rest(mut body: Incoming, budget: Budget) {
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
