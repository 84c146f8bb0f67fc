//! The pool's figures for metrics: sqlx reports the pool's size and idle
//! connections; waiting, acquired and timed-out acquires are counted, and
//! the wait timed, here, around the acquire of every unit of work (sqlx
//! keeps no such figures).

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Instant;

use sqlx::Postgres;
use sqlx::postgres::PgPool;
use storage_abstractions::{AcquireObserver, PoolStats};

/// Counts of the acquires made for units of work.
#[derive(Default)]
pub(crate) struct AcquireCounters {
    pending: AtomicU32,
    acquired: AtomicU64,
    timeouts: AtomicU64,
    observers: parking_lot::RwLock<Vec<AcquireObserver>>,
}

/// Counts one waiting acquire while it lives (also when the caller's future
/// is dropped mid-wait).
struct Waiting<'a>(&'a AtomicU32);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl AcquireCounters {
    /// A connection from `pool` in a new transaction, the acquire counted.
    pub(crate) async fn begin(
        &self,
        pool: &PgPool,
    ) -> Result<sqlx::Transaction<'static, Postgres>, sqlx::Error> {
        self.pending.fetch_add(1, Ordering::Relaxed);
        let waiting = Waiting(&self.pending);
        let started = Instant::now();
        let acquired = pool.acquire().await;
        let waited = started.elapsed();
        drop(waiting);
        for observer in self.observers.read().iter() {
            observer(waited);
        }
        match &acquired {
            Ok(_) => self.acquired.fetch_add(1, Ordering::Relaxed),
            Err(sqlx::Error::PoolTimedOut) => self.timeouts.fetch_add(1, Ordering::Relaxed),
            Err(_) => 0,
        };
        // What `Pool::begin` does after its acquire, called directly so the
        // acquire above is counted on its own.
        sqlx::Transaction::begin(acquired?, None).await
    }

    /// Adds an observer of every later acquire's wait.
    pub(crate) fn observe(&self, observer: AcquireObserver) {
        self.observers.write().push(observer);
    }

    /// The pool's state now and the totals so far.
    pub(crate) fn stats(&self, pool: &PgPool) -> PoolStats {
        let size = pool.size();
        let idle = u32::try_from(pool.num_idle()).unwrap_or(u32::MAX).min(size);
        PoolStats {
            in_use: size - idle,
            idle,
            max: pool.options().get_max_connections(),
            pending: self.pending.load(Ordering::Relaxed),
            acquired: self.acquired.load(Ordering::Relaxed),
            acquire_timeouts: self.timeouts.load(Ordering::Relaxed),
        }
    }
}
