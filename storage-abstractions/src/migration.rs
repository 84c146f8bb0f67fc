//! A service's own schema migrations, embedded in its binary and applied by
//! the store at start-up (relational access; see `docs/storage.md`).

use thiserror::Error;

/// One migration of a service's own tables.
///
/// `sql` runs on every SQL provider unless a provider-specific text is
/// given: most DDL written with `bigint`, `text`, `uuid`, `timestamptz`,
/// `jsonb`, `boolean` and `double precision` columns runs unchanged on
/// PostgreSQL and SQLite (SQLite accepts any type name).
///
/// ```
/// use storage_abstractions::Migration;
///
/// const MIGRATIONS: &[Migration] = &[Migration::new(
///     1,
///     "packages",
///     "CREATE TABLE packages (id uuid PRIMARY KEY, weight_g bigint NOT NULL)",
/// )];
/// assert_eq!(MIGRATIONS[0].sql_for("sqlite"), MIGRATIONS[0].sql);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Migration {
    /// Increasing number; applied in this order, each once.
    pub version: i64,
    /// Short name, shown in logs and errors.
    pub name: &'static str,
    /// The SQL (one or more statements), without schema prefixes: it runs
    /// in the service's schema.
    pub sql: &'static str,
    /// PostgreSQL text, when it must differ from `sql`.
    pub postgres: Option<&'static str>,
    /// SQLite text, when it must differ from `sql`.
    pub sqlite: Option<&'static str>,
}

impl Migration {
    /// A migration whose SQL runs on every provider.
    pub const fn new(version: i64, name: &'static str, sql: &'static str) -> Self {
        Self {
            version,
            name,
            sql,
            postgres: None,
            sqlite: None,
        }
    }

    /// The same migration with a PostgreSQL-specific text.
    pub const fn on_postgres(mut self, sql: &'static str) -> Self {
        self.postgres = Some(sql);
        self
    }

    /// The same migration with a SQLite-specific text.
    pub const fn on_sqlite(mut self, sql: &'static str) -> Self {
        self.sqlite = Some(sql);
        self
    }

    /// The text `provider` runs.
    pub fn sql_for(&self, provider: &str) -> &'static str {
        match provider {
            "postgres" => self.postgres.unwrap_or(self.sql),
            "sqlite" => self.sqlite.unwrap_or(self.sql),
            _ => self.sql,
        }
    }

    /// Checks a list: versions strictly increasing and at least 1.
    pub fn validate_list(migrations: &[Migration]) -> Result<(), MigrationError> {
        let mut last = 0;
        for migration in migrations {
            if migration.version <= last {
                return Err(MigrationError::Invalid(format!(
                    "migration {} ({}): versions must start at 1 and increase, after {last}",
                    migration.version, migration.name
                )));
            }
            last = migration.version;
        }
        Ok(())
    }
}

/// Why a service's migrations could not be applied.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum MigrationError {
    /// The provider has no SQL (the `inmemory` provider).
    #[error(
        "this service uses relational tables, which storage.provider = `{provider}` does not have: \
         set storage.provider = \"sqlite\" (embedded, the default for tables) or \"postgres\""
    )]
    NotSupported {
        /// The configured provider.
        provider: &'static str,
    },
    /// A migration failed; nothing of it was applied.
    #[error("migration {version} ({name}) failed: {error}")]
    Failed {
        /// Migration number.
        version: i64,
        /// Migration name.
        name: &'static str,
        /// The database's error for the failing statement.
        error: String,
    },
    /// The list itself is wrong (versions out of order).
    #[error("invalid migrations: {0}")]
    Invalid(String),
    /// The database could not be reached.
    #[error("cannot apply migrations: {0}")]
    Unavailable(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn provider_texts_and_order() {
        let m = Migration::new(1, "a", "CREATE TABLE a (id bigint)")
            .on_sqlite("CREATE TABLE a (id INTEGER)");
        assert_eq!(m.sql_for("postgres"), "CREATE TABLE a (id bigint)");
        assert_eq!(m.sql_for("sqlite"), "CREATE TABLE a (id INTEGER)");
        assert!(Migration::validate_list(&[m, Migration::new(2, "b", "")]).is_ok());
        assert!(Migration::validate_list(&[Migration::new(2, "b", ""), m]).is_err());
        assert!(Migration::validate_list(&[Migration::new(0, "z", "")]).is_err());
    }

    #[test]
    fn not_supported_names_the_fix_in_one_line() {
        let message = MigrationError::NotSupported {
            provider: "inmemory",
        }
        .to_string();
        assert!(!message.contains('\n'));
        assert!(
            message.contains("storage.provider = \"sqlite\""),
            "{message}"
        );
    }
}
