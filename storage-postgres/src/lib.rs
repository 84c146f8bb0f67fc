//! PostgreSQL storage provider of the service chassis (sqlx): pooled,
//! migrated, with outbox and inbox tables.
//!
//! [`PostgresStore::connect`] builds a connection pool from
//! [`PostgresConfig`], the `[storage.postgres]` section (`max_connections`,
//! `min_connections`, `acquire_timeout`, `statement_timeout`; `password`
//! overrides one in the URL), runs the embedded [`migrate::MIGRATIONS`] into
//! the configured schema when `run_migrations` is set, and starts listening
//! for outbox notifications. Every connection uses the schema as its
//! `search_path`, so one database can hold several services' schemas.
//!
//! - Transactions: `READ COMMITTED`; optimistic concurrency through
//!   `WHERE version = $expected` (see [`Store`] and the conformance suite).
//! - Transient errors (lost connections, serialization failures, deadlocks)
//!   are retried with backoff where repeating is safe: opening a
//!   transaction, reads, and idempotent outbox operations. Inside an open
//!   transaction they surface as [`StorageError::Unavailable`] for the
//!   command pipeline to retry the whole unit of work.
//! - Outbox: `fetch_pending` selects unsent rows ordered by sequence (never
//!   "after the last seen one", so rows committed out of sequence order are
//!   not skipped) and only on the instance holding the relay lock (see
//!   [`PostgresOutbox`]). `wait_for_new` wakes on a commit in this process
//!   or on the `NOTIFY` another instance sends after its commits (coalesced,
//!   outside the transaction), with the timeout as polling fallback.
//!
//! ```no_run
//! use storage_abstractions::{Record, Store};
//! use storage_postgres::{PostgresConfig, PostgresStore};
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let config = PostgresConfig {
//!     url: "postgres://postgres@127.0.0.1:5432/test".into(),
//!     schema: "orders".into(),
//!     ..PostgresConfig::default()
//! };
//! let store = PostgresStore::connect(&config).await?;
//! let mut tx = store.begin().await?;
//! tx.insert(Record::new("orders", "o-1", serde_json::json!({"total": 12}))).await?;
//! tx.commit().await?;
//! store.shutdown().await;
//! # Ok(()) }
//! ```

mod config;
mod error;
mod liveness;
pub mod migrate;
mod outbox;
mod pool;
mod retry;
mod transaction;
mod wakeup;

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chassis_core::{HealthCheck, HealthStatus};
use sqlx::postgres::{PgConnectOptions, PgListener, PgPool, PgPoolOptions};
use storage_abstractions::{
    AcquireObserver, Migration, MigrationError, OutboxStore, PoolStats, StorageError, Store,
    Transaction,
};
use tokio::task::JoinHandle;

pub use config::PostgresConfig;
pub use error::PostgresError;
use liveness::Liveness;
pub use outbox::PostgresOutbox;
use pool::AcquireCounters;
use retry::Retry;
use transaction::PgTransaction;
use wakeup::Wakeup;

/// The provider name written in config (`storage.provider = "postgres"`).
pub const PROVIDER: &str = "postgres";

/// The `NOTIFY` channel the relays of `schema` listen on.
pub fn notify_channel(schema: &str) -> String {
    let mut channel = format!("chassis_outbox_{schema}");
    // Identifiers are at most 63 bytes; schema names are ASCII.
    channel.truncate(63);
    channel
}

/// A store in a PostgreSQL schema. `Clone` shares the pool.
#[derive(Clone)]
pub struct PostgresStore {
    inner: Arc<Inner>,
}

struct Inner {
    pool: PgPool,
    schema: String,
    wakeup: Arc<Wakeup>,
    retry: Retry,
    health_timeout: Duration,
    outbox: Arc<PostgresOutbox>,
    acquires: AcquireCounters,
    /// The LISTEN and NOTIFY tasks.
    tasks: parking_lot::Mutex<Vec<JoinHandle<()>>>,
}

impl Inner {
    fn stop_tasks(&self) {
        for task in self.tasks.lock().drain(..) {
            task.abort();
        }
    }
}

impl Drop for Inner {
    /// A store dropped without `shutdown` still stops its background tasks.
    fn drop(&mut self) {
        self.stop_tasks();
    }
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore")
            .field("schema", &self.inner.schema)
            .finish_non_exhaustive()
    }
}

