//! PostgreSQL storage provider of the service chassis (sqlx): pooled, migrated, with outbox and inbox tables.
