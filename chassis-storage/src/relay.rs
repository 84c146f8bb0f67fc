//! The transactional outbox relay: publishes committed outbox messages on the
//! event bus, in order per ordering key, and marks them sent.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use messaging_abstractions::{Envelope, EventBus, EventBusExt, PublishError};
use storage_abstractions::{OutboxConfig, OutboxRecord, OutboxStore, StorageError};
use thiserror::Error;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::codec;

/// Counters of a running relay (a snapshot, see [`RelayHandle::stats`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RelayStats {
    /// Messages published and marked sent.
    pub published: u64,
    /// Publishes the bus refused for one message (rejected, unroutable).
    pub message_failures: u64,
    /// Messages set aside after `max_attempts` failures or undecodable.
    pub quarantined: u64,
    /// Rounds stopped because the bus was unavailable (each followed by a backoff).
    pub bus_unavailable: u64,
    /// Outbox reads or writes that failed (the store was unavailable).
    pub storage_errors: u64,
    /// Sent messages deleted after the retention period.
    pub purged_sent: u64,
    /// Inbox marks deleted after the inbox retention period.
    pub purged_inbox: u64,
}

#[derive(Default)]
struct Counters {
    published: AtomicU64,
    message_failures: AtomicU64,
    quarantined: AtomicU64,
    bus_unavailable: AtomicU64,
    storage_errors: AtomicU64,
    purged_sent: AtomicU64,
    purged_inbox: AtomicU64,
}

impl Counters {
    fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    fn snapshot(&self) -> RelayStats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        RelayStats {
            published: get(&self.published),
            message_failures: get(&self.message_failures),
            quarantined: get(&self.quarantined),
            bus_unavailable: get(&self.bus_unavailable),
            storage_errors: get(&self.storage_errors),
            purged_sent: get(&self.purged_sent),
            purged_inbox: get(&self.purged_inbox),
        }
    }
}

/// State shared by the relay task, its handle and health checks.
#[derive(Default)]
pub(crate) struct RelayShared {
    counters: Counters,
    running: AtomicBool,
}

impl RelayShared {
    pub(crate) fn is_running(&self) -> bool {
        self.running.load(Ordering::Acquire)
    }
}

/// Clears `running` however the task ends (return or panic).
struct RunningGuard(Arc<RelayShared>);

impl Drop for RunningGuard {
    fn drop(&mut self) {
        self.0.running.store(false, Ordering::Release);
    }
}

/// What the relay task is told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Run,
    /// Publish until the outbox is empty or this instant passes, then stop.
    Drain(Instant),
    /// Stop after the current round.
    Stop,
}

/// The relay stopped abnormally.
#[derive(Debug, Error)]
#[error("the outbox relay task failed: {0}")]
pub struct RelayError(String);

/// The outbox relay, configured; [`start`](Self::start) runs it as a
/// background task.
///
/// What it promises:
/// - **At least once.** A message is marked sent only after the bus confirmed
///   it; a relay stopped or crashed between publish and mark publishes it
///   again on restart (consumers de-duplicate with the inbox).
/// - **In order per ordering key** (the aggregate id). Messages are taken in
///   outbox sequence order; when a message fails, the later messages of the
///   same key wait behind it (they are skipped for this round) until it is
///   sent or quarantined, so a consumer never sees event 2 of an aggregate
///   before event 1 — unless event 1 was quarantined, which is the price of
///   not blocking the aggregate forever; quarantined messages are kept for
///   operators ([`OutboxStore::quarantined`], [`OutboxStore::release`]).
///   Messages of other keys keep flowing.
/// - **Quarantine** after `max_attempts` refused publishes, or at once when a
///   row cannot be decoded.
/// - **Backoff** while the bus is unavailable (exponential from
///   `initial_backoff` to `max_backoff`, doubling); such rounds do not count
///   as attempts of any message.
/// - **Prompt wake-up** on new rows through [`OutboxStore::wait_for_new`],
///   polling every `poll_interval` as the fallback.
/// - **Housekeeping**: sent rows older than `retention` and inbox marks older
///   than the inbox retention are deleted (at start, then every
///   housekeeping interval).
///
/// Run one relay per database: two relays over the same outbox publish
/// duplicates and do not keep the order between them.
pub struct OutboxRelay {
    outbox: Arc<dyn OutboxStore>,
    bus: Arc<dyn EventBus>,
    config: OutboxConfig,
    inbox_retention: Option<Duration>,
    housekeeping_interval: Duration,
}

