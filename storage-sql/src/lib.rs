//! Relational access of the service chassis: a service's own SQL on the
//! unit of work's transaction — the one that also writes the chassis's
//! records, outbox and inbox — on PostgreSQL and SQLite alike.
//!
//! A thin layer over sqlx, chosen over an OR mapper by the spike in
//! `docs/storage.md`:
//!
//! - [`Sql::of`] takes the transaction of a unit of work
//!   (`uow.transaction()`) and gives its connection a driver-neutral handle;
//!   nothing opens a second connection, so one commit makes the service's
//!   rows, the outgoing events and the inbox mark visible together.
//! - [`Sql::query`] runs a statement with `$1, $2, …` placeholders (both
//!   drivers read them) and [`Value`]s bound in order; rows come back typed
//!   through `#[derive(sqlx::FromRow)]` ([`FromSqlRow`]) or as a single
//!   column ([`SqlScalar`]).
//! - The escape hatch is sqlx itself: [`Sql::postgres`] / [`Sql::sqlite`]
//!   hand out the driver connection, for `query_as!`, `COPY`, `RETURNING`
//!   with driver types, and anything else.
//! - Errors are [`StorageError`]s: a unique violation or (SQLite) another
//!   writer is a retryable [`StorageError::Conflict`], a lost connection
//!   [`StorageError::Unavailable`], everything else
//!   [`StorageError::Backend`] with the database's message.
//!
//! Features `postgres` and `sqlite` compile the drivers in; a service
//! enables those of the providers it runs on.
//!
//! ```
//! use storage_abstractions::{Migration, StorageError, Store};
//! use storage_sql::Sql;
//!
//! #[derive(Debug, PartialEq, sqlx::FromRow)]
//! struct Parcel { id: uuid::Uuid, weight_g: i64, label: String }
//!
//! const MIGRATIONS: &[Migration] = &[Migration::new(
//!     1, "parcels",
//!     "CREATE TABLE parcels (id uuid PRIMARY KEY, weight_g bigint NOT NULL, label text NOT NULL)",
//! )];
//!
//! # #[cfg(not(feature = "sqlite"))] fn main() {}
//! # #[cfg(feature = "sqlite")]
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let store = storage_sqlite::SqliteStore::open(&Default::default()).await?;
//! store.apply_migrations(MIGRATIONS).await?;
//!
//! let id = uuid::Uuid::new_v4();
//! let mut tx = store.begin().await?;
//! Sql::of(tx.as_mut())?
//!     .query("INSERT INTO parcels (id, weight_g, label) VALUES ($1, $2, $3)")
//!     .bind(id).bind(1200).bind("fragile")
//!     .execute().await?;
//! tx.commit().await?;
//!
//! let mut tx = store.begin().await?;
//! let parcels: Vec<Parcel> = Sql::of(tx.as_mut())?
//!     .query("SELECT id, weight_g, label FROM parcels WHERE weight_g > $1 ORDER BY weight_g")
//!     .bind(1000)
//!     .fetch_all().await?;
//! assert_eq!(parcels, [Parcel { id, weight_g: 1200, label: "fragile".into() }]);
//! tx.rollback().await?;
//! store.shutdown().await;
//! # Ok(()) }
//! ```

// Without a driver every handle is uninhabited: the code is unreachable.
#![cfg_attr(
    not(any(feature = "postgres", feature = "sqlite")),
    allow(unused, unreachable_code)
)]

mod value;

use sqlx::{SqlSafeStr, SqlStr};
use storage_abstractions::{StorageError, Transaction};

pub use value::Value;

