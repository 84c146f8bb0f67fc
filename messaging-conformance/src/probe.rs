//! Recording handlers: what the suite's consumers saw, and ways to await it.

use std::future::Future;
use std::pin::pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use messaging_abstractions::{Delivery, HandlerError, MessageHandler};
use tokio::sync::Notify;
use tokio::time::Instant;
use uuid::Uuid;

/// One delivery a probe handler finished.
#[derive(Debug, Clone)]
pub(crate) struct Record {
    /// Which consumer (bus instance) handled it.
    pub(crate) consumer: usize,
    pub(crate) delivery: Delivery,
    /// When the handler was entered.
    pub(crate) at: Instant,
    pub(crate) result: Result<(), HandlerError>,
}

#[derive(Default)]
pub(crate) struct Log {
    /// Deliveries whose handler has started, by consumer.
    pub(crate) started: Vec<(usize, Uuid)>,
    pub(crate) finished: Vec<Record>,
}

impl Log {
    pub(crate) fn handled(&self, id: Uuid) -> usize {
        self.finished
            .iter()
            .filter(|r| r.delivery.envelope.message_id == id && r.result.is_ok())
            .count()
    }

    pub(crate) fn deliveries(&self, id: Uuid) -> Vec<&Record> {
        self.finished
            .iter()
            .filter(|r| r.delivery.envelope.message_id == id)
            .collect()
    }

    pub(crate) fn by_consumer(&self, consumer: usize) -> usize {
        self.finished
            .iter()
            .filter(|r| r.consumer == consumer)
            .count()
    }
}

/// The shared log of a test case, with change notification.
#[derive(Default)]
pub(crate) struct Recorder {
    log: Mutex<Log>,
    changed: Notify,
}

impl Recorder {
    pub(crate) fn log(&self) -> MutexGuard<'_, Log> {
        // A poisoned lock only means another handler panicked; the log is
        // still meaningful.
        self.log.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn started(&self, consumer: usize, id: Uuid) {
        self.log().started.push((consumer, id));
        self.changed.notify_waiters();
    }

    fn finished(&self, record: Record) {
        self.log().finished.push(record);
        self.changed.notify_waiters();
    }

    /// Waits until `done` holds on the log; `Err(what)` after `timeout`.
    pub(crate) async fn wait(
        &self,
        what: &str,
        timeout: Duration,
        mut done: impl FnMut(&Log) -> bool,
    ) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        loop {
            let mut changed = pin!(self.changed.notified());
            changed.as_mut().enable();
            if done(&self.log()) {
                return Ok(());
            }
            if tokio::time::timeout_at(deadline, changed).await.is_err() {
                return if done(&self.log()) {
                    Ok(())
                } else {
                    Err(format!("{what}: not seen within {timeout:?}"))
                };
            }
        }
    }
}

/// A handler that records every delivery around the behaviour `f`.
pub(crate) struct Probe<F> {
    pub(crate) consumer: usize,
    pub(crate) recorder: Arc<Recorder>,
    pub(crate) f: F,
}

#[async_trait]
impl<F, Fut> MessageHandler for Probe<F>
where
    F: Fn(Delivery) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), HandlerError>> + Send + 'static,
{
    async fn handle(&self, delivery: &Delivery) -> Result<(), HandlerError> {
        let at = Instant::now();
        self.recorder
            .started(self.consumer, delivery.envelope.message_id);
        let result = (self.f)(delivery.clone()).await;
        self.recorder.finished(Record {
            consumer: self.consumer,
            delivery: delivery.clone(),
            at,
            result: result.clone(),
        });
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use messaging_abstractions::Envelope;

    fn delivery() -> Delivery {
        Delivery {
            envelope: Envelope::new("t.v1", "application/json", b"{}".to_vec()),
            group: "g".into(),
            attempt: 1,
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn probes_record_and_waits_wake_up() {
        let recorder = Arc::new(Recorder::default());
        let probe = Probe {
            consumer: 3,
            recorder: recorder.clone(),
            f: |_d: Delivery| std::future::ready(Err(HandlerError::permanent("no"))),
        };
        let d = delivery();
        let id = d.envelope.message_id;
        let waiter = {
            let recorder = recorder.clone();
            tokio::spawn(async move {
                recorder
                    .wait("one delivery", Duration::from_secs(10), |log| {
                        log.deliveries(id).len() == 1
                    })
                    .await
            })
        };
        assert!(probe.handle(&d).await.is_err());
        waiter.await.unwrap().unwrap();
        let log = recorder.log();
        assert_eq!(log.started, [(3, id)]);
        assert_eq!((log.handled(id), log.by_consumer(3)), (0, 1));
    }

    #[tokio::test]
    async fn a_wait_that_times_out_says_what_it_waited_for() {
        let recorder = Recorder::default();
        let err = recorder
            .wait("the impossible", Duration::from_millis(10), |_| false)
            .await
            .unwrap_err();
        assert_eq!(err, "the impossible: not seen within 10ms");
    }
}
