//! One client connection, from its first byte to its close ([`Started::serve`] is
//! its task): the protocol ([`protocol`]), what it is doing and the byte stream hyper reads
//! ([`activity`]), its deadlines ([`watchdog`]) and parking ([`parking`]),
//! around hyper's HTTP/1 or HTTP/2 connection.
//!
//! Idle plain HTTP/1 connections park ([`parking`]): hyper's buffers go back
//! until the socket is readable again.

pub mod activity;
pub mod parking;
pub mod protocol;
pub mod unread;
pub mod watchdog;

use std::convert::Infallible;
use std::future::{poll_fn, Future};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::GracefulConnection;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;

use crate::handler::{Handler, Response};
use crate::middleware::Middleware;
use crate::server::drain::Drain;
use crate::telemetry::metrics::Slot;
use activity::{alarm, Activity, InFlight, Watched};
use parking::{join, readable};
use watchdog::Watchdog;

pub use protocol::{Builders, FirstBytes, Protocol};
pub use watchdog::Timeouts;

type Incoming = hyper::body::Incoming;

/// A connection just accepted, before its protocol is known.
pub struct Started<H> {
    pub accepted: Instant,
    pub peer: SocketAddr,
    pub timeouts: Timeouts,
    pub max_body_bytes: usize,
    pub drain: Drain,
    pub middleware: Arc<Middleware<H>>,
    pub watchdog: Arc<Watchdog>,
    pub tls: Option<TlsAcceptor>,
    pub builders: Arc<Builders>,
    /// Its place under the connection cap, given back when the connection ends.
    pub slot: Slot,
}

impl<H: Handler> Started<H> {
    /// Learns the protocol (a peek at the first bytes, or the TLS handshake's ALPN)
    /// within the head deadline, then serves the connection. A drain that starts
    /// before the protocol is known ends the connection at once.
    ///
    /// This is the connection's task itself (spawned as it is, not inside another
    /// `async` block): every wake-up of the connection resumes each `async` layer
    /// it passes through.
    pub async fn serve(self, stream: TcpStream) {
        // Declared first, so dropped last: the slot is held until the socket is gone.
        let _slot = self.slot;
        let (tls, builders) = (self.tls, &*self.builders);
        let deadline = tokio::time::Instant::from_std(self.accepted + self.timeouts.header);
        let establish = async {
            match tls {
                None => Protocol::sniff(stream)
                    .await
                    .map(|(p, s)| (p, Io::Plain(s))),
                // Boxed: a handshake's state is large, and only TLS connections
                // should carry it.
                Some(tls) => Box::pin(tls.accept(stream)).await.map(|s| {
                    let protocol = Protocol::from_alpn(s.get_ref().1.alpn_protocol());
                    (protocol, Io::Tls(Box::new(s)))
                }),
            }
        };
        let established = tokio::select! {
            established = tokio::time::timeout_at(deadline, establish) => established,
            () = self.drain.draining() => {
                tracing::debug!("draining before the protocol was known; closing");
                return;
            }
        };
        let (protocol, io) = match established {
            Ok(Ok(established)) => established,
            Ok(Err(e)) => return tracing::debug!(error = %e, "connection failed before a request"),
            // Also when a refused non-HTTP client kept its side open (`sniff`).
            Err(_) => {
                return tracing::debug!("head deadline passed before a request began; closing")
            }
        };
        let accepted = Accepted {
            protocol,
            accepted: self.accepted,
            peer: Some(self.peer),
            middleware: self.middleware,
            watchdog: self.watchdog,
            unread: unread::Budget {
                bytes: self.max_body_bytes,
                within: self.timeouts.header,
            },
        };
        // Called here directly, not through a function that picks one: every
        // wake-up of the connection resumes each `async` layer it passes through.
        match (io, protocol) {
            (Io::Plain(s), Protocol::Http1) => accepted.serve_http1(s, builders).await,
            (Io::Plain(s), Protocol::Http2) => accepted.serve(s, builders).await,
            (Io::Tls(s), _) => accepted.serve(s, builders).await,
        }
    }
}