/// The bounds a row type or a scalar meets for each compiled-in driver
/// (empty for a driver that is not), so [`FromSqlRow`] and [`SqlScalar`]
/// name no driver.
#[doc(hidden)]
pub mod bounds {
    #[cfg(feature = "postgres")]
    mod pg {
        use sqlx::postgres::{PgRow, Postgres};
        /// A row type for PostgreSQL.
        pub trait PgFromRow: for<'r> sqlx::FromRow<'r, PgRow> {}
        impl<T: for<'r> sqlx::FromRow<'r, PgRow>> PgFromRow for T {}
        /// A column type for PostgreSQL.
        pub trait PgScalar: for<'r> sqlx::Decode<'r, Postgres> + sqlx::Type<Postgres> {}
        impl<T: for<'r> sqlx::Decode<'r, Postgres> + sqlx::Type<Postgres>> PgScalar for T {}
    }
    #[cfg(not(feature = "postgres"))]
    mod pg {
        /// Any type, without the PostgreSQL driver.
        pub trait PgFromRow {}
        impl<T> PgFromRow for T {}
        /// Any type, without the PostgreSQL driver.
        pub trait PgScalar {}
        impl<T> PgScalar for T {}
    }
    #[cfg(feature = "sqlite")]
    mod lite {
        use sqlx::sqlite::{Sqlite, SqliteRow};
        /// A row type for SQLite.
        pub trait SqliteFromRow: for<'r> sqlx::FromRow<'r, SqliteRow> {}
        impl<T: for<'r> sqlx::FromRow<'r, SqliteRow>> SqliteFromRow for T {}
        /// A column type for SQLite.
        pub trait SqliteScalar: for<'r> sqlx::Decode<'r, Sqlite> + sqlx::Type<Sqlite> {}
        impl<T: for<'r> sqlx::Decode<'r, Sqlite> + sqlx::Type<Sqlite>> SqliteScalar for T {}
    }
    #[cfg(not(feature = "sqlite"))]
    mod lite {
        /// Any type, without the SQLite driver.
        pub trait SqliteFromRow {}
        impl<T> SqliteFromRow for T {}
        /// Any type, without the SQLite driver.
        pub trait SqliteScalar {}
        impl<T> SqliteScalar for T {}
    }
    pub use lite::{SqliteFromRow, SqliteScalar};
    pub use pg::{PgFromRow, PgScalar};
}

/// A row type every compiled-in driver decodes: derive `sqlx::FromRow`.
pub trait FromSqlRow: bounds::PgFromRow + bounds::SqliteFromRow + Send + Unpin {}
impl<T: bounds::PgFromRow + bounds::SqliteFromRow + Send + Unpin> FromSqlRow for T {}

/// A single-column type every compiled-in driver decodes (`i64`, `String`,
/// `bool`, `f64`, `Vec<u8>`, `Uuid`, `OffsetDateTime`, `serde_json::Value`,
/// `Option` of them).
pub trait SqlScalar: bounds::PgScalar + bounds::SqliteScalar + Send + Unpin {}
impl<T: bounds::PgScalar + bounds::SqliteScalar + Send + Unpin> SqlScalar for T {}

enum Conn<'t> {
    #[cfg(feature = "postgres")]
    Postgres(&'t mut sqlx::PgConnection),
    #[cfg(feature = "sqlite")]
    Sqlite(&'t mut sqlx::SqliteConnection),
    /// Keeps the lifetime used when no driver is compiled in.
    #[allow(dead_code)]
    None(
        std::marker::PhantomData<&'t mut ()>,
        std::convert::Infallible,
    ),
}

/// The SQL handle of one unit of work's transaction.
pub struct Sql<'t> {
    conn: Conn<'t>,
}

impl std::fmt::Debug for Sql<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sql")
            .field("provider", &self.provider())
            .finish()
    }
}

/// The error for a transaction without a SQL connection this build knows.
fn no_sql() -> StorageError {
    StorageError::Invalid(
        "relational access needs storage.provider = \"sqlite\" or \"postgres\" (with feature \
         `sqlite` / `postgres` of storage-sql); this store has no SQL connection"
            .to_owned(),
    )
}