impl std::fmt::Debug for OutboxRelay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutboxRelay")
            .field("bus", &self.bus.provider())
            .field("config", &self.config)
            .field("inbox_retention", &self.inbox_retention)
            .field("housekeeping_interval", &self.housekeeping_interval)
            .finish()
    }
}

/// How a round ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Round {
    /// Nothing pending.
    Empty,
    /// At least one message sent or quarantined; more may be pending.
    Progress,
    /// Every message the batch fetched was sent, and the batch was not
    /// full: nothing else was pending when it was fetched.
    Sent,
    /// Messages pending but none could be sent (all refused or waiting).
    Stalled,
    /// The bus is unavailable.
    BusDown,
}

fn is_bus_down(error: &PublishError) -> bool {
    matches!(
        error,
        PublishError::Unavailable(_) | PublishError::Timeout(_) | PublishError::ShutDown
    )
}

impl OutboxRelay {
    /// A relay over `outbox` publishing on `bus`.
    pub fn new(outbox: Arc<dyn OutboxStore>, bus: Arc<dyn EventBus>, config: OutboxConfig) -> Self {
        Self {
            outbox,
            bus,
            config,
            inbox_retention: None,
            housekeeping_interval: Duration::from_secs(60),
        }
    }

    /// Also deletes inbox marks older than `retention`.
    pub fn inbox_retention(mut self, retention: Duration) -> Self {
        self.inbox_retention = Some(retention);
        self
    }

    /// How often sent rows and inbox marks are purged (default 60 s).
    pub fn housekeeping_interval(mut self, interval: Duration) -> Self {
        self.housekeeping_interval = interval;
        self
    }

    /// Spawns the relay on the current tokio runtime.
    pub fn start(self) -> RelayHandle {
        let shared = Arc::new(RelayShared::default());
        shared.running.store(true, Ordering::Release);
        let (stop_tx, stop_rx) = watch::channel(Mode::Run);
        let task = tokio::spawn(self.run(shared.clone(), stop_rx));
        RelayHandle {
            shared,
            stop: stop_tx,
            task,
        }
    }

    async fn run(self, shared: Arc<RelayShared>, mut mode: watch::Receiver<Mode>) {
        let _running = RunningGuard(shared.clone());
        let counters = &shared.counters;
        let mut backoff = self.config.initial_backoff;
        let mut next_housekeeping = Instant::now();
        tracing::info!(bus = self.bus.provider(), "outbox relay started");
        loop {
            let draining = match *mode.borrow() {
                Mode::Run => None,
                Mode::Drain(until) => Some(until),
                Mode::Stop => break,
            };
            if draining.is_none() && Instant::now() >= next_housekeeping {
                self.housekeeping(counters).await;
                next_housekeeping = Instant::now() + self.housekeeping_interval;
            }
            let round = self.round(counters).await;
            if let Some(until) = draining {
                if matches!(round, Ok(Round::Empty)) {
                    tracing::info!("outbox relay: the outbox is empty");
                    break;
                }
                if Instant::now() >= until {
                    tracing::warn!(
                        "outbox relay: the shutdown deadline passed with messages left in the \
                         outbox; the next start publishes them"
                    );
                    break;
                }
            }
            let wait = match round {
                // Fetching again at once would find nothing (one empty fetch
                // per batch): what was committed since then woke the store,
                // so the wait below returns at once for it. A drain looks
                // again until it finds the outbox empty.
                Ok(Round::Sent) if draining.is_none() => {
                    backoff = self.config.initial_backoff;
                    None
                }
                Ok(Round::Progress | Round::Sent) => {
                    backoff = self.config.initial_backoff;
                    continue;
                }
                Ok(Round::Empty) => {
                    backoff = self.config.initial_backoff;
                    None
                }
                Ok(Round::Stalled | Round::BusDown) => {
                    Some(next_backoff(&mut backoff, &self.config))
                }
                Err(error) => {
                    Counters::add(&counters.storage_errors, 1);
                    tracing::warn!(%error, "outbox relay cannot read or update the outbox");
                    Some(next_backoff(&mut backoff, &self.config))
                }
            };
            let until_housekeeping = next_housekeeping.saturating_duration_since(Instant::now());
            // While draining, no wait outlasts the deadline.
            let cap = draining.map_or(Duration::MAX, |until| {
                until.saturating_duration_since(Instant::now())
            });
            tokio::select! {
                _ = mode.changed() => {}
                _ = async {
                    match wait {
                        Some(delay) => tokio::time::sleep(delay.min(cap)).await,
                        None => {
                            let timeout = self.config.poll_interval.min(until_housekeeping);
                            self.outbox.wait_for_new(timeout).await;
                        }
                    }
                } => {}
            }
        }
        tracing::info!("outbox relay stopped");
    }

