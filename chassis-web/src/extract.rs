//! Extractors whose rejections are problem details.

use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::request::Parts;
use http::{HeaderMap, HeaderValue, StatusCode, header};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::correlation::CorrelationId;
use crate::problem::{FieldError, Problem};

/// JSON body extractor and response, like `axum::Json`, whose rejections are
/// RFC 9457 problems:
///
/// | cause | status |
/// |---|---|
/// | no `application/json` content type | 415 |
/// | body larger than `http.body_limit` | 413 |
/// | not JSON (syntax error, truncated) | 400 |
/// | wrong type, missing field, unknown variant | 422, `errors[].field` names the field path |
///
/// ```
/// use chassis_web::{Json, Problem};
/// use serde::Deserialize;
///
/// #[derive(Deserialize, serde::Serialize)]
/// struct PlaceOrder { customer: String, items: Vec<Item> }
/// #[derive(Deserialize, serde::Serialize)]
/// struct Item { sku: String, quantity: u32 }
///
/// async fn place(Json(order): Json<PlaceOrder>) -> Result<Json<PlaceOrder>, Problem> {
///     Ok(Json(order))
/// }
/// let _router: axum::Router = axum::Router::new().route("/orders", axum::routing::post(place));
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct Json<T>(pub T);

impl<T, S> FromRequest<S> for Json<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = Problem;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        if !is_json(req.headers()) {
            return Err(Problem::new(StatusCode::UNSUPPORTED_MEDIA_TYPE)
                .with_detail("expected a request body with content type `application/json`"));
        }
        let bytes = Bytes::from_request(req, state)
            .await
            .map_err(|rejection| body_problem(rejection.status(), &rejection.body_text()))?;
        decode(&bytes).map(Json)
    }
}

/// Decodes a JSON body with the same problem mapping as [`Json`].
///
/// A number written with a zero fraction (`2.0`, `1e2`) is read as an
/// integer where the type wants one: JSON Schema's `integer` — what the
/// OpenAPI document promises — includes them, serde's integer types do not.
/// Only a body refused for its data is read a second time that way, so the
/// usual body costs nothing more.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, Problem> {
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let refused = match serde_path_to_error::deserialize(&mut deserializer) {
        Ok(value) => {
            deserializer.end().map_err(|e| malformed(&e))?;
            return Ok(value);
        }
        Err(error) => error,
    };
    if refused.inner().classify() == serde_json::error::Category::Data
        && let Ok(mut value) = serde_json::from_slice::<serde_json::Value>(bytes)
        && integral_numbers_as_integers(&mut value)
    {
        return serde_path_to_error::deserialize(value).map_err(data_problem);
    }
    Err(data_problem(refused))
}

/// The problem of a body refused by deserialization: 422 naming the field
/// for data errors, 400 for JSON that is not JSON.
fn data_problem(error: serde_path_to_error::Error<serde_json::Error>) -> Problem {
    let path = error.path().to_string();
    let inner = error.into_inner();
    match inner.classify() {
        serde_json::error::Category::Data => {
            let (field, detail) = field_of(&path, &inner);
            Problem::validation(
                format!("invalid request body: {field}: {detail}"),
                vec![FieldError::new(field, detail)],
            )
        }
        _ => malformed(&inner),
    }
}

/// Rewrites every floating-point number without a fraction that fits an
/// integer as that integer; whether any was rewritten.
fn integral_numbers_as_integers(value: &mut serde_json::Value) -> bool {
    use serde_json::Value;
    match value {
        Value::Number(n) => {
            let Some(f) = n.as_f64().filter(|f| n.is_f64() && f.fract() == 0.0) else {
                return false;
            };
            // Bounds that convert exactly (2^63 and 2^64 are powers of two).
            let integer = if (0.0..18_446_744_073_709_551_616.0).contains(&f) {
                Value::from(f as u64)
            } else if (-9_223_372_036_854_775_808.0..0.0).contains(&f) {
                Value::from(f as i64)
            } else {
                return false;
            };
            *value = integer;
            true
        }
        Value::Array(items) => items
            .iter_mut()
            .fold(false, |any, item| integral_numbers_as_integers(item) | any),
        Value::Object(members) => members.values_mut().fold(false, |any, member| {
            integral_numbers_as_integers(member) | any
        }),
        _ => false,
    }
}

fn malformed(error: &serde_json::Error) -> Problem {
    Problem::bad_request(format!("malformed JSON: {error}"))
}

