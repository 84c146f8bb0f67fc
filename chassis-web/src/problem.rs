//! RFC 9457 problem details: the one error format of every chassis service.

use std::collections::BTreeMap;
use std::fmt;

use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};
use serde::{Deserialize, Serialize};

pub use chassis_domain::FieldError;

use crate::correlation;

pub use chassis_core::PROBLEM_JSON;

/// An RFC 9457 problem: what handlers return as their error, and what the
/// middleware turns every framework error (404, 405, 413, 415, timeouts,
/// panics) into.
///
/// ```
/// use chassis_web::Problem;
/// use http::StatusCode;
///
/// async fn handler() -> Result<String, Problem> {
///     Err(Problem::not_found("order o-1 does not exist"))
/// }
///
/// let p = Problem::new(StatusCode::CONFLICT)
///     .with_detail("order o-1 changed meanwhile")
///     .with_extension("expected_version", 3);
/// assert_eq!(p.status, 409);
/// assert_eq!(p.title, "Conflict");
/// ```
///
/// `Problem` is one pointer wide (the members live in a [`ProblemDetails`]
/// box, reachable through `Deref`), so `Result<T, Problem>` stays small.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Problem(Box<ProblemDetails>);

/// The members of a [`Problem`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProblemDetails {
    /// A URI identifying the problem type; `about:blank` when the status says
    /// it all.
    #[serde(rename = "type", default = "about_blank")]
    pub problem_type: String,
    /// Short summary of the problem type.
    pub title: String,
    /// The HTTP status code.
    pub status: u16,
    /// Explanation of this occurrence, for the client.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// URI of this occurrence (the request path, as the chassis fills it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance: Option<String>,
    /// Extension members (`correlation_id`, `errors`, ...).
    #[serde(flatten)]
    pub extensions: BTreeMap<String, serde_json::Value>,
}

fn about_blank() -> String {
    "about:blank".to_owned()
}

/// The name services use for their handler error type; the same as [`Problem`].
pub type ApiError = Problem;

/// `Result` of a handler whose error is a [`Problem`].
pub type ApiResult<T> = Result<T, Problem>;

impl Problem {
    /// A problem of this status, titled by the status' reason phrase.
    pub fn new(status: StatusCode) -> Self {
        Self(Box::new(ProblemDetails {
            problem_type: about_blank(),
            title: status.canonical_reason().unwrap_or("Error").to_owned(),
            status: status.as_u16(),
            detail: None,
            instance: None,
            extensions: BTreeMap::new(),
        }))
    }

    /// Sets the detail.
    pub fn with_detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }

    /// Sets the title.
    pub fn with_title(mut self, title: impl Into<String>) -> Self {
        self.title = title.into();
        self
    }

    /// Sets the type URI.
    pub fn with_type(mut self, uri: impl Into<String>) -> Self {
        self.problem_type = uri.into();
        self
    }

    /// Sets the instance.
    pub fn with_instance(mut self, instance: impl Into<String>) -> Self {
        self.instance = Some(instance.into());
        self
    }

    /// Adds an extension member.
    pub fn with_extension(mut self, key: impl Into<String>, value: impl Serialize) -> Self {
        let value = serde_json::to_value(value).unwrap_or(serde_json::Value::Null);
        self.extensions.insert(key.into(), value);
        self
    }

    /// 400, the request cannot be read.
    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST).with_detail(detail)
    }

    /// 404.
    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND).with_detail(detail)
    }

    /// 409, e.g. an optimistic-concurrency conflict.
    pub fn conflict(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT).with_detail(detail)
    }

    /// 422 with the field errors as the `errors` extension
    /// (`[{"field": "items[0].price", "detail": "..."}]`).
    pub fn validation(detail: impl Into<String>, errors: Vec<FieldError>) -> Self {
        let problem = Self::new(StatusCode::UNPROCESSABLE_ENTITY).with_detail(detail);
        if errors.is_empty() {
            problem
        } else {
            problem.with_extension("errors", errors)
        }
    }

    /// 500 that says nothing about the cause. The cause is logged at ERROR
    /// (with the request's correlation id), never sent to the client.
    pub fn internal(cause: impl fmt::Display) -> Self {
        tracing::error!(error = %cause, "internal error");
        Self::new(StatusCode::INTERNAL_SERVER_ERROR)
            .with_detail("The server could not complete the request.")
    }

    /// The status as a [`StatusCode`] (500 if the number is not a status).
    pub fn status_code(&self) -> StatusCode {
        StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }
}

