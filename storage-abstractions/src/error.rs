use thiserror::Error;

/// What can go wrong in a storage operation.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum StorageError {
    /// The record does not exist.
    #[error("{collection}/{id} not found")]
    NotFound {
        /// Collection name.
        collection: String,
        /// Record id.
        id: String,
    },
    /// Optimistic concurrency: the record changed since it was read, or an
    /// insert met an existing id.
    #[error(
        "concurrency conflict on {collection}/{id}: expected version {expected}, found {actual}"
    )]
    Conflict {
        /// Collection name.
        collection: String,
        /// Record id.
        id: String,
        /// The version the caller based its change on (0 = expected absent).
        expected: u64,
        /// The version in the store (0 = absent, or not known: a provider
        /// that detects the conflict by lock contention, like SQLite's
        /// single writer, cannot tell).
        actual: u64,
    },
    /// The store cannot be reached or refused for a transient reason
    /// (connection lost, pool exhausted, serialization failure). Retry later.
    #[error("storage unavailable: {0}")]
    Unavailable(String),
    /// The request is invalid (bad collection name, version 0, ...).
    #[error("invalid storage request: {0}")]
    Invalid(String),
    /// Any other backend failure.
    #[error("storage backend error: {0}")]
    Backend(String),
}

impl StorageError {
    /// Shorthand for [`StorageError::NotFound`].
    pub fn not_found(collection: &str, id: &str) -> Self {
        Self::NotFound {
            collection: collection.to_owned(),
            id: id.to_owned(),
        }
    }

    /// Whether the same operation may succeed if tried again.
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Unavailable(_) | Self::Conflict { .. })
    }
}
