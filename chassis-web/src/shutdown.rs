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

/// Completes on SIGINT (Ctrl-C) or, on Unix, SIGTERM.
pub async fn os_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            // No signal handler can be installed: never complete from here.
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => tracing::info!("SIGINT received, shutting down"),
        () = term => tracing::info!("SIGTERM received, shutting down"),
    }
}
