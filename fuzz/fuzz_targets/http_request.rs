//! Raw bytes through the real connection stack (hyper's HTTP/1 and h2c parsers, our
//! deadlines, service and routes) over an in-memory stream: never panics, never a
//! 5xx, and the task always finishes.
#![no_main]

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use greeting_service::budget::BodyBuffers;
use greeting_service::telemetry::metrics::{Connections, Metrics};
use greeting_service::server::drain::{Drain, Readiness};
use greeting_service::middleware::Middleware;
use greeting_service::routes::{Limits, Routes};
use greeting_service::server::connection::watchdog::Watchdog;
use greeting_service::server::connection::{self, Accepted, Builders, Timeouts};
use libfuzzer_sys::fuzz_target;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        greeting_service::server::runtime(greeting_service::config::Mode::PerCore, 1).unwrap()
    })
}

/// Built once, as the server builds it: its room lives for the rest of the
/// process, so one per input would leak one per input.
fn limits() -> Limits {
    static LIMITS: OnceLock<Limits> = OnceLock::new();
    *LIMITS.get_or_init(|| Limits::from_config(&greeting_service::config::Config::defaults()))
}

fn buffers() -> BodyBuffers {
    static BUFFERS: OnceLock<BodyBuffers> = OnceLock::new();
    *BUFFERS.get_or_init(|| BodyBuffers::new(256 << 20))
}

fuzz_target!(|input: &[u8]| {
    let rt = runtime();
    rt.block_on(async {
        let metrics = Metrics::new(Arc::new(Connections::default()));
        let buffers = buffers();
        let routes = Routes::new(limits(), Readiness::default(), metrics.clone(), buffers);
        let middleware = Arc::new(Middleware::new(routes, metrics, false));
        let builders = Builders::default();
        let (client, server) = tokio::io::duplex(64 * 1024);
        let drain = Drain::default();
        let timeouts = Timeouts {
            header: Duration::from_millis(50),
            idle: Duration::from_millis(50),
        };
        let watchdog = Watchdog::new(timeouts, Arc::new(Connections::default()));
        let serving = async {
            // What the server's peek at the first bytes would decide.
            let first = &input[..input.len().min(connection::protocol::SNIFF_BYTES)];
            let protocol = match connection::Protocol::from_first_bytes(first) {
                connection::FirstBytes::Speaks(protocol) => protocol,
                // The server would keep peeking; with no more bytes to come, HTTP/1.
                connection::FirstBytes::Undecided => connection::Protocol::Http1,
                // Closed unanswered: nothing for hyper to parse.
                connection::FirstBytes::NotHttp => return drop(server),
            };
            let accepted = Accepted {
                protocol,
                accepted: std::time::Instant::now(),
                peer: None,
                middleware,
                watchdog: watchdog.clone(),
                unread: connection::unread::Budget {
                    bytes: 16 * 1024,
                    within: timeouts.header,
                },
            };
            tokio::select! {
                () = accepted.serve(server, &builders) => {}
                () = watchdog.run(drain) => {}
            }
        };
        let talking = async {
            let (mut rd, mut wr) = tokio::io::split(client);
            let _ = wr.write_all(input).await;
            let _ = wr.shutdown().await;
            let mut out = Vec::new();
            let _ = rd.read_to_end(&mut out).await;
            out
        };
        let (_, out) = tokio::time::timeout(Duration::from_secs(5), async {
            tokio::join!(serving, talking)
        })
        .await
        .expect("the connection finishes");
        // No response from us is a server error (HTTP/1 status lines only; h2
        // frames are binary).
        let mut rest = &out[..];
        while let Some(at) = rest.windows(9).position(|w| w == b"HTTP/1.1 " || w == b"HTTP/1.0 ") {
            let code = &rest[at + 9..rest.len().min(at + 12)];
            assert!(code.first() != Some(&b'5'), "5xx: {}", String::from_utf8_lossy(&out));
            rest = &rest[at + 9..];
        }
    });
});