/// Connection options from the config: URL, password override, schema as
/// `search_path`, statement timeout.
pub fn connect_options(config: &PostgresConfig) -> Result<PgConnectOptions, PostgresError> {
    let mut options = PgConnectOptions::from_str(config.url.expose())
        .map_err(|e| PostgresError::InvalidUrl(e.to_string()))?;
    if let Some(password) = &config.password {
        options = options.password(password.expose());
    }
    if options.get_application_name().is_none() {
        // Shows in pg_stat_activity which schema's store holds a connection.
        options = options.application_name(&format!("chassis:{}", config.schema));
    }
    let mut settings = vec![("search_path", config.schema.clone())];
    if !config.statement_timeout.is_zero() {
        settings.push((
            "statement_timeout",
            config.statement_timeout.as_millis().to_string(),
        ));
    }
    Ok(options.options(settings))
}

fn target(options: &PgConnectOptions) -> String {
    format!(
        "{}:{}/{}",
        options.get_host(),
        options.get_port(),
        options.get_database().unwrap_or("")
    )
}

impl PostgresStore {
    /// Connects (retrying transient failures), runs the embedded migrations
    /// if `storage.postgres.run_migrations`, and starts the outbox listener.
    pub async fn connect(pg: &PostgresConfig) -> Result<PostgresStore, PostgresError> {
        pg.validate().map_err(PostgresError::InvalidConfig)?;
        let options = connect_options(pg)?;
        let connect_error = |source| PostgresError::Connect {
            target: target(&options),
            source,
        };
        let liveness = Arc::new(Liveness::default());
        let retry = Retry::new(pg.retry_attempts, liveness.clone());
        let pool_options = PgPoolOptions::new()
            .max_connections(pg.max_connections)
            .min_connections(pg.min_connections)
            .acquire_timeout(pg.acquire_timeout)
            // A round trip before every use only where it can tell something
            // (see `liveness`); sqlx still tests each connection on release.
            .test_before_acquire(false)
            .before_acquire(move |conn, meta| {
                let test = liveness.needs_test(meta.idle_for);
                Box::pin(async move {
                    if test {
                        sqlx::Connection::ping(conn).await?;
                    }
                    Ok(true)
                })
            });
        let pool = retry
            .run("connect", || {
                pool_options.clone().connect_with(options.clone())
            })
            .await
            .map_err(connect_error)?;

        if pg.run_migrations {
            let mut conn = pool.acquire().await.map_err(connect_error)?;
            let applied = migrate::run(
                &mut conn,
                &pg.schema,
                migrate::CHASSIS_TABLE,
                migrate::MIGRATIONS,
            )
            .await?;
            if !applied.is_empty() {
                tracing::info!(schema = %pg.schema, ?applied, "applied storage migrations");
            }
        }

        let channel = notify_channel(&pg.schema);
        let wakeup = Arc::new(Wakeup::default());
        // The listener has a connection of its own, outside the pool.
        let listen_pool = PgPoolOptions::new()
            .max_connections(1)
            .acquire_timeout(pg.acquire_timeout)
            .connect_lazy_with(options.clone());
        let mut listener = PgListener::connect_with(&listen_pool)
            .await
            .map_err(connect_error)?;
        listener.listen(&channel).await.map_err(connect_error)?;
        let tasks = vec![
            tokio::spawn(wakeup.clone().listen(listener)),
            tokio::spawn(wakeup.clone().announce(options.clone(), channel)),
        ];

        let outbox = Arc::new(PostgresOutbox::new(
            pool.clone(),
            options.clone(),
            wakeup.clone(),
            retry.clone(),
        ));
        Ok(PostgresStore {
            inner: Arc::new(Inner {
                pool,
                schema: pg.schema.clone(),
                wakeup,
                retry,
                health_timeout: pg.acquire_timeout.min(Duration::from_secs(5)),
                outbox,
                acquires: AcquireCounters::default(),
                tasks: parking_lot::Mutex::new(tasks),
            }),
        })
    }

    /// The connection pool (for a service's own queries in the same schema).
    pub fn pool(&self) -> &PgPool {
        &self.inner.pool
    }

    /// The schema this store lives in.
    pub fn schema(&self) -> &str {
        &self.inner.schema
    }

    /// The outbox as its concrete type (the same as [`Store::outbox`]).
    pub fn postgres_outbox(&self) -> Arc<PostgresOutbox> {
        self.inner.outbox.clone()
    }
}

