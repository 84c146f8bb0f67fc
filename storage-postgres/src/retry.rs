//! Retrying operations that failed for a transient reason.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use crate::error::{is_connection_loss, is_retryable};
use crate::liveness::Liveness;

/// How often and how patiently to retry (from `storage.postgres.retry_attempts`).
#[derive(Debug, Clone)]
pub(crate) struct Retry {
    /// Tries in all (at least 1).
    pub(crate) attempts: u32,
    /// Pause after the first failure; doubled after each further one.
    pub(crate) first_delay: Duration,
    /// Longest pause.
    pub(crate) max_delay: Duration,
    /// Told of every connection loss, so the retry gets a tested connection.
    pub(crate) liveness: Arc<Liveness>,
}

impl Retry {
    pub(crate) fn new(attempts: u32, liveness: Arc<Liveness>) -> Self {
        Self {
            attempts: attempts.max(1),
            first_delay: Duration::from_millis(50),
            max_delay: Duration::from_secs(2),
            liveness,
        }
    }

    /// Runs `op` until it succeeds, fails for a non-transient reason, or the
    /// attempts are used up. Only for operations that are safe to repeat
    /// (reads, acquiring and beginning, idempotent updates).
    pub(crate) async fn run<T, F, Fut>(&self, what: &str, mut op: F) -> Result<T, sqlx::Error>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, sqlx::Error>>,
    {
        let mut delay = self.first_delay;
        let mut attempt = 1;
        loop {
            let error = match op().await {
                Ok(value) => return Ok(value),
                Err(error) => error,
            };
            if is_connection_loss(&error) {
                self.liveness.lost();
            }
            if attempt >= self.attempts || !is_retryable(&error) {
                return Err(error);
            }
            tracing::warn!(
                operation = what,
                attempt,
                error = %error,
                "transient PostgreSQL error; retrying in {delay:?}"
            );
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(self.max_delay);
            attempt += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    fn reset() -> sqlx::Error {
        sqlx::Error::Io(std::io::Error::from(std::io::ErrorKind::ConnectionReset))
    }

    fn quick(attempts: u32) -> Retry {
        Retry {
            first_delay: Duration::from_millis(1),
            ..Retry::new(attempts, Arc::default())
        }
    }

    #[tokio::test]
    async fn retries_transient_errors_until_success() {
        let calls = AtomicU32::new(0);
        let result = quick(3)
            .run("test", || async {
                if calls.fetch_add(1, Ordering::SeqCst) < 2 {
                    Err(reset())
                } else {
                    Ok(7)
                }
            })
            .await;
        assert_eq!(result.unwrap(), 7);
        assert_eq!(calls.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn gives_up_after_the_attempts() {
        let calls = AtomicU32::new(0);
        let result: Result<(), _> = quick(2)
            .run("test", || async {
                calls.fetch_add(1, Ordering::SeqCst);
                Err(reset())
            })
            .await;
        assert!(result.is_err());
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_lost_connection_makes_idle_connections_be_tested() {
        let retry = quick(2);
        let idle_a_moment = Duration::from_millis(1);
        assert!(!retry.liveness.needs_test(idle_a_moment));
        let result: Result<(), _> = retry
            .run("test", || async { Err(sqlx::Error::RowNotFound) })
            .await;
        assert!(result.is_err());
        assert!(
            !retry.liveness.needs_test(idle_a_moment),
            "a statement's error says nothing about the connections"
        );
        let result: Result<(), _> = retry.run("test", || async { Err(reset()) }).await;
        assert!(result.is_err());
        assert!(
            retry.liveness.needs_test(Duration::from_millis(900)),
            "a connection idle since before the loss is tested"
        );
    }

    #[tokio::test]
    async fn does_not_retry_permanent_errors() {
        let calls = AtomicU32::new(0);
        let result: Result<(), _> = quick(5)
            .run("test", || async {
                calls.fetch_add(1, Ordering::SeqCst);
                Err(sqlx::Error::RowNotFound)
            })
            .await;
        assert!(result.is_err());
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }
}