impl std::ops::Deref for Problem {
    type Target = ProblemDetails;

    fn deref(&self) -> &ProblemDetails {
        &self.0
    }
}

impl std::ops::DerefMut for Problem {
    fn deref_mut(&mut self) -> &mut ProblemDetails {
        &mut self.0
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.status, self.title)?;
        if let Some(detail) = &self.detail {
            write!(f, ": {detail}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Problem {}

impl IntoResponse for Problem {
    fn into_response(mut self) -> Response {
        if let Some(id) = correlation::current_correlation_id() {
            self.extensions
                .entry("correlation_id".to_owned())
                .or_insert(serde_json::Value::String(id));
        }
        let status = self.status_code();
        let body = serde_json::to_vec(&self).unwrap_or_default();
        let mut response = (status, body).into_response();
        response
            .headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        response
    }
}

/// Base of the `type` URI of problems mapped from domain errors; the
/// error's stable code is appended (`.../not_found`).
pub const DOMAIN_PROBLEM_BASE: &str = "urn:chassis:problem:";

/// Maps a domain error to its problem: validation 422 (with `errors`), not
/// found 404, conflict and concurrency 409, forbidden 403, unavailable 503,
/// internal 500. Unavailable and internal details go to the log only.
impl From<chassis_domain::DomainError> for Problem {
    fn from(error: chassis_domain::DomainError) -> Self {
        let status =
            StatusCode::from_u16(error.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        if status.is_server_error() {
            tracing::error!(%error, "domain error");
        }
        let errors: Vec<FieldError> = error.field_errors().to_vec();
        let mut problem = Problem::new(status)
            .with_type(format!("{DOMAIN_PROBLEM_BASE}{}", error.code()))
            .with_title(error.title())
            .with_detail(error.public_detail());
        if !errors.is_empty() {
            problem = problem.with_extension("errors", errors);
        }
        problem
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serializes_rfc9457_members() {
        let p = Problem::validation(
            "invalid body",
            vec![FieldError::new("items[0].price", "expected a number")],
        )
        .with_instance("/orders");
        let json = serde_json::to_value(&p).unwrap();
        assert_eq!(json["type"], "about:blank");
        assert_eq!(json["title"], "Unprocessable Entity");
        assert_eq!(json["status"], 422);
        assert_eq!(json["instance"], "/orders");
        assert_eq!(json["errors"][0]["field"], "items[0].price");
        let back: Problem = serde_json::from_value(json).unwrap();
        assert_eq!(back, p);
    }

    #[test]
    fn response_has_problem_content_type_and_status() {
        let response = Problem::conflict("changed").into_response();
        assert_eq!(response.status(), StatusCode::CONFLICT);
        assert_eq!(response.headers()[header::CONTENT_TYPE], PROBLEM_JSON);
    }

    #[test]
    fn domain_errors_map_to_status_and_fields() {
        use chassis_domain::{DomainError, FieldError as DomainField};
        let p = Problem::from(DomainError::validation([DomainField::new(
            "items[0].weight_kg",
            "must be > 0",
        )]));
        assert_eq!(p.status, 422);
        assert_eq!(p.problem_type, "urn:chassis:problem:validation");
        assert_eq!(p.extensions["errors"][0]["field"], "items[0].weight_kg");
        assert_eq!(
            Problem::from(DomainError::not_found("order", "o-1")).status,
            404
        );
        assert_eq!(
            Problem::from(DomainError::conflict("already sent")).status,
            409
        );
        let p = Problem::from(DomainError::internal("decode failed: row 7 secret"));
        assert_eq!(p.status, 500);
        assert!(!p.to_string().contains("secret"));
    }

    #[test]
    fn internal_hides_the_cause() {
        let p = Problem::internal("connection string postgres://x:secret@db");
        assert!(!p.to_string().contains("secret"));
        assert_eq!(p.status, 500);
    }
}