#[async_trait]
impl Store for PostgresStore {
    fn provider(&self) -> &'static str {
        PROVIDER
    }

    async fn begin(&self) -> Result<Box<dyn Transaction>, StorageError> {
        let inner = &self.inner;
        let tx = inner
            .retry
            .run("begin", || inner.acquires.begin(&inner.pool))
            .await
            .map_err(error::map)?;
        Ok(Box::new(PgTransaction::new(tx, self.inner.wakeup.clone())))
    }

    fn outbox(&self) -> Arc<dyn OutboxStore> {
        self.inner.outbox.clone()
    }

    fn health_checks(&self) -> Vec<Arc<dyn HealthCheck>> {
        vec![Arc::new(PostgresHealth {
            pool: self.inner.pool.clone(),
            timeout: self.inner.health_timeout,
        })]
    }

    /// The pool of units of work and outbox operations (the `LISTEN`
    /// connection is not in it); the wait counts acquires of `begin`.
    fn pool_stats(&self) -> Option<PoolStats> {
        Some(self.inner.acquires.stats(&self.inner.pool))
    }

    fn observe_acquires(&self, observer: AcquireObserver) -> bool {
        self.inner.acquires.observe(observer);
        true
    }

    fn has_sql(&self) -> bool {
        true
    }

    /// Applies a service's migrations into the store's schema (recorded in
    /// `service_migrations`), under the lock the chassis's migrations take.
    async fn apply_migrations(&self, migrations: &[Migration]) -> Result<Vec<i64>, MigrationError> {
        Migration::validate_list(migrations)?;
        let inner = &self.inner;
        let mut conn = inner
            .retry
            .run("migrate", || inner.pool.acquire())
            .await
            .map_err(|e| MigrationError::Unavailable(format!("PostgreSQL: {e}")))?;
        match migrate::run(&mut conn, &inner.schema, migrate::SERVICE_TABLE, migrations).await {
            Ok(applied) => Ok(applied),
            Err(PostgresError::Migration {
                version,
                name,
                source,
                ..
            }) if version > 0 => Err(MigrationError::Failed {
                version,
                name,
                error: source.to_string(),
            }),
            Err(other) => Err(MigrationError::Unavailable(other.to_string())),
        }
    }

    /// Stops the listener, hands the relay lock on and closes the pool.
    async fn shutdown(&self) {
        self.inner.stop_tasks();
        self.inner.outbox.resign().await;
        self.inner.pool.close().await;
        self.inner.wakeup.wake_local();
    }
}

/// Health check `storage.postgres`: `SELECT 1` within a time limit.
struct PostgresHealth {
    pool: PgPool,
    timeout: Duration,
}

#[async_trait]
impl HealthCheck for PostgresHealth {
    fn name(&self) -> &str {
        "storage.postgres"
    }

    async fn check(&self) -> HealthStatus {
        let ping = sqlx::query("SELECT 1").execute(&self.pool);
        match tokio::time::timeout(self.timeout, ping).await {
            Ok(Ok(_)) => HealthStatus::Healthy,
            Ok(Err(error)) => HealthStatus::Unhealthy(format!("PostgreSQL: {error}")),
            Err(_) => HealthStatus::Unhealthy(format!(
                "PostgreSQL did not answer SELECT 1 within {:?}",
                self.timeout
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn password_overrides_the_url_and_schema_is_the_search_path() {
        let config = PostgresConfig {
            url: "postgres://app:old@db.example:6543/orders".into(),
            password: Some("new".into()),
            schema: "orders_svc".into(),
            statement_timeout: Duration::from_secs(2),
            ..PostgresConfig::default()
        };
        let options = connect_options(&config).unwrap();
        assert_eq!(target(&options), "db.example:6543/orders");
        assert_eq!(options.get_username(), "app");
        assert_eq!(options.get_application_name(), Some("chassis:orders_svc"));
        let settings = options.get_options().unwrap();
        assert!(settings.contains("search_path"), "{settings}");
        assert!(settings.contains("orders_svc"), "{settings}");
        assert!(settings.contains("statement_timeout=2000"), "{settings}");
        // sqlx gives no getter for the password; `connect` against a server
        // with password authentication is where the override shows.
    }

    #[test]
    fn a_bad_url_names_the_key() {
        let config = PostgresConfig {
            url: "postgres://db.example:notaport/orders".into(),
            ..PostgresConfig::default()
        };
        let error = connect_options(&config).unwrap_err().to_string();
        assert!(error.starts_with("storage.postgres.url"), "{error}");
    }

    #[test]
    fn channel_names_fit_an_identifier() {
        assert_eq!(notify_channel("orders"), "chassis_outbox_orders");
        assert_eq!(notify_channel(&"s".repeat(63)).len(), 63);
    }
}