    async fn housekeeping(&self, counters: &Counters) {
        match self.outbox.purge_sent(self.config.retention).await {
            Ok(n) => Counters::add(&counters.purged_sent, n),
            Err(error) => {
                Counters::add(&counters.storage_errors, 1);
                tracing::warn!(%error, "purging sent outbox messages failed");
            }
        }
        if let Some(retention) = self.inbox_retention {
            match self.outbox.purge_inbox(retention).await {
                Ok(n) => Counters::add(&counters.purged_inbox, n),
                Err(error) => {
                    Counters::add(&counters.storage_errors, 1);
                    tracing::warn!(%error, "purging inbox marks failed");
                }
            }
        }
    }

    /// One batch: decode, publish (pipelined; one by one after a refusal, to
    /// know which message failed), mark sent.
    async fn round(&self, counters: &Counters) -> Result<Round, StorageError> {
        // A wake-up left by a commit that this fetch sees anyway (a store
        // wakes the relay after the commit) would end the next wait at once
        // for nothing: take it now.
        self.outbox.wait_for_new(Duration::ZERO).await;
        let batch = self.outbox.fetch_pending(self.config.batch_size).await?;
        if batch.is_empty() {
            return Ok(Round::Empty);
        }
        let whole = batch.len() < self.config.batch_size;
        let mut quarantined_any = false;
        let mut ready: Vec<(OutboxRecord, Envelope)> = Vec::with_capacity(batch.len());
        for record in batch {
            match codec::decode(&record.message.body) {
                Ok(envelope) => ready.push((record, envelope)),
                Err(error) => {
                    tracing::error!(
                        sequence = record.sequence,
                        message_id = %record.message.id,
                        event_type = %record.message.event_type,
                        %error,
                        "outbox message cannot be decoded: quarantined"
                    );
                    self.outbox
                        .record_failure(record.sequence, &error.to_string(), true)
                        .await?;
                    Counters::add(&counters.quarantined, 1);
                    quarantined_any = true;
                }
            }
        }
        if ready.is_empty() {
            return Ok(Round::Progress);
        }
        let envelopes = ready.iter().map(|(_, e)| e.clone()).collect();
        match self.bus.publish_all(envelopes).await {
            Ok(()) => {
                let sequences: Vec<i64> = ready.iter().map(|(r, _)| r.sequence).collect();
                self.outbox.mark_sent(&sequences).await?;
                Counters::add(&counters.published, sequences.len() as u64);
                Ok(if whole && !quarantined_any {
                    Round::Sent
                } else {
                    Round::Progress
                })
            }
            Err(error) if is_bus_down(&error) => {
                Counters::add(&counters.bus_unavailable, 1);
                tracing::warn!(%error, "event bus unavailable: outbox relay backs off");
                Ok(Round::BusDown)
            }
            Err(error) => {
                tracing::debug!(%error, "a batch publish was refused: publishing one by one");
                self.publish_one_by_one(ready, counters, quarantined_any)
                    .await
            }
        }
    }

