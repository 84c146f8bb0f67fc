//! The broker shared by every connection ([`crate::InMemoryBus`] clone):
//! group queues, bindings, dead letters, counters.

use std::collections::{BTreeSet, HashMap};
use std::panic::AssertUnwindSafe;
use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, SystemTime};

use crate::InMemoryConfig;
use async_trait::async_trait;
use bytes::Bytes;
use futures::FutureExt;
use messaging_abstractions::{
    DeadLetter, DeadLetterStore, Delivery, Envelope, HandlerError, Handlers, MessagingConfig,
    PublishError,
};
use parking_lot::{Mutex, RwLock};
use tokio::sync::Notify;
use uuid::Uuid;

use crate::observe::{BrokerStats, Counters, DeliveryOutcome, Observers, Outcome};
use crate::queue::{BoundedQueue, Queued};
use crate::replies::Inboxes;
use crate::wire;

/// A consumer group: its queue, the event types bound to it, its counters.
pub(crate) struct Group {
    pub(crate) name: String,
    pub(crate) queue: BoundedQueue,
    pub(crate) counters: Counters,
}

pub(crate) struct Broker {
    pub(crate) config: MessagingConfig,
    pub(crate) settings: InMemoryConfig,
    groups: RwLock<HashMap<String, Arc<Group>>>,
    /// Event type → the groups bound to it. A slice behind an `Arc` so that a
    /// publish clones one pointer, not a list.
    bindings: RwLock<HashMap<String, Arc<[Arc<Group>]>>>,
    dead_letters: Mutex<Vec<DeadLetter>>,
    unroutable: AtomicU64,
    pub(crate) observers: Observers,
    /// Signalled on every outcome while someone waits on the stats.
    changed: Notify,
    stat_waiters: AtomicUsize,
    /// Reply addresses of the connections (request/response).
    pub(crate) inboxes: Inboxes,
}

impl Broker {
    pub(crate) fn new(config: MessagingConfig, settings: InMemoryConfig) -> Self {
        Self {
            config,
            settings,
            groups: RwLock::default(),
            bindings: RwLock::default(),
            dead_letters: Mutex::default(),
            unroutable: AtomicU64::new(0),
            observers: Observers::default(),
            changed: Notify::new(),
            stat_waiters: AtomicUsize::new(0),
            inboxes: Inboxes::default(),
        }
    }

    /// The group named `name`, created on first use. Groups live as long as
    /// the broker, like durable queues: messages keep arriving while a
    /// service restarts its consumers.
    pub(crate) fn group(&self, name: &str) -> Arc<Group> {
        if let Some(g) = self.groups.read().get(name) {
            return g.clone();
        }
        self.groups
            .write()
            .entry(name.to_owned())
            .or_insert_with(|| {
                Arc::new(Group {
                    name: name.to_owned(),
                    queue: BoundedQueue::new(self.settings.queue_capacity),
                    counters: Counters::default(),
                })
            })
            .clone()
    }

