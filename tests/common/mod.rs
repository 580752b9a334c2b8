//! The service as the integration tests and the benches (which include this file
//! by path) start it: through the library's composition root (`app`), the same
//! wiring the binary uses, with the documented defaults and a loopback port.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;

use greeting_service::app::{App, Stack};
use greeting_service::config::Config;
use greeting_service::handler::Handler;
use greeting_service::middleware::Middleware;
use greeting_service::server::ShutdownReport;
use greeting_service::telemetry::spans::Spans;

/// The documented defaults, on `127.0.0.1:0`, with `workers` per-core workers, a
/// 1 GiB memory budget whatever the test machine's cgroup says, and a short drain
/// (the tests that stop a server wait for it); `extra` flags on top.
pub fn config(workers: usize, extra: &[&str]) -> Config {
    let workers = workers.to_string();
    let base = [
        "greeting-service",
        "--host",
        "127.0.0.1",
        "--port",
        "0",
        "--workers",
        &workers,
        "--memory-budget",
        "1GiB",
        "--shutdown-timeout",
        "1s",
    ];
    Config::parse_without_environment(base.iter().chain(extra)).expect("test configuration")
}

/// The request path alone, as the binary wires it (no sockets, no threads).
pub fn stack(spans: Option<Spans>) -> Stack {
    let config = config(1, &[]);
    Stack::build(&config, &config.memory_plan(), spans)
}

/// The middleware the server runs, in process, with the documented defaults.
pub fn middleware() -> Arc<Middleware<greeting_service::routes::Routes>> {
    Arc::new(stack(None).middleware)
}

/// The app with the documented defaults, bound to a loopback port.
pub fn app(workers: usize) -> App {
    App::build(&config(workers, &[])).expect("the service starts")
}

/// The real server on `127.0.0.1:0`, serving in a thread of this process.
pub struct InProcess {
    pub addr: SocketAddr,
    stop: Option<tokio::sync::mpsc::UnboundedSender<()>>,
    thread: Option<std::thread::JoinHandle<ShutdownReport>>,
}

impl InProcess {
    /// Runs `app` in a new thread; `on_thread` runs there first.
    pub fn start<H: Handler + Clone>(
        app: App<H>,
        on_thread: impl FnOnce() + Send + 'static,
    ) -> Self {
        let addr = app.addr();
        let (stop, requests) = tokio::sync::mpsc::unbounded_channel::<()>();
        let thread = std::thread::spawn(move || {
            on_thread();
            app.run(requests).expect("the server runs")
        });
        Self {
            addr,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// The service with default settings behind the real server.
    pub fn routes(workers: usize) -> Self {
        Self::start(app(workers), || {})
    }

    /// Shuts the server down and returns its drain report.
    pub fn stop(mut self) -> ShutdownReport {
        self.finish().expect("server thread")
    }

    fn finish(&mut self) -> Option<ShutdownReport> {
        // One request to stop; the sender stays alive until the server has
        // finished, because a closed channel counts as asking again (which would
        // cut the drain).
        if let Some(stop) = &self.stop {
            let _ = stop.send(());
        }
        let report = self.thread.take().and_then(|t| t.join().ok());
        self.stop = None;
        report
    }
}

impl Drop for InProcess {
    fn drop(&mut self) {
        self.finish();
    }
}
