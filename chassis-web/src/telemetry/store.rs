//! Store metrics: the relay's delay from outbox write to confirmed publish
//! (observed at the outbox port, so no service code and any provider), and
//! the connection pool's figures of providers that have a pool: the state
//! sampled when `/metrics` is scraped, each acquire's wait as it happens.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use chassis_core::HealthCheck;
use metrics::{Counter, Gauge, Histogram};
use storage_abstractions::{
    AcquireObserver, OutboxBacklog, OutboxRecord, OutboxStore, PoolStats, StorageError, Store,
    Transaction,
};

use super::metrics::names;
use crate::host::ServiceContext;

/// The store as the host hands it to the service: every call goes to the
/// provider's store; its outbox is an [`ObservedOutbox`].
pub(crate) struct ObservedStore {
    inner: Arc<dyn Store>,
    outbox: Arc<dyn OutboxStore>,
}

impl ObservedStore {
    pub(crate) fn wrap(inner: Arc<dyn Store>, service: &str) -> Arc<dyn Store> {
        let outbox = Arc::new(ObservedOutbox {
            inner: inner.outbox(),
            fetched: Mutex::new(HashMap::new()),
            delay: metrics::histogram!(names::OUTBOX_RELAY_DELAY, "service" => service.to_owned()),
        });
        Arc::new(Self { inner, outbox })
    }
}

#[async_trait]
impl Store for ObservedStore {
    fn provider(&self) -> &'static str {
        self.inner.provider()
    }

    async fn begin(&self) -> Result<Box<dyn Transaction>, StorageError> {
        self.inner.begin().await
    }

    fn outbox(&self) -> Arc<dyn OutboxStore> {
        self.outbox.clone()
    }

    fn health_checks(&self) -> Vec<Arc<dyn HealthCheck>> {
        self.inner.health_checks()
    }

    fn pool_stats(&self) -> Option<PoolStats> {
        self.inner.pool_stats()
    }

    fn observe_acquires(&self, observer: AcquireObserver) -> bool {
        self.inner.observe_acquires(observer)
    }

    async fn shutdown(&self) {
        self.inner.shutdown().await;
    }
}

/// Records, for every message the relay marks sent, how long ago it was
/// written: the relay marks a message sent right after the bus confirmed
/// its publish, so this is the write → publish delay.
struct ObservedOutbox {
    inner: Arc<dyn OutboxStore>,
    /// When the messages of the last fetched batch were written, by sequence.
    fetched: Mutex<HashMap<i64, SystemTime>>,
    delay: Histogram,
}

impl ObservedOutbox {
    fn fetched(&self) -> std::sync::MutexGuard<'_, HashMap<i64, SystemTime>> {
        self.fetched.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[async_trait]
impl OutboxStore for ObservedOutbox {
    async fn fetch_pending(&self, limit: usize) -> Result<Vec<OutboxRecord>, StorageError> {
        let batch = self.inner.fetch_pending(limit).await?;
        // The relay marks only messages of the batch it fetched last; what
        // was not sent is fetched again next round.
        let mut fetched = self.fetched();
        fetched.clear();
        fetched.extend(batch.iter().map(|r| (r.sequence, r.created_at)));
        Ok(batch)
    }

    async fn mark_sent(&self, sequences: &[i64]) -> Result<(), StorageError> {
        let confirmed = SystemTime::now();
        self.inner.mark_sent(sequences).await?;
        let mut fetched = self.fetched();
        for sequence in sequences {
            if let Some(written) = fetched.remove(sequence) {
                let delay = confirmed.duration_since(written).unwrap_or_default();
                self.delay.record(delay.as_secs_f64());
            }
        }
        Ok(())
    }

    async fn record_failure(
        &self,
        sequence: i64,
        error: &str,
        quarantine: bool,
    ) -> Result<(), StorageError> {
        self.inner.record_failure(sequence, error, quarantine).await
    }

    async fn quarantined(&self) -> Result<Vec<OutboxRecord>, StorageError> {
        self.inner.quarantined().await
    }