/// A connection's byte stream once its protocol is known.
enum Io {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::server::TlsStream<TcpStream>>),
}

/// A connection whose protocol is known, and what serving it needs.
pub struct Accepted<H> {
    pub protocol: Protocol,
    /// When the connection was accepted: the first head's deadline counts from it.
    pub accepted: Instant,
    pub peer: Option<std::net::SocketAddr>,
    pub middleware: Arc<Middleware<H>>,
    pub watchdog: Arc<Watchdog>,
    /// How much of an HTTP/2 body the handler did not read is read afterwards.
    pub unread: unread::Budget,
}

impl<H: Handler> Accepted<H> {
    /// Serves any byte stream (plain HTTP/2, TLS, or an in-memory one: the fuzz
    /// target drives it over `tokio::io::duplex`) without parking.
    pub async fn serve<I>(self, io: I, builders: &Builders)
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let activity = Activity::new(self.accepted, &self.watchdog, false);
        let io = TokioIo::new(Watched::new(io, activity.clone(), Bytes::new()));
        // The HTTP/2 connection is boxed, so its (larger) state does not make every
        // connection's task as large as its: a task is as big as its largest state.
        match self.protocol {
            Protocol::Http1 => {
                let svc = self.service(&activity);
                let mut conn = Box::pin(builders.http1.serve_connection(io, svc));
                drive(conn.as_mut(), &activity).await;
            }
            Protocol::Http2 => {
                let svc = self.http2_service(&activity);
                let mut conn = Box::pin(builders.http2.serve_connection(io, svc));
                drive(conn.as_mut(), &activity).await;
            }
        }
    }

    /// Serves a plain HTTP/1 connection until it closes, times out, or finishes
    /// after the drain starts: inside hyper while busy, parked as a bare socket
    /// while idle.
    async fn serve_http1(self, mut stream: TcpStream, builders: &Builders) {
        let activity = Activity::new(self.accepted, &self.watchdog, true);
        let svc = self.service(&activity);
        let mut prefix = Bytes::new();
        loop {
            let io = TokioIo::new(Watched::new(stream, activity.clone(), prefix));
            let mut conn = Box::new(builders.http1.serve_connection(io, svc.clone()));
            if let Ended::Closed = drive(Pin::new(&mut *conn), &activity).await {
                return;
            }
            // Parked: hyper's state is dropped here; keep only the socket and any
            // bytes hyper had read but not used.
            let parts = conn.into_parts();
            let (bare, unread) = parts.io.into_inner().into_parts();
            stream = bare;
            prefix = join(unread, parts.read_buf);
            if prefix.is_empty() {
                let _parked = self.watchdog.connections.parked();
                if !readable(&stream, &activity).await {
                    return;
                }
            }
        }
    }

    /// The hyper service for this connection: marks requests in flight and hands
    /// them to the middleware.
    fn service(
        &self,
        activity: &Arc<Activity>,
    ) -> impl hyper::service::Service<
        http::Request<Incoming>,
        Response = Response,
        Error = Infallible,
        Future: Send + Unpin + 'static,
    > + Clone
           + Send
           + Unpin
           + 'static {
        let (activity, middleware, peer) = (activity.clone(), self.middleware.clone(), self.peer);
        service_fn(move |req: http::Request<Incoming>| {
            activity.request_started(req.version() == http::Version::HTTP_2);
            middleware.call(req, peer, InFlight(activity.clone()))
        })
    }
}

