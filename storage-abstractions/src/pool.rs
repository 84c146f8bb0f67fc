use std::sync::Arc;
use std::time::Duration;

/// Called with how long a unit of work waited for a connection, after each
/// acquire (also one that timed out); see [`Store::observe_acquires`](crate::Store::observe_acquires).
pub type AcquireObserver = Arc<dyn Fn(Duration) + Send + Sync>;

/// A snapshot of a store's connection pool, for metrics.
///
/// Providers with a pool (`postgres`) return it from
/// [`Store::pool_stats`](crate::Store::pool_stats); the host samples it when
/// `/metrics` is scraped. `acquired` and `acquire_timeouts` are totals since
/// the store was built (Prometheus counters), the rest the state right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PoolStats {
    /// Connections lent out (in a transaction or a statement).
    pub in_use: u32,
    /// Open connections waiting in the pool.
    pub idle: u32,
    /// The most connections the pool opens.
    pub max: u32,
    /// Units of work waiting for a connection right now.
    pub pending: u32,
    /// Connections acquired for units of work so far.
    pub acquired: u64,
    /// Acquires that gave up (no connection within the acquire timeout).
    pub acquire_timeouts: u64,
}
