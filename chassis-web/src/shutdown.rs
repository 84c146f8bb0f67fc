//! Shutdown signalling.

use tokio_util::sync::CancellationToken;

/// Triggers a graceful shutdown of a running service (tests, embedded demos,
/// an admin endpoint). Cloneable; triggering twice is harmless.
#[derive(Debug, Clone, Default)]
pub struct ShutdownHandle {
    token: CancellationToken,
}

impl ShutdownHandle {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// Begins the graceful shutdown.
    pub fn trigger(&self) {
        self.token.cancel();
    }

    /// Whether shutdown was triggered.
    pub fn is_triggered(&self) -> bool {
        self.token.is_cancelled()
    }

    /// Completes once shutdown was triggered.
    pub async fn triggered(&self) {
        self.token.cancelled().await;
    }
}

/// What background tasks watch: it fires once HTTP has drained and the
/// bus' consumers have stopped, and the host wants the tasks to finish
/// (before the outbox relay's last flush, so what they write is still
/// published). Cloneable.
#[derive(Debug, Clone, Default)]
pub struct ShutdownSignal {
    token: CancellationToken,
}

impl ShutdownSignal {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    pub(crate) fn fire(&self) {
        self.token.cancel();
    }

    /// Whether the task should stop now.
    pub fn is_stopping(&self) -> bool {
        self.token.is_cancelled()
    }

    /// Completes when the task should stop; use it in a `tokio::select!`.
    pub async fn stopping(&self) {
        self.token.cancelled().await;
    }
}

/// Completes on SIGINT (Ctrl-C) or, on Unix, SIGTERM (caught from the first
/// poll on; [`ServiceHostBuilder::run`](crate::ServiceHostBuilder::run)
/// catches them from before start-up).
pub async fn os_signal() {
    OsSignals::listen().recv().await;
}

/// SIGINT and SIGTERM, caught from the moment this is made. The host makes
/// it before it starts anything: its consumers may handle messages before
/// start-up has finished, and a SIGTERM then must not kill the process
/// mid-handler (the default action) but shut it down gracefully once it is
/// up.
pub(crate) struct OsSignals {
    #[cfg(unix)]
    interrupt: Option<tokio::signal::unix::Signal>,
    #[cfg(unix)]
    terminate: Option<tokio::signal::unix::Signal>,
}

impl OsSignals {
    /// Installs the handlers now (needs the runtime).
    pub(crate) fn listen() -> Self {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            Self {
                interrupt: signal(SignalKind::interrupt()).ok(),
                terminate: signal(SignalKind::terminate()).ok(),
            }
        }
        #[cfg(not(unix))]
        Self {}
    }

    /// Completes at the first signal (at once for one that came already).
    pub(crate) async fn recv(self) {
        #[cfg(unix)]
        {
            // A handler that could not be installed never completes.
            async fn next(signal: Option<tokio::signal::unix::Signal>) {
                match signal {
                    Some(mut signal) => {
                        signal.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            }
            tokio::select! {
                () = next(self.interrupt) => tracing::info!("SIGINT received, shutting down"),
                () = next(self.terminate) => tracing::info!("SIGTERM received, shutting down"),
            }
        }
        #[cfg(not(unix))]
        {
            if tokio::signal::ctrl_c().await.is_err() {
                std::future::pending::<()>().await;
            }
            tracing::info!("SIGINT received, shutting down");
        }
    }
}
