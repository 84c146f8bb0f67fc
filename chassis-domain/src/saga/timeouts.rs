//! The timeout scheduler: a background task firing due saga deadlines.

use thiserror::Error;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::runner::Sweep;
use super::{Saga, SagaRunner};

/// The scheduler task stopped abnormally (it panicked).
#[derive(Debug, Error)]
#[error("the saga timeout scheduler failed: {0}")]
pub struct SagaTimeoutsError(String);

/// A running timeout scheduler of one saga. Stop it with
/// [`shutdown`](Self::shutdown); dropping the handle leaves the task
/// running until the runtime ends.
#[derive(Debug)]
pub struct SagaTimeouts {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl SagaTimeouts {
    /// Stops the scheduler after the poll in progress, if any.
    pub async fn shutdown(self) -> Result<(), SagaTimeoutsError> {
        let _ = self.stop.send(true);
        self.task
            .await
            .map_err(|e| SagaTimeoutsError(e.to_string()))
    }

    /// Whether the task still runs.
    pub fn is_running(&self) -> bool {
        !self.task.is_finished()
    }
}

impl<S: Saga> SagaRunner<S> {
    /// Spawns the timeout scheduler on the current tokio runtime: every
    /// [`SagaConfig::timeout_poll_interval`](super::SagaConfig) it fires the
    /// due deadlines ([`fire_due_timeouts`](Self::fire_due_timeouts)). The
    /// first poll runs at once, so deadlines that passed while the service
    /// was down fire right after start; it reads every armed instance
    /// instead of the store's due-list, so instances armed before the
    /// deadline was indexed fire too. Several processes may run one each
    /// over the same store: a deadline still fires once (versioned write).
    pub fn start_timeouts(&self) -> SagaTimeouts {
        let runner = self.clone();
        let (stop_tx, mut stop) = watch::channel(false);
        let task = tokio::spawn(async move {
            tracing::debug!(saga = S::NAME, "saga timeout scheduler started");
            let mut sweep = Sweep::Armed;
            while !*stop.borrow() {
                let result = runner.fire_timeouts(sweep).await;
                if result.is_ok() {
                    sweep = Sweep::Due;
                }
                match result {
                    Ok(0) => {}
                    Ok(fired) => tracing::debug!(saga = S::NAME, fired, "saga timeouts fired"),
                    Err(error) => {
                        tracing::warn!(saga = S::NAME, %error, "saga timeout poll failed")
                    }
                }
                tokio::select! {
                    _ = stop.changed() => {}
                    _ = tokio::time::sleep(runner.config().timeout_poll_interval) => {}
                }
            }
            tracing::debug!(saga = S::NAME, "saga timeout scheduler stopped");
        });
        SagaTimeouts {
            stop: stop_tx,
            task,
        }
    }
}