    async fn release(&self, sequence: i64) -> Result<bool, StorageError> {
        self.inner.release(sequence).await
    }

    async fn purge_sent(&self, older_than: Duration) -> Result<u64, StorageError> {
        self.inner.purge_sent(older_than).await
    }

    async fn purge_inbox(&self, older_than: Duration) -> Result<u64, StorageError> {
        self.inner.purge_inbox(older_than).await
    }

    async fn backlog(&self) -> Result<OutboxBacklog, StorageError> {
        self.inner.backlog().await
    }

    async fn wait_for_new(&self, timeout: Duration) {
        self.inner.wait_for_new(timeout).await;
    }
}

/// The pool series of one service's store.
struct PoolSeries {
    store: Arc<dyn Store>,
    in_use: Gauge,
    idle: Gauge,
    max: Gauge,
    pending: Gauge,
    acquired: Counter,
    timeouts: Counter,
}

impl PoolSeries {
    fn new(store: Arc<dyn Store>, service: &str) -> Self {
        let labels = [
            ("service", service.to_owned()),
            ("provider", store.provider().to_owned()),
        ];
        let state = |state: &str| {
            let mut labels = labels.to_vec();
            labels.push(("state", state.to_owned()));
            metrics::gauge!(names::DB_POOL_CONNECTIONS, &labels)
        };
        Self {
            in_use: state("used"),
            idle: state("idle"),
            max: metrics::gauge!(names::DB_POOL_MAX, &labels),
            pending: metrics::gauge!(names::DB_POOL_PENDING, &labels),
            acquired: metrics::counter!(names::DB_POOL_ACQUIRES, &labels),
            timeouts: metrics::counter!(names::DB_POOL_TIMEOUTS, &labels),
            store,
        }
    }

    fn sample(&self) {
        if let Some(stats) = self.store.pool_stats() {
            self.in_use.set(stats.in_use);
            self.idle.set(stats.idle);
            self.max.set(stats.max);
            self.pending.set(stats.pending);
            self.acquired.absolute(stats.acquired);
            self.timeouts.absolute(stats.acquire_timeouts);
        }
    }
}

/// The pools of the running services of the process (they share the
/// recorder, so a scrape of any of them samples all), by registration id.
static POOLS: Mutex<Vec<(u64, Arc<PoolSeries>)>> = Mutex::new(Vec::new());

fn pools() -> std::sync::MutexGuard<'static, Vec<(u64, Arc<PoolSeries>)>> {
    POOLS.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Sets the pool series of every registered store (before a render).
pub(crate) fn sample_pools() {
    let series: Vec<Arc<PoolSeries>> = pools().iter().map(|(_, s)| s.clone()).collect();
    for s in series {
        s.sample();
    }
}

/// Removes its pool from [`POOLS`] when dropped: at shutdown, or when the
/// runtime running the host's tasks goes away.
struct Registration(u64);

impl Drop for Registration {
    fn drop(&mut self) {
        pools().retain(|(id, _)| *id != self.0);
    }
}

/// Samples `ctx`'s store pool on every scrape while the service runs (from
/// start-up until shutdown begins); nothing for a store without a pool.
pub(crate) fn register_pool(ctx: &ServiceContext) {
    if ctx.store().pool_stats().is_none() {
        return;
    }
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let id = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let series = Arc::new(PoolSeries::new(ctx.store().clone(), ctx.name()));
    let wait = metrics::histogram!(
        names::DB_POOL_WAIT,
        "service" => ctx.name().to_owned(),
        "provider" => ctx.store().provider().to_owned()
    );
    ctx.store()
        .observe_acquires(Arc::new(move |waited: Duration| wait.record(waited)));
    series.sample();
    pools().push((id, series));
    let registration = Registration(id);
    let signal = ctx.shutdown_signal();
    ctx.spawn("metrics-pool", async move {
        signal.stopping().await;
        drop(registration);
        Ok(())
    });
}