impl<'t> Sql<'t> {
    /// The handle of `tx`'s connection; [`StorageError::Invalid`] (naming
    /// the fix) on a provider without SQL, or one whose driver this build
    /// lacks.
    pub fn of(tx: &'t mut dyn Transaction) -> Result<Sql<'t>, StorageError> {
        let conn = tx.sql_connection().ok_or_else(no_sql)?;
        #[cfg(feature = "postgres")]
        if conn.is::<sqlx::PgConnection>() {
            let pg = conn.downcast_mut::<sqlx::PgConnection>().expect("checked");
            return Ok(Sql {
                conn: Conn::Postgres(pg),
            });
        }
        #[cfg(feature = "sqlite")]
        if let Some(lite) = conn.downcast_mut::<sqlx::SqliteConnection>() {
            return Ok(Sql {
                conn: Conn::Sqlite(lite),
            });
        }
        let _ = conn;
        Err(no_sql())
    }

    /// `postgres` or `sqlite`: for the rare statement that must differ.
    pub fn provider(&self) -> &'static str {
        match &self.conn {
            #[cfg(feature = "postgres")]
            Conn::Postgres(_) => "postgres",
            #[cfg(feature = "sqlite")]
            Conn::Sqlite(_) => "sqlite",
            Conn::None(_, never) => match *never {},
        }
    }

    /// A statement with `$1, $2, …` placeholders; bind values in order.
    /// The text must be a literal (or wrapped in `sqlx::AssertSqlSafe`
    /// after checking it holds no input).
    pub fn query(&mut self, sql: impl SqlSafeStr) -> Statement<'_> {
        let conn = match &mut self.conn {
            #[cfg(feature = "postgres")]
            Conn::Postgres(c) => Conn::Postgres(c),
            #[cfg(feature = "sqlite")]
            Conn::Sqlite(c) => Conn::Sqlite(c),
            Conn::None(_, never) => match *never {},
        };
        Statement {
            conn,
            sql: sql.into_sql_str(),
            values: Vec::new(),
        }
    }

    /// The PostgreSQL connection (in the unit of work's transaction), when
    /// running on PostgreSQL: plain sqlx from here.
    #[cfg(feature = "postgres")]
    pub fn postgres(&mut self) -> Option<&mut sqlx::PgConnection> {
        match &mut self.conn {
            Conn::Postgres(c) => Some(&mut **c),
            _ => None,
        }
    }

    /// The SQLite connection (in the unit of work's transaction), when
    /// running on SQLite: plain sqlx from here.
    #[cfg(feature = "sqlite")]
    pub fn sqlite(&mut self) -> Option<&mut sqlx::SqliteConnection> {
        match &mut self.conn {
            Conn::Sqlite(c) => Some(&mut **c),
            #[allow(unreachable_patterns)]
            _ => None,
        }
    }
}

/// One statement with its bound values; run it with one of the `fetch`
/// methods or [`Statement::execute`].
#[must_use = "a statement runs only when executed or fetched"]
pub struct Statement<'s> {
    conn: Conn<'s>,
    sql: SqlStr,
    values: Vec<Value>,
}

impl std::fmt::Debug for Statement<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Statement")
            .field("sql", &self.sql.as_str())
            .field("values", &self.values)
            .finish()
    }
}

/// Arguments of one driver from the bound values.
macro_rules! arguments {
    ($args:ty, $values:expr) => {{
        use sqlx::Arguments as _;
        let mut args = <$args>::default();
        for value in $values {
            let added = match value {
                Value::Bool(v) => args.add(v),
                Value::Int(v) => args.add(v),
                Value::Float(v) => args.add(v),
                Value::Text(v) => args.add(v),
                Value::Bytes(v) => args.add(v),
                Value::Uuid(v) => args.add(v),
                Value::Timestamp(v) => args.add(v),
                Value::Json(v) => args.add(v),
            };
            added.map_err(|e| StorageError::Invalid(format!("cannot bind a value: {e}")))?;
        }
        args
    }};
}