/// Field path and message of a data error; `missing field` errors point at
/// the struct, so the missing field's name is appended.
fn field_of(path: &str, error: &serde_json::Error) -> (String, String) {
    let message = error.to_string();
    // serde_json appends " at line L column C": position is noise for a field error.
    let detail = match message.rfind(" at line ") {
        Some(i) => message[..i].to_owned(),
        None => message,
    };
    let missing = detail
        .strip_prefix("missing field `")
        .and_then(|rest| rest.strip_suffix('`'));
    let field = match (path, missing) {
        (".", Some(name)) => name.to_owned(),
        (_, Some(name)) => format!("{path}.{name}"),
        (_, None) => path.to_owned(),
    };
    (field, detail)
}

fn is_json(headers: &HeaderMap) -> bool {
    let Some(Ok(content_type)) = headers.get(header::CONTENT_TYPE).map(HeaderValue::to_str) else {
        return false;
    };
    let essence = content_type.split(';').next().unwrap_or_default().trim();
    let essence = essence.to_ascii_lowercase();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

/// The problem for a body that could not be read.
pub(crate) fn body_problem(status: StatusCode, text: &str) -> Problem {
    if status == StatusCode::PAYLOAD_TOO_LARGE {
        Problem::new(status).with_detail("the request body is larger than the configured limit")
    } else {
        Problem::new(status).with_detail(text.to_owned())
    }
}

impl<T: Serialize> IntoResponse for Json<T> {
    fn into_response(self) -> Response {
        axum::Json(self.0).into_response()
    }
}

impl<S: Send + Sync> FromRequestParts<S> for CorrelationId {
    type Rejection = Problem;

    async fn from_request_parts(_parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        crate::correlation::current_correlation_id()
            .map(CorrelationId)
            .ok_or_else(|| {
                Problem::internal("CorrelationId extractor used outside the chassis middleware")
            })
    }
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::*;

    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct Order {
        customer: String,
        items: Vec<Item>,
    }

    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct Item {
        sku: String,
        quantity: u32,
    }

    fn field(p: &Problem) -> String {
        p.extensions["errors"][0]["field"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    #[test]
    fn maps_errors_to_status_and_field_path() {
        let p = decode::<Order>(br#"{"customer": "c", "items": [{"sku": "a", "quantity": "x"}]}"#)
            .unwrap_err();
        assert_eq!(p.status, 422);
        assert_eq!(field(&p), "items[0].quantity");

        let p = decode::<Order>(br#"{"customer": "c", "items": [{"quantity": 1}]}"#).unwrap_err();
        assert_eq!(p.status, 422);
        assert_eq!(field(&p), "items[0].sku");

        let p = decode::<Order>(br#"{"items": []}"#).unwrap_err();
        assert_eq!(field(&p), "customer");

        let p = decode::<Order>(br#"{"customer": "c", "items": [}"#).unwrap_err();
        assert_eq!(p.status, 400);
        assert!(p.detail.clone().unwrap().starts_with("malformed JSON"));

        let p = decode::<Order>(br#"{"customer": "c", "items": []} trailing"#).unwrap_err();
        assert_eq!(p.status, 400);
    }

    #[test]
    fn integers_written_with_a_zero_fraction_are_integers() {
        let order: Order = decode(
            br#"{"customer": "c", "items": [{"sku": "a", "quantity": 3.0}, {"sku": "b", "quantity": 1e2}]}"#,
        )
        .unwrap();
        assert_eq!(order.items[0].quantity, 3);
        assert_eq!(order.items[1].quantity, 100);
        // A fraction, or a number out of the type's range, is still refused
        // with the field named.
        for bad in ["2.5", "-1.0", "5e9"] {
            let body =
                format!(r#"{{"customer": "c", "items": [{{"sku": "a", "quantity": {bad}}}]}}"#);
            let p = decode::<Order>(body.as_bytes()).unwrap_err();
            assert_eq!(
                (p.status, field(&p)),
                (422, "items[0].quantity".into()),
                "{bad}"
            );
        }
    }

    #[test]
    fn json_content_types() {
        let mut headers = HeaderMap::new();
        assert!(!is_json(&headers));
        for ok in [
            "application/json",
            "application/json; charset=utf-8",
            "application/problem+json",
        ] {
            headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(ok));
            assert!(is_json(&headers), "{ok}");
        }
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
        assert!(!is_json(&headers));
    }
}
