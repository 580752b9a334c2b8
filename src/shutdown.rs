//! The shutdown signal: SIGTERM or SIGINT (Ctrl-C).
//!
//! Handled explicitly because a process running as PID 1 in a container has no
//! default signal dispositions: without this, `docker stop` would wait and kill.
//! The handlers are installed before the "listening" log line, so a signal sent as
//! soon as the service says it is up is never fatal.

use std::io;

/// Installed signal handlers; [`Signals::recv`] resolves on the first signal.
pub struct Signals {
    #[cfg(unix)]
    term: tokio::signal::unix::Signal,
    #[cfg(unix)]
    int: tokio::signal::unix::Signal,
}

impl Signals {
    /// Installs the handlers. Must be called within a tokio runtime context
    /// (`Runtime::enter`); the runtime must be running when the signal arrives.
    pub fn install() -> io::Result<Self> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            Ok(Self {
                term: signal(SignalKind::terminate())?,
                int: signal(SignalKind::interrupt())?,
            })
        }
        #[cfg(not(unix))]
        {
            Ok(Self {})
        }
    }

    /// Resolves when the process is asked to stop.
    pub async fn recv(mut self) {
        #[cfg(unix)]
        tokio::select! {
            _ = self.term.recv() => tracing::info!(signal = "SIGTERM", "shutdown requested"),
            _ = self.int.recv() => tracing::info!(signal = "SIGINT", "shutdown requested"),
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
            tracing::info!(signal = "ctrl-c", "shutdown requested");
        }
    }
}