/// Runs `$run` (a sqlx call taking the statement text, the arguments and
/// the connection) on whichever driver the statement has.
macro_rules! on_driver {
    ($self:ident, |$sql:ident, $args:ident, $conn:ident| $run:expr) => {{
        let Statement {
            conn,
            sql: $sql,
            values,
        } = $self;
        match conn {
            #[cfg(feature = "postgres")]
            Conn::Postgres($conn) => {
                let $args = arguments!(sqlx::postgres::PgArguments, values);
                $run.map_err(map_error)
            }
            #[cfg(feature = "sqlite")]
            Conn::Sqlite($conn) => {
                let $args = arguments!(sqlx::sqlite::SqliteArguments, values);
                $run.map_err(map_error)
            }
            Conn::None(_, never) => match never {},
        }
    }};
}

impl Statement<'_> {
    /// Binds the next `$n`.
    pub fn bind(mut self, value: impl Into<Value>) -> Self {
        self.values.push(value.into());
        self
    }

    /// Runs it; returns the rows affected.
    pub async fn execute(self) -> Result<u64, StorageError> {
        on_driver!(self, |sql, args, conn| sqlx::query_with(sql, args)
            .execute(&mut *conn)
            .await
            .map(|done| done.rows_affected()))
    }

    /// Every row, typed.
    pub async fn fetch_all<T: FromSqlRow>(self) -> Result<Vec<T>, StorageError> {
        on_driver!(self, |sql, args, conn| sqlx::query_as_with(sql, args)
            .fetch_all(&mut *conn)
            .await)
    }

    /// The first row, if any.
    pub async fn fetch_optional<T: FromSqlRow>(self) -> Result<Option<T>, StorageError> {
        on_driver!(self, |sql, args, conn| sqlx::query_as_with(sql, args)
            .fetch_optional(&mut *conn)
            .await)
    }

    /// Exactly one row ([`StorageError::Backend`] if there is none).
    pub async fn fetch_one<T: FromSqlRow>(self) -> Result<T, StorageError> {
        on_driver!(self, |sql, args, conn| sqlx::query_as_with(sql, args)
            .fetch_one(&mut *conn)
            .await)
    }

    /// The first column of the one row (`SELECT count(*) …`).
    pub async fn fetch_scalar<T: SqlScalar>(self) -> Result<T, StorageError> {
        on_driver!(self, |sql, args, conn| sqlx::query_scalar_with(sql, args)
            .fetch_one(&mut *conn)
            .await)
    }

    /// The first column of the first row, if any.
    pub async fn fetch_scalar_optional<T: SqlScalar>(self) -> Result<Option<T>, StorageError> {
        on_driver!(self, |sql, args, conn| sqlx::query_scalar_with(sql, args)
            .fetch_optional(&mut *conn)
            .await)
    }
}

/// A driver error as the unit of work sees it.
fn map_error(error: sqlx::Error) -> StorageError {
    match &error {
        sqlx::Error::Database(db) => {
            let code = db.code().map(|c| c.into_owned()).unwrap_or_default();
            // SQLite: BUSY / LOCKED (extended codes share the low byte).
            let busy = code.parse::<i32>().is_ok_and(|c| matches!(c & 0xff, 5 | 6));
            // PostgreSQL: serialization failure, deadlock.
            let serialization = matches!(code.as_str(), "40001" | "40P01");
            if db.is_unique_violation() || busy || serialization {
                StorageError::Conflict {
                    collection: "sql".to_owned(),
                    id: db.constraint().unwrap_or("statement").to_owned(),
                    expected: 0,
                    actual: 0,
                }
            } else {
                StorageError::Backend(format!("SQL error {code}: {}", db.message()))
            }
        }
        sqlx::Error::Io(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => StorageError::Unavailable(format!("SQL: {error}")),
        _ => StorageError::Backend(format!("SQL: {error}")),
    }
}
