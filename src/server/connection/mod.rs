//! One client connection, from its first byte to its close: the protocol
//! ([`protocol`]), the deadlines ([`deadline`]) and the drain signal, around
//! hyper's HTTP/1 or HTTP/2 connection.

pub mod deadline;
pub mod protocol;

use std::sync::Arc;
use std::time::{Duration, Instant};

use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::GracefulConnection;
use tokio::io::{AsyncRead, AsyncWrite};

use crate::base::shutdown::Drain;
use crate::base::types::Handler;
use crate::endpoint::Endpoint;
use deadline::{now_nanos, Activity, InFlight, Verdict, Watched};

pub use deadline::Timeouts;
pub use protocol::{Builders, Protocol};

type Incoming = hyper::body::Incoming;

/// Serves one connection until it closes, times out, or finishes after `drain`
/// starts. `accepted` is when the connection was accepted: the first head's deadline
/// counts from there.
#[allow(clippy::too_many_arguments)]
pub async fn serve<I, H>(
    io: I,
    protocol: Protocol,
    accepted: Instant,
    peer: Option<std::net::SocketAddr>,
    endpoint: Arc<Endpoint<H>>,
    builders: &Builders,
    timeouts: Timeouts,
    drain: Drain,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    H: Handler,
{
    let activity = Arc::new(Activity::new(accepted));
    let io = TokioIo::new(Watched::new(io, activity.clone()));
    let svc_activity = activity.clone();
    let svc = service_fn(move |req: http::Request<Incoming>| {
        svc_activity.request_started(req.version() == http::Version::HTTP_2);
        let in_flight = InFlight(svc_activity.clone());
        endpoint.call(req, peer, in_flight)
    });
    // The HTTP/1 connection lives inline in the task; the HTTP/2 one is boxed, so
    // its (larger) state does not make every connection's task as large as its: a
    // task is as big as its largest branch, and memory per idle connection is
    // mostly the task and hyper's buffers.
    match protocol {
        Protocol::Http1 => {
            let conn = builders.http1.serve_connection(io, svc);
            drive(conn, &activity, timeouts, drain).await
        }
        Protocol::Http2 => {
            let conn = builders.http2.serve_connection(io, svc);
            Box::pin(drive(conn, &activity, timeouts, drain)).await
        }
    }
}

/// Polls `conn` to completion while enforcing the connection deadlines and the
/// drain signal.
async fn drive<C>(conn: C, activity: &Activity, timeouts: Timeouts, drain: Drain)
where
    C: GracefulConnection,
    C::Error: std::fmt::Display,
{
    tokio::pin!(conn);
    let first = activity.verdict(&timeouts, now_nanos());
    let timer = tokio::time::sleep(match first {
        Verdict::WaitUntil(at) => Duration::from_nanos(at.saturating_sub(now_nanos())),
        _ => Duration::ZERO,
    });
    tokio::pin!(timer);
    let draining = drain.draining();
    tokio::pin!(draining);
    let mut closing = false;
    loop {
        tokio::select! {
            biased;
            result = conn.as_mut() => {
                if let Err(e) = result {
                    tracing::debug!(error = %e, "connection ended with an error");
                }
                return;
            }
            _ = draining.as_mut(), if !closing => {
                closing = true;
                conn.as_mut().graceful_shutdown();
            }
            () = timer.as_mut() => {
                if closing {
                    // A graceful close that the peer did not complete in time.
                    return;
                }
                match activity.verdict(&timeouts, now_nanos()) {
                    Verdict::HeadTimedOut => {
                        tracing::debug!("request head not received in time; closing");
                        return;
                    }
                    Verdict::IdleTimedOut => {
                        closing = true;
                        conn.as_mut().graceful_shutdown();
                        timer.as_mut().reset(tokio::time::Instant::now() + timeouts.header);
                    }
                    Verdict::WaitUntil(at) => {
                        let wait = Duration::from_nanos(at.saturating_sub(now_nanos()));
                        timer.as_mut().reset(tokio::time::Instant::now() + wait);
                    }
                }
            }
        }
    }
}
