//! Typed domain errors. The host (chassis-web) maps them to RFC 9457
//! `application/problem+json` through [`DomainError::status`],
//! [`DomainError::code`] and [`DomainError::title`]; these three are stable.

use std::fmt;

use messaging_abstractions::{EncodeError, HandlerError};
use serde::{Deserialize, Serialize};
use storage_abstractions::StorageError;
use thiserror::Error;

/// One invalid input field: of a command in the domain, of a request body at
/// the HTTP edge (the `errors` member of a 422 problem).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldError {
    /// Path of the field, e.g. `items[0].weight_kg` (`.` for the whole body).
    pub field: String,
    /// What is wrong with it, e.g. `must be greater than 0`.
    pub detail: String,
}

impl FieldError {
    /// A field error.
    pub fn new(field: impl Into<String>, detail: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            detail: detail.into(),
        }
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.detail)
    }
}

/// What went wrong in a command or a query of the domain.
///
/// | variant | HTTP status | [`code`](DomainError::code) |
/// |---|---|---|
/// | [`Validation`](DomainError::Validation) | 422 | `validation` |
/// | [`NotFound`](DomainError::NotFound) | 404 | `not_found` |
/// | [`Conflict`](DomainError::Conflict) | 409 | `conflict` |
/// | [`Concurrency`](DomainError::Concurrency) | 409 | `concurrency` |
/// | [`Forbidden`](DomainError::Forbidden) | 403 | `forbidden` |
/// | [`Unavailable`](DomainError::Unavailable) | 503 | `unavailable` |
/// | [`Internal`](DomainError::Internal) | 500 | `internal` |
///
/// The `Display` text of `Internal` is meant for logs, not for clients:
/// the host shows clients only [`DomainError::public_detail`].
///
/// ```
/// use chassis_domain::{DomainError, FieldError};
///
/// let err = DomainError::validation([FieldError::new("items[0].weight_kg", "must be > 0")]);
/// assert_eq!(err.status(), 422);
/// assert_eq!(err.code(), "validation");
/// assert_eq!(DomainError::not_found("order", "o-1").status(), 404);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum DomainError {
    /// The input breaks one or more rules; each error names the field path.
    #[error("validation failed: {}", join(.errors))]
    Validation {
        /// The invalid fields (at least one).
        errors: Vec<FieldError>,
    },
    /// The addressed entity does not exist.
    #[error("{entity} `{id}` not found")]
    NotFound {
        /// Kind of entity (e.g. `order`, or the collection name).
        entity: String,
        /// Its id.
        id: String,
    },
    /// The request contradicts the current state (e.g. "package already
    /// sent"). Retrying the same request will fail again.
    #[error("conflict: {reason}")]
    Conflict {
        /// Why, in the domain's words.
        reason: String,
    },
    /// Optimistic concurrency: the entity changed since it was read. Retrying
    /// the whole command (re-reading the entity) may succeed.
    #[error(
        "{entity} `{id}` was changed concurrently (expected version {expected}, found {actual})"
    )]
    Concurrency {
        /// Kind of entity (collection name).
        entity: String,
        /// Its id.
        id: String,
        /// The version the change was based on.
        expected: u64,
        /// The version found.
        actual: u64,
    },
    /// The caller may not do this.
    #[error("forbidden: {reason}")]
    Forbidden {
        /// Why.
        reason: String,
    },
    /// A dependency (database, event bus) is unavailable; try again later.
    #[error("service unavailable: {reason}")]
    Unavailable {
        /// What is unavailable (for logs).
        reason: String,
    },
    /// A bug or an unexpected failure (undecodable stored document, ...).
    #[error("internal error: {reason}")]
    Internal {
        /// What happened (for logs, never shown to clients).
        reason: String,
    },
}

