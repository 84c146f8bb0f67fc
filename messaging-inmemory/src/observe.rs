//! What tests and the harness use to await deliveries deterministically:
//! per-group counters and a stream of delivery outcomes.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use messaging_abstractions::FailureKind;
use parking_lot::Mutex;
use thiserror::Error;
use tokio::sync::mpsc;
use uuid::Uuid;

/// What happened to one delivery of a message to a group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The handler succeeded; the message is acknowledged.
    Handled,
    /// The handler failed with a retryable error; the message comes back
    /// after `backoff`.
    Retrying {
        /// The handler's reason.
        reason: String,
        /// Wait before the next delivery.
        backoff: Duration,
    },
    /// The message was moved to the dead-letter store.
    DeadLettered {
        /// Kind of the last failure.
        kind: FailureKind,
        /// The last failure's reason.
        reason: String,
    },
    /// The message failed for good and dead-lettering is disabled
    /// (`messaging.dead_letter.enabled = false`): it was logged at ERROR and
    /// dropped.
    Discarded {
        /// Kind of the last failure.
        kind: FailureKind,
        /// The last failure's reason.
        reason: String,
    },
}

impl Outcome {
    /// Whether the message is done with in this group (no further delivery
    /// will follow unless a dead letter is replayed).
    pub fn is_final(&self) -> bool {
        !matches!(self, Self::Retrying { .. })
    }
}

/// One delivery's outcome, as seen by [`Outcomes`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryOutcome {
    /// The consumer group.
    pub group: String,
    /// The message.
    pub message_id: Uuid,
    /// Its event type.
    pub event_type: String,
    /// Which delivery this was (1 = first).
    pub attempt: u32,
    /// What happened.
    pub outcome: Outcome,
}

/// Counters of one consumer group. `queued`, `in_flight`, `retrying` and
/// `consumers` are gauges; the others only grow.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GroupStats {
    /// Messages waiting in the group's queue or taken by a consumer and not
    /// started yet.
    pub queued: usize,
    /// Messages a handler is working on right now.
    pub in_flight: u64,
    /// Messages waiting for their retry backoff to elapse.
    pub retrying: u64,
    /// Running consumer workers of the group (all connections).
    pub consumers: usize,
    /// Messages handled successfully.
    pub handled: u64,
    /// Failed deliveries that were scheduled for a retry.
    pub retried: u64,
    /// Messages moved to the dead-letter store.
    pub dead_lettered: u64,
    /// Messages that failed for good while dead-lettering was disabled.
    pub discarded: u64,
}

impl GroupStats {
    /// Messages that are done with: handled, dead-lettered or discarded.
    pub fn settled(&self) -> u64 {
        self.handled + self.dead_lettered + self.discarded
    }

    /// Nothing queued, in flight or waiting for a retry.
    pub fn is_idle(&self) -> bool {
        self.queued == 0 && self.in_flight == 0 && self.retrying == 0
    }
}

/// Counters of the whole broker.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BrokerStats {
    /// Each consumer group's counters.
    pub groups: BTreeMap<String, GroupStats>,
    /// Messages published while no group was bound to their event type
    /// (accepted and dropped, as a broker without bindings does).
    pub unroutable: u64,
}

impl BrokerStats {
    /// Every group is idle.
    pub fn is_idle(&self) -> bool {
        self.groups.values().all(GroupStats::is_idle)
    }
}

/// Waiting for a condition on the stats took too long.
#[derive(Debug, Clone, Error)]
#[error("{what} not reached within {waited:?}; last stats: {last:?}")]
pub struct WaitTimeout {
    /// The awaited condition.
    pub what: String,
    /// How long it waited.
    pub waited: Duration,
    /// The stats when it gave up.
    pub last: BrokerStats,
}

/// Live counters of one group (atomics: updating them costs no lock).
#[derive(Default)]
pub(crate) struct Counters {
    pub(crate) in_flight: AtomicU64,
    pub(crate) retrying: AtomicU64,
    pub(crate) consumers: AtomicUsize,
    pub(crate) handled: AtomicU64,
    pub(crate) retried: AtomicU64,
    pub(crate) dead_lettered: AtomicU64,
    pub(crate) discarded: AtomicU64,
}

impl Counters {
    pub(crate) fn snapshot(&self, queued: usize) -> GroupStats {
        GroupStats {
            queued,
            in_flight: self.in_flight.load(Ordering::Acquire),
            retrying: self.retrying.load(Ordering::Acquire),
            consumers: self.consumers.load(Ordering::Acquire),
            handled: self.handled.load(Ordering::Acquire),
            retried: self.retried.load(Ordering::Acquire),
            dead_lettered: self.dead_lettered.load(Ordering::Acquire),
            discarded: self.discarded.load(Ordering::Acquire),
        }
    }
}

/// The registered outcome streams. Costs one atomic load per delivery while
/// nobody observes.
#[derive(Default)]
pub(crate) struct Observers {
    count: AtomicUsize,
    senders: Mutex<Vec<mpsc::UnboundedSender<DeliveryOutcome>>>,
}

impl Observers {
    pub(crate) fn active(&self) -> bool {
        self.count.load(Ordering::Acquire) > 0
    }

    pub(crate) fn register(&self) -> Outcomes {
        let (tx, rx) = mpsc::unbounded_channel();
        let mut senders = self.senders.lock();
        senders.push(tx);
        self.count.store(senders.len(), Ordering::Release);
        Outcomes { rx }
    }

    pub(crate) fn send(&self, outcome: DeliveryOutcome) {
        let mut senders = self.senders.lock();
        senders.retain(|tx| tx.send(outcome.clone()).is_ok());
        self.count.store(senders.len(), Ordering::Release);
    }
}

/// A stream of every delivery outcome of the broker from the moment it was
/// created ([`crate::InMemoryBus::outcomes`]). Unbounded and lossless: create
/// it before publishing, drop it when done.
#[derive(Debug)]
pub struct Outcomes {
    rx: mpsc::UnboundedReceiver<DeliveryOutcome>,
}

/// The awaited outcome did not come.
#[derive(Debug, Clone, Error)]
#[error("no final outcome for message {message_id} in group `{group}` within {waited:?}")]
pub struct OutcomeTimeout {
    /// The group.
    pub group: String,
    /// The message.
    pub message_id: Uuid,
    /// How long it waited.
    pub waited: Duration,
}

impl Outcomes {
    /// The next outcome (`None` once the broker is gone).
    pub async fn next(&mut self) -> Option<DeliveryOutcome> {
        self.rx.recv().await
    }

    /// Waits for the final outcome (handled, dead-lettered or discarded) of
    /// `message_id` in `group`, skipping everything else. `timeout` is a
    /// safety net against hangs, not a synchronisation device.
    pub async fn settled(
        &mut self,
        group: &str,
        message_id: Uuid,
        timeout: Duration,
    ) -> Result<DeliveryOutcome, OutcomeTimeout> {
        let wait = async {
            while let Some(o) = self.rx.recv().await {
                if o.group == group && o.message_id == message_id && o.outcome.is_final() {
                    return Some(o);
                }
            }
            None
        };
        match tokio::time::timeout(timeout, wait).await {
            Ok(Some(o)) => Ok(o),
            _ => Err(OutcomeTimeout {
                group: group.to_owned(),
                message_id,
                waited: timeout,
            }),
        }
    }
}