    async fn publish_one_by_one(
        &self,
        ready: Vec<(OutboxRecord, Envelope)>,
        counters: &Counters,
        mut progress: bool,
    ) -> Result<Round, StorageError> {
        let mut blocked: HashSet<String> = HashSet::new();
        let mut sent = Vec::new();
        let mut outcome = None;
        for (record, envelope) in ready {
            if blocked.contains(&record.message.ordering_key) {
                continue;
            }
            match self.bus.publish(envelope).await {
                Ok(()) => sent.push(record.sequence),
                Err(error) if is_bus_down(&error) => {
                    Counters::add(&counters.bus_unavailable, 1);
                    tracing::warn!(%error, "event bus unavailable: outbox relay backs off");
                    outcome = Some(Round::BusDown);
                    break;
                }
                Err(error) => {
                    let attempts = record.attempts + 1;
                    let quarantine = attempts >= self.config.max_attempts;
                    self.outbox
                        .record_failure(record.sequence, &error.to_string(), quarantine)
                        .await?;
                    Counters::add(&counters.message_failures, 1);
                    if quarantine {
                        Counters::add(&counters.quarantined, 1);
                        progress = true;
                        tracing::error!(
                            sequence = record.sequence,
                            message_id = %record.message.id,
                            event_type = %record.message.event_type,
                            attempts,
                            %error,
                            "outbox message refused {attempts} times: quarantined"
                        );
                    } else {
                        // Later messages of this key wait behind this one.
                        blocked.insert(record.message.ordering_key.clone());
                        tracing::warn!(
                            sequence = record.sequence,
                            message_id = %record.message.id,
                            attempts,
                            %error,
                            "outbox message refused by the bus; will retry"
                        );
                    }
                }
            }
        }
        if !sent.is_empty() {
            self.outbox.mark_sent(&sent).await?;
            Counters::add(&counters.published, sent.len() as u64);
            progress = true;
        }
        Ok(match outcome {
            Some(round) => round,
            None if progress => Round::Progress,
            None => Round::Stalled,
        })
    }
}

/// Returns the current backoff and doubles it, up to `max_backoff`.
fn next_backoff(backoff: &mut Duration, config: &OutboxConfig) -> Duration {
    let current = (*backoff).min(config.max_backoff);
    *backoff = (current * 2).min(config.max_backoff);
    current
}

/// A running relay: its counters, whether it runs, and an explicit shutdown.
/// Dropping the handle without [`shutdown`](Self::shutdown) leaves the task
/// running until the runtime ends.
pub struct RelayHandle {
    shared: Arc<RelayShared>,
    stop: watch::Sender<Mode>,
    task: JoinHandle<()>,
}

impl std::fmt::Debug for RelayHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RelayHandle")
            .field("running", &self.is_running())
            .field("stats", &self.stats())
            .finish()
    }
}

impl RelayHandle {
    /// The counters so far.
    pub fn stats(&self) -> RelayStats {
        self.shared.counters.snapshot()
    }

    /// Whether the relay task is still running.
    pub fn is_running(&self) -> bool {
        self.shared.is_running()
    }

    pub(crate) fn shared(&self) -> Arc<RelayShared> {
        self.shared.clone()
    }

    /// Stops the relay after its current round and waits for it. Messages
    /// published but not yet marked sent are published again by the next
    /// relay.
    pub async fn shutdown(self) -> Result<RelayStats, RelayError> {
        self.finish(Mode::Stop).await
    }

    /// Publishes what the outbox holds until it is empty or `deadline` has
    /// passed, then stops and waits for the task (what a host does at
    /// shutdown once its consumers have stopped, so the events their last
    /// handlers wrote leave with this process). Messages left at the
    /// deadline wait for the next relay. The round under way when the
    /// deadline passes still finishes: bound the wait from outside when the
    /// bus may hang.
    pub async fn drain(self, deadline: Duration) -> Result<RelayStats, RelayError> {
        self.finish(Mode::Drain(Instant::now() + deadline)).await
    }

    async fn finish(self, mode: Mode) -> Result<RelayStats, RelayError> {
        // The receiver is gone only if the task ended already.
        let _ = self.stop.send(mode);
        self.task.await.map_err(|e| RelayError(e.to_string()))?;
        Ok(self.shared.counters.snapshot())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_caps() {
        let config = OutboxConfig {
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(300),
            ..OutboxConfig::default()
        };
        let mut b = config.initial_backoff;
        let waits: Vec<_> = (0..4).map(|_| next_backoff(&mut b, &config)).collect();
        assert_eq!(
            waits,
            [100, 200, 300, 300].map(Duration::from_millis).to_vec()
        );
    }
}