fn join(errors: &[FieldError]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

impl DomainError {
    /// A validation error for several fields.
    pub fn validation(errors: impl IntoIterator<Item = FieldError>) -> Self {
        Self::Validation {
            errors: errors.into_iter().collect(),
        }
    }

    /// A validation error for one field.
    pub fn invalid_field(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::validation([FieldError::new(field, message)])
    }

    /// A not-found error.
    pub fn not_found(entity: impl Into<String>, id: impl fmt::Display) -> Self {
        Self::NotFound {
            entity: entity.into(),
            id: id.to_string(),
        }
    }

    /// A business conflict.
    pub fn conflict(reason: impl Into<String>) -> Self {
        Self::Conflict {
            reason: reason.into(),
        }
    }

    /// A forbidden operation.
    pub fn forbidden(reason: impl Into<String>) -> Self {
        Self::Forbidden {
            reason: reason.into(),
        }
    }

    /// A dependency is unavailable.
    pub fn unavailable(reason: impl Into<String>) -> Self {
        Self::Unavailable {
            reason: reason.into(),
        }
    }

    /// An unexpected failure.
    pub fn internal(reason: impl Into<String>) -> Self {
        Self::Internal {
            reason: reason.into(),
        }
    }

    /// The HTTP status code this error maps to.
    pub fn status(&self) -> u16 {
        match self {
            Self::Validation { .. } => 422,
            Self::NotFound { .. } => 404,
            Self::Conflict { .. } | Self::Concurrency { .. } => 409,
            Self::Forbidden { .. } => 403,
            Self::Unavailable { .. } => 503,
            Self::Internal { .. } => 500,
        }
    }

    /// A stable machine-readable code (used as the last segment of the
    /// problem `type` URI).
    pub fn code(&self) -> &'static str {
        match self {
            Self::Validation { .. } => "validation",
            Self::NotFound { .. } => "not_found",
            Self::Conflict { .. } => "conflict",
            Self::Concurrency { .. } => "concurrency",
            Self::Forbidden { .. } => "forbidden",
            Self::Unavailable { .. } => "unavailable",
            Self::Internal { .. } => "internal",
        }
    }

    /// A short, stable human-readable summary (the problem `title`).
    pub fn title(&self) -> &'static str {
        match self {
            Self::Validation { .. } => "Validation failed",
            Self::NotFound { .. } => "Not found",
            Self::Conflict { .. } => "Conflict",
            Self::Concurrency { .. } => "Concurrent modification",
            Self::Forbidden { .. } => "Forbidden",
            Self::Unavailable { .. } => "Service unavailable",
            Self::Internal { .. } => "Internal error",
        }
    }

    /// The text a client may see (the problem `detail`): the `Display` text,
    /// except for [`Unavailable`](Self::Unavailable) and
    /// [`Internal`](Self::Internal) whose reasons may reveal internals.
    pub fn public_detail(&self) -> String {
        match self {
            Self::Unavailable { .. } => "a dependency is unavailable, try again later".into(),
            Self::Internal { .. } => "an internal error occurred".into(),
            other => other.to_string(),
        }
    }

    /// The invalid fields of a validation error (empty otherwise).
    pub fn field_errors(&self) -> &[FieldError] {
        match self {
            Self::Validation { errors } => errors,
            _ => &[],
        }
    }

    /// Whether running the same command again may succeed (concurrency
    /// conflict, unavailable dependency).
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Concurrency { .. } | Self::Unavailable { .. })
    }
}

impl From<StorageError> for DomainError {
    fn from(error: StorageError) -> Self {
        match error {
            StorageError::NotFound { collection, id } => Self::NotFound {
                entity: collection,
                id,
            },
            StorageError::Conflict {
                collection,
                id,
                expected,
                actual,
            } => Self::Concurrency {
                entity: collection,
                id,
                expected,
                actual,
            },
            StorageError::Unavailable(reason) => Self::Unavailable { reason },
            other @ (StorageError::Invalid(_) | StorageError::Backend(_)) => Self::Internal {
                reason: other.to_string(),
            },
        }
    }
}

impl From<EncodeError> for DomainError {
    fn from(error: EncodeError) -> Self {
        Self::internal(error.to_string())
    }
}

/// A message handler built on domain code: retryable domain errors become
/// retryable handler failures, the others permanent ones (dead-lettered).
impl From<DomainError> for HandlerError {
    fn from(error: DomainError) -> Self {
        if error.is_retryable() {
            HandlerError::retryable(error)
        } else {
            HandlerError::permanent(error)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_codes_and_codes_are_stable() {
        let cases = [
            (
                DomainError::invalid_field("a.b", "required"),
                422,
                "validation",
            ),
            (DomainError::not_found("order", "o-1"), 404, "not_found"),
            (DomainError::conflict("already sent"), 409, "conflict"),
            (
                DomainError::from(StorageError::Conflict {
                    collection: "orders".into(),
                    id: "o-1".into(),
                    expected: 1,
                    actual: 2,
                }),
                409,
                "concurrency",
            ),
            (DomainError::forbidden("not yours"), 403, "forbidden"),
            (DomainError::unavailable("db down"), 503, "unavailable"),
            (DomainError::internal("bug"), 500, "internal"),
        ];
        for (err, status, code) in cases {
            assert_eq!(err.status(), status, "{err}");
            assert_eq!(err.code(), code, "{err}");
            assert!(!err.title().is_empty());
        }
    }

    #[test]
    fn validation_lists_field_paths() {
        let err = DomainError::validation([
            FieldError::new("items[0].weight_kg", "must be > 0"),
            FieldError::new("customer_id", "required"),
        ]);
        assert_eq!(
            err.to_string(),
            "validation failed: items[0].weight_kg: must be > 0; customer_id: required"
        );
        assert_eq!(err.field_errors().len(), 2);
        assert_eq!(err.public_detail(), err.to_string());
    }

    #[test]
    fn internals_are_not_public() {
        let err = DomainError::from(StorageError::Backend("password=hunter2".into()));
        assert_eq!(err.code(), "internal");
        assert!(!err.public_detail().contains("hunter2"));
    }

    #[test]
    fn storage_errors_map_precisely() {
        assert_eq!(
            DomainError::from(StorageError::not_found("orders", "o-9")),
            DomainError::not_found("orders", "o-9")
        );
        assert!(DomainError::from(StorageError::Unavailable("x".into())).is_retryable());
    }

    #[test]
    fn handler_error_kind_follows_retryability() {
        assert!(HandlerError::from(DomainError::unavailable("db")).is_retryable());
        assert!(!HandlerError::from(DomainError::conflict("sent")).is_retryable());
    }
}