    /// Binds `group` to each of `event_types` (idempotent).
    pub(crate) fn bind<'a>(&self, group: &Arc<Group>, event_types: impl Iterator<Item = &'a str>) {
        let mut bindings = self.bindings.write();
        for event_type in event_types {
            let current = bindings.get(event_type);
            if current.is_some_and(|gs| gs.iter().any(|g| Arc::ptr_eq(g, group))) {
                continue;
            }
            let mut next: Vec<Arc<Group>> = current.map(|gs| gs.to_vec()).unwrap_or_default();
            next.push(group.clone());
            bindings.insert(event_type.to_owned(), next.into());
        }
    }

    fn route(&self, event_type: &str) -> Option<Arc<[Arc<Group>]>> {
        self.bindings.read().get(event_type).cloned()
    }

    /// Encodes `envelope` and appends it to the queue of every bound group,
    /// waiting (bounded) for room.
    pub(crate) async fn publish(&self, envelope: &Envelope) -> Result<(), PublishError> {
        self.publish_routed(envelope, false).await
    }

    /// [`Broker::publish`]; when `mandatory`, a message no group is bound to
    /// is [`PublishError::Unroutable`] instead of dropped (as a broker returns
    /// a mandatory message).
    pub(crate) async fn publish_routed(
        &self,
        envelope: &Envelope,
        mandatory: bool,
    ) -> Result<(), PublishError> {
        let Some(groups) = self.route(&envelope.event_type) else {
            if mandatory {
                return Err(PublishError::Unroutable {
                    message_id: envelope.message_id,
                    event_type: envelope.event_type.clone(),
                });
            }
            self.unroutable.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(
                event_type = %envelope.event_type,
                message_id = %envelope.message_id,
                "no consumer group bound to this event type: message dropped"
            );
            return Ok(());
        };
        let frame = Bytes::from(wire::encode(envelope));
        let key: Option<Arc<str>> = envelope.partition_key.as_deref().map(Arc::from);
        let timeout = self.settings.publish_timeout;
        let mut frames = std::iter::repeat_n(frame, groups.len());
        for group in groups.iter() {
            // `repeat_n` moves the frame into the last group instead of
            // cloning it: the common single-group route shares nothing.
            let Some(frame) = frames.next() else { break };
            let item = Queued {
                frame,
                attempt: 1,
                key: key.clone(),
            };
            if group.queue.push(item, timeout).await.is_err() {
                return Err(PublishError::Unavailable(format!(
                    "queue of group `{}` stayed full ({} messages) for {timeout:?}",
                    group.name,
                    group.queue.capacity()
                )));
            }
        }
        self.changed();
        Ok(())
    }

    /// Handles one message taken from `group`'s queue: decode, dispatch,
    /// then acknowledge, schedule a retry or dead-letter.
    pub(crate) async fn deliver(
        self: &Arc<Self>,
        group: &Arc<Group>,
        handlers: &Handlers,
        item: Queued,
    ) {
        // In flight before it stops counting as waiting: never neither, so
        // `wait_idle` cannot see a taken message as gone.
        group.counters.in_flight.fetch_add(1, Ordering::AcqRel);
        group.queue.started();
        self.changed();
        let attempt = item.attempt;
        let envelope = match wire::decode(&item.frame) {
            Ok(envelope) => envelope,
            Err(e) => {
                // Only a corrupted frame gets here; keep the raw bytes.
                let mut raw =
                    Envelope::new("unknown", "application/octet-stream", item.frame.to_vec());
                raw.message_id = Uuid::nil();
                let failure = HandlerError::undecodable(e);
                self.fail(group, raw, attempt, failure);
                group.counters.in_flight.fetch_sub(1, Ordering::AcqRel);
                self.changed();
                return;
            }
        };
        let delivery = Delivery {
            envelope,
            group: group.name.clone(),
            attempt,
        };
        // A panicking handler must not kill the consumer or lose the message:
        // it counts as a retryable failure, as a crashed consumer would on a broker.
        let result = match AssertUnwindSafe(handlers.dispatch(&delivery))
            .catch_unwind()
            .await
        {
            Ok(result) => result,
            Err(panic) => Err(HandlerError::retryable(format!(
                "handler panicked: {}",
                panic_message(panic.as_ref())
            ))),
        };
        match result {
            Ok(()) => {
                group.counters.handled.fetch_add(1, Ordering::AcqRel);
                self.observe(group, &delivery.envelope, attempt, || Outcome::Handled);
            }
            Err(failure) => match self.retry_wait(&failure, attempt) {
                Some(backoff) => {
                    self.schedule_retry(group, item, &delivery.envelope, failure, backoff)
                }
                None => self.fail(group, delivery.envelope, attempt, failure),
            },
        }
        group.counters.in_flight.fetch_sub(1, Ordering::AcqRel);
        self.changed();
    }

    fn retry_wait(&self, failure: &HandlerError, attempt: u32) -> Option<Duration> {
        if failure.is_retryable() {
            self.config.retry.backoff(attempt)
        } else {
            None
        }
    }

    /// Puts the message back after `backoff` without holding up the queue
    /// (like a broker's delayed retry queue).
    fn schedule_retry(
        self: &Arc<Self>,
        group: &Arc<Group>,
        item: Queued,
        envelope: &Envelope,
        failure: HandlerError,
        backoff: Duration,
    ) {
        tracing::debug!(
            group = %group.name,
            message_id = %envelope.message_id,
            attempt = item.attempt,
            ?backoff,
            reason = %failure.reason,
            "handler failed, retrying later"
        );
        group.counters.retried.fetch_add(1, Ordering::AcqRel);
        group.counters.retrying.fetch_add(1, Ordering::AcqRel);
        self.observe(group, envelope, item.attempt, || Outcome::Retrying {
            reason: failure.reason.clone(),
            backoff,
        });
        let broker = self.clone();
        let group = group.clone();
        tokio::spawn(async move {
            tokio::time::sleep(backoff).await;
            group.queue.push_overflow(Queued {
                frame: item.frame,
                key: item.key,
                attempt: item.attempt.saturating_add(1),
            });
            group.counters.retrying.fetch_sub(1, Ordering::AcqRel);
            broker.changed();
        });
    }

    /// Dead-letters (or, when disabled, logs and drops) a failed message.
    fn fail(&self, group: &Arc<Group>, envelope: Envelope, attempts: u32, failure: HandlerError) {
        let HandlerError { kind, reason } = failure;
        macro_rules! log_failure {
            ($level:expr, $message:literal) => {
                tracing::event!(
                    $level,
                    group = %group.name,
                    message_id = %envelope.message_id,
                    event_type = %envelope.event_type,
                    attempts,
                    kind = kind.as_str(),
                    %reason,
                    $message
                )
            };
        }
        if !self.config.dead_letter.enabled {
            log_failure!(
                tracing::Level::ERROR,
                "message failed and dead-lettering is disabled: dropped"
            );
            group.counters.discarded.fetch_add(1, Ordering::AcqRel);
            self.observe(group, &envelope, attempts, || Outcome::Discarded {
                kind,
                reason: reason.clone(),
            });
            return;
        }
        log_failure!(tracing::Level::WARN, "message dead-lettered");
        let message_id = envelope.message_id;
        let event_type = envelope.event_type.clone();
        // Store first, then tell observers: whoever sees the outcome can list it.
        self.dead_letters.lock().push(DeadLetter {
            id: Uuid::now_v7(),
            group: group.name.clone(),
            envelope,
            kind,
            reason: reason.clone(),
            attempts,
            failed_at: SystemTime::now(),
        });
        group.counters.dead_lettered.fetch_add(1, Ordering::AcqRel);
        if self.observers.active() {
            self.observers.send(DeliveryOutcome {
                group: group.name.clone(),
                message_id,
                event_type,
                attempt: attempts,
                outcome: Outcome::DeadLettered { kind, reason },
            });
        }
    }

    fn observe(
        &self,
        group: &Group,
        envelope: &Envelope,
        attempt: u32,
        outcome: impl FnOnce() -> Outcome,
    ) {
        if self.observers.active() {
            self.observers.send(DeliveryOutcome {
                group: group.name.clone(),
                message_id: envelope.message_id,
                event_type: envelope.event_type.clone(),
                attempt,
                outcome: outcome(),
            });
        }
    }

    pub(crate) fn changed(&self) {
        if self.stat_waiters.load(Ordering::Acquire) > 0 {
            self.changed.notify_waiters();
        }
    }

    pub(crate) fn stats(&self) -> BrokerStats {
        let groups = self
            .groups
            .read()
            .values()
            .map(|g| (g.name.clone(), g.counters.snapshot(g.queue.waiting())))
            .collect();
        BrokerStats {
            groups,
            unroutable: self.unroutable.load(Ordering::Relaxed),
        }
    }

    pub(crate) fn group_names(&self) -> BTreeSet<String> {
        self.groups.read().keys().cloned().collect()
    }

    /// Waits until `done(stats)` holds, re-checking on every change.
    pub(crate) async fn wait_stats(
        &self,
        mut done: impl FnMut(&BrokerStats) -> bool,
    ) -> BrokerStats {
        self.stat_waiters.fetch_add(1, Ordering::AcqRel);
        let _guard = WaiterGuard(&self.stat_waiters);
        loop {
            let mut changed = pin!(self.changed.notified());
            changed.as_mut().enable();
            let stats = self.stats();
            if done(&stats) {
                return stats;
            }
            changed.await;
        }
    }

    pub(crate) fn list_dead_letters(&self, group: Option<&str>) -> Vec<DeadLetter> {
        self.dead_letters
            .lock()
            .iter()
            .filter(|d| group.is_none_or(|g| d.group == g))
            .cloned()
            .collect()
    }

    /// Sends a dead letter back to its group's queue as a first delivery.
    pub(crate) async fn replay(&self, id: Uuid) -> Result<bool, PublishError> {
        let letter = {
            let mut letters = self.dead_letters.lock();
            match letters.iter().position(|d| d.id == id) {
                Some(i) => letters.remove(i),
                None => return Ok(false),
            }
        };
        let group = self.group(&letter.group);
        let item = Queued {
            frame: Bytes::from(wire::encode(&letter.envelope)),
            attempt: 1,
            key: letter.envelope.partition_key.as_deref().map(Arc::from),
        };
        let timeout = self.settings.publish_timeout;
        if group.queue.push(item, timeout).await.is_err() {
            let name = letter.group.clone();
            // Keep the letter where it was rather than losing it.
            self.dead_letters.lock().push(letter);
            return Err(PublishError::Unavailable(format!(
                "queue of group `{name}` stayed full for {timeout:?}; dead letter {id} kept"
            )));
        }
        self.changed();
        Ok(true)
    }
}

struct WaiterGuard<'a>(&'a AtomicUsize);

impl Drop for WaiterGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic payload".to_owned()
    }
}

/// The broker's dead-letter store, as handed out by
/// [`EventBus::dead_letters`](messaging_abstractions::EventBus::dead_letters).
pub(crate) struct DeadLetters(pub(crate) Arc<Broker>);

#[async_trait]
impl DeadLetterStore for DeadLetters {
    async fn list(&self, group: Option<&str>) -> Vec<DeadLetter> {
        self.0.list_dead_letters(group)
    }

    async fn replay(&self, id: Uuid) -> Result<bool, PublishError> {
        self.0.replay(id).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn panic_messages_are_readable() {
        let p: Box<dyn std::any::Any + Send> = Box::new("boom");
        assert_eq!(panic_message(p.as_ref()), "boom");
        let p: Box<dyn std::any::Any + Send> = Box::new(String::from("bang"));
        assert_eq!(panic_message(p.as_ref()), "bang");
        let p: Box<dyn std::any::Any + Send> = Box::new(7u8);
        assert_eq!(panic_message(p.as_ref()), "non-string panic payload");
    }
}