impl<H: Handler> Accepted<H> {
    /// The HTTP/2 service: bodies the handler does not read are read afterwards
    /// (see [`unread`]), and a request without `:path` is refused with
    /// PROTOCOL_ERROR (RFC 9113 section 8.3.1), which h2 0.4 lets through when
    /// `:authority` is missing too (docs/upstream/h2-missing-path.md).
    fn http2_service(
        &self,
        activity: &Arc<Activity>,
    ) -> impl hyper::service::Service<
        http::Request<Incoming>,
        Response = http::Response<unread::HeldEnd>,
        Error = h2::Error,
        Future: Send + Unpin + 'static,
    > + Clone
           + Send
           + Unpin
           + 'static {
        let (activity, middleware, peer) = (activity.clone(), self.middleware.clone(), self.peer);
        let budget = self.unread;
        service_fn(move |req: http::Request<Incoming>| {
            if req.uri().path().is_empty() && req.method() != http::Method::CONNECT {
                return Http2Call::Refused;
            }
            activity.request_started(true);
            let (parts, body) = req.into_parts();
            let (body, end) = unread::UnreadBody::new(body, budget);
            let req = http::Request::from_parts(parts, body);
            Http2Call::Served(middleware.call(req, peer, InFlight(activity.clone())), end)
        })
    }
}

/// An HTTP/2 request's answer: the middleware's, its end held until the request
/// body is over ([`unread::HeldEnd`]), or a stream error.
enum Http2Call<F> {
    Refused,
    Served(F, Option<tokio::sync::oneshot::Receiver<()>>),
}

impl<F> Future for Http2Call<F>
where
    F: Future<Output = Result<Response, Infallible>> + Unpin,
{
    type Output = Result<http::Response<unread::HeldEnd>, h2::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.get_mut() {
            Self::Refused => Poll::Ready(Err(h2::Error::from(h2::Reason::PROTOCOL_ERROR))),
            Self::Served(answer, end) => Pin::new(answer).poll(cx).map(|Ok(response)| {
                Ok(response.map(|body| unread::HeldEnd::new(body, end.take())))
            }),
        }
    }
}

/// How a hyper connection ended.
enum Ended {
    Closed,
    /// At a request boundary, with the socket still open (parking).
    Parked,
}

/// Polls `conn` to completion, acting on the alarms the watchdog and the drain
/// raise: one atomic load per wake-up when there are none.
///
/// A plain function returning the future, not an `async fn` around it: every
/// wake-up of the connection resumes each `async` layer it passes through.
fn drive<'a, C>(
    mut conn: Pin<&'a mut C>,
    activity: &'a Activity,
) -> impl Future<Output = Ended> + 'a
where
    C: GracefulConnection + 'a,
    C::Error: std::fmt::Display,
{
    let mut waiting = false;
    let (mut closing, mut parking) = (false, false);
    poll_fn(move |cx| {
        if !waiting {
            activity.set_waker(cx.waker());
            waiting = true;
        }
        loop {
            if let Poll::Ready(result) = conn.as_mut().poll(cx) {
                let parked = result.is_ok() && parking && !closing && activity.park_requested();
                if let Err(e) = result {
                    tracing::debug!(error = %e, "connection ended with an error");
                }
                return Poll::Ready(if parked { Ended::Parked } else { Ended::Closed });
            }
            let raised = activity.take_alarm();
            if raised == 0 {
                return Poll::Pending;
            }
            if raised & (alarm::HEAD_EXPIRED | alarm::CUT) != 0 {
                tracing::debug!(alarm = raised, "deadline passed; closing");
                return Poll::Ready(Ended::Closed);
            }
            if raised & (alarm::DRAIN | alarm::IDLE_EXPIRED) != 0 && !closing {
                closing = true;
                activity.closing();
                conn.as_mut().graceful_shutdown();
            } else if raised & alarm::PARK != 0
                && !parking
                && !closing
                && activity.park_requested()
                && activity.phase() == activity::Phase::Idle
            {
                // Idle in hyper's view too (no request in flight): hyper closes
                // at once, keeping unread bytes for `into_parts`.
                parking = true;
                conn.as_mut().graceful_shutdown();
            }
        }
    })
}
