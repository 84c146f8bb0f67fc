//! A service's own schema migrations, embedded in its binary and applied by
//! the store at start-up (relational access; see `docs/storage.md`).

use thiserror::Error;

/// One migration of a service's own tables.
///
/// `sql` is the portable text: it runs on every SQL provider. Most DDL
/// written with `bigint`, `text`, `uuid`, `timestamptz`, `jsonb`, `boolean`
/// and `double precision` columns runs unchanged everywhere (see
/// `docs/storage.md`). Where one database needs a different text, add an
/// override keyed by the provider's dialect name (its `storage.provider`
/// value, which the provider passes to [`Migration::sql_for`]). The keys are
/// plain names, so a new SQL provider needs no change here.
///
/// ```
/// use storage_abstractions::Migration;
///
/// const MIGRATIONS: &[Migration] = &[
///     Migration::new(
///         1,
///         "packages",
///         "CREATE TABLE packages (id uuid PRIMARY KEY, weight_g bigint NOT NULL)",
///     ),
///     Migration::new(2, "seq", "CREATE SEQUENCE labels").overrides(&[(
///         "sqlite",
///         "CREATE TABLE labels (n INTEGER PRIMARY KEY AUTOINCREMENT)",
///     )]),
/// ];
/// assert_eq!(MIGRATIONS[0].sql_for("sqlite"), MIGRATIONS[0].sql);
/// assert!(MIGRATIONS[1].sql_for("sqlite").starts_with("CREATE TABLE"));
/// assert_eq!(MIGRATIONS[1].sql_for("postgres"), "CREATE SEQUENCE labels");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Migration {
    /// Increasing number; applied in this order, each once.
    pub version: i64,
    /// Short name, shown in logs and errors.
    pub name: &'static str,
    /// The portable SQL (one or more statements), without schema prefixes:
    /// it runs in the service's schema.
    pub sql: &'static str,
    /// Texts replacing `sql` on one dialect: `(dialect name, sql)`.
    pub overrides: &'static [(&'static str, &'static str)],
}

impl Migration {
    /// A migration whose SQL runs on every provider.
    pub const fn new(version: i64, name: &'static str, sql: &'static str) -> Self {
        Self {
            version,
            name,
            sql,
            overrides: &[],
        }
    }

    /// The same migration with dialect-specific texts, `(dialect, sql)`.
    pub const fn overrides(mut self, overrides: &'static [(&'static str, &'static str)]) -> Self {
        self.overrides = overrides;
        self
    }

    /// The text the provider of dialect `dialect` runs: its override, or the
    /// portable `sql`.
    pub fn sql_for(&self, dialect: &str) -> &'static str {
        self.overrides
            .iter()
            .find(|(name, _)| *name == dialect)
            .map_or(self.sql, |&(_, sql)| sql)
    }

    /// Checks a list: versions strictly increasing and at least 1, and no
    /// dialect overridden twice in one migration.
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
            for (i, (dialect, _)) in migration.overrides.iter().enumerate() {
                if migration.overrides[..i].iter().any(|(d, _)| d == dialect) {
                    return Err(MigrationError::Invalid(format!(
                        "migration {} ({}): two overrides for dialect `{dialect}`",
                        migration.version, migration.name
                    )));
                }
            }
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
            .overrides(&[("sqlite", "CREATE TABLE a (id INTEGER)")]);
        assert_eq!(m.sql_for("postgres"), "CREATE TABLE a (id bigint)");
        assert_eq!(m.sql_for("sqlite"), "CREATE TABLE a (id INTEGER)");
        assert_eq!(m.sql_for("a-third-dialect"), "CREATE TABLE a (id bigint)");
        assert!(Migration::validate_list(&[m, Migration::new(2, "b", "")]).is_ok());
        assert!(Migration::validate_list(&[Migration::new(2, "b", ""), m]).is_err());
        assert!(Migration::validate_list(&[Migration::new(0, "z", "")]).is_err());
        let twice = Migration::new(1, "t", "").overrides(&[("sqlite", "a"), ("sqlite", "b")]);
        assert!(Migration::validate_list(&[twice]).is_err());
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
