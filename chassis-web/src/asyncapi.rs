//! The service's AsyncAPI 3.0 document: served at [`ASYNCAPI_PATH`] and
//! printed by [`PRINT_ASYNCAPI_FLAG`](crate::PRINT_ASYNCAPI_FLAG).
//!
//! A service declares what it exchanges on the builder
//! ([`ServiceHostBuilder::publishes`](crate::ServiceHostBuilder::publishes),
//! `subscribes`, `requests`, `answers`); the host adds the configured
//! provider's broker side ([`messaging_init::broker_binding`]) and renders
//! it with [`messaging_abstractions::asyncapi::document`].
//!
//! With the `openapi` feature, [`message_schema`] makes a message's payload
//! schema from the `utoipa::ToSchema` of its type, the machinery the HTTP
//! API's OpenAPI document uses, so both documents describe a type the same
//! way. utoipa writes OpenAPI 3.1 schemas, that is JSON Schema 2020-12 with
//! `$ref`s into `components.schemas`; [`message_schema`] inlines every
//! reference so a payload schema stands alone, and what is left keeps to
//! JSON Schema draft 07, the `schemaFormat` the document names.

use axum::Router;
use axum::routing::get;
use serde_json::Value;

/// Where the host serves the document (unauthenticated by default, like
/// `/openapi.json`: see `security.auth.allow`).
pub const ASYNCAPI_PATH: &str = "/asyncapi.json";

/// A payload schema that cannot be made self-contained.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SchemaError {
    /// A type refers to itself: its schema cannot be inlined.
    #[error(
        "asyncapi: the payload schema of `{event_type}` is recursive through `{schema}`; \
         AsyncAPI payloads here are self-contained JSON Schemas"
    )]
    Recursive {
        /// The message's event type.
        event_type: String,
        /// The schema that refers to itself.
        schema: String,
    },
    /// A reference to a schema the type did not list.
    #[error(
        "asyncapi: the payload schema of `{event_type}` refers to `{reference}`, which its \
         `ToSchema::schemas` does not provide"
    )]
    Unresolved {
        /// The message's event type.
        event_type: String,
        /// The reference.
        reference: String,
    },
}

/// The router serving `document` at [`ASYNCAPI_PATH`].
pub(crate) fn routes(document: Value) -> Router {
    let document = std::sync::Arc::new(document);
    Router::new().route(
        ASYNCAPI_PATH,
        get(move || {
            let document = document.clone();
            async move { axum::Json(document.as_ref().clone()) }
        }),
    )
}

/// Replaces every `{"$ref": "#/components/schemas/Name"}` in `schema` by the
/// named schema of `named` (recursively), keeping the referring object's
/// other keys (a description) next to the referred schema's.
pub fn inline_refs(
    event_type: &str,
    schema: &Value,
    named: &std::collections::BTreeMap<String, Value>,
) -> Result<Value, SchemaError> {
    fn walk(
        value: &Value,
        named: &std::collections::BTreeMap<String, Value>,
        stack: &mut Vec<String>,
        event_type: &str,
    ) -> Result<Value, SchemaError> {
        match value {
            Value::Object(map) => {
                if let Some(Value::String(reference)) = map.get("$ref") {
                    let name = reference
                        .strip_prefix("#/components/schemas/")
                        .unwrap_or(reference);
                    if stack.iter().any(|s| s == name) {
                        return Err(SchemaError::Recursive {
                            event_type: event_type.to_owned(),
                            schema: name.to_owned(),
                        });
                    }
                    let target = named.get(name).ok_or_else(|| SchemaError::Unresolved {
                        event_type: event_type.to_owned(),
                        reference: reference.clone(),
                    })?;
                    stack.push(name.to_owned());
                    let mut inlined = walk(target, named, stack, event_type)?;
                    stack.pop();
                    if let Value::Object(out) = &mut inlined {
                        for (key, value) in map.iter().filter(|(k, _)| *k != "$ref") {
                            out.insert(key.clone(), walk(value, named, stack, event_type)?);
                        }
                    }
                    return Ok(inlined);
                }
                let mut out = serde_json::Map::with_capacity(map.len());
                for (key, value) in map {
                    out.insert(key.clone(), walk(value, named, stack, event_type)?);
                }
                Ok(Value::Object(out))
            }
            Value::Array(items) => items
                .iter()
                .map(|item| walk(item, named, stack, event_type))
                .collect::<Result<Vec<_>, _>>()
                .map(Value::Array),
            other => Ok(other.clone()),
        }
    }
    walk(schema, named, &mut Vec::new(), event_type)
}

/// The message of `E`: its event type, its type's name as title, and the
/// self-contained JSON Schema of its payload made from `E`'s `ToSchema`.
///
/// ```
/// use chassis_web::asyncapi::message_schema;
/// use messaging_abstractions::IntegrationEvent;
///
/// #[derive(serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
/// struct Destination {
///     city: String,
/// }
/// #[derive(serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
/// struct OrderCompleted {
///     order_id: String,
///     destination: Destination,
/// }
/// impl IntegrationEvent for OrderCompleted {
///     const EVENT_TYPE: &'static str = "order.completed.v1";
/// }
///
/// let message = message_schema::<OrderCompleted>().unwrap();
/// assert_eq!(message.event_type, "order.completed.v1");
/// let destination = &message.payload["properties"]["destination"];
/// assert_eq!(destination["properties"]["city"]["type"], "string");
/// assert!(!message.payload.to_string().contains("$ref"));
/// ```
#[cfg(feature = "openapi")]
pub fn message_schema<E>() -> Result<messaging_abstractions::asyncapi::MessageSchema, SchemaError>
where
    E: messaging_abstractions::IntegrationEvent + utoipa::ToSchema,
{
    let mut nested = Vec::new();
    E::schemas(&mut nested);
    let schema = to_json(&E::schema());
    let mut named: std::collections::BTreeMap<_, _> = nested
        .into_iter()
        .map(|(name, schema)| (name, to_json(&schema)))
        .collect();
    // A type that refers to itself (utoipa's `no_recursion`) is not among
    // its own nested schemas.
    named
        .entry(E::name().into_owned())
        .or_insert_with(|| schema.clone());
    let payload = inline_refs(E::EVENT_TYPE, &schema, &named)?;
    Ok(
        messaging_abstractions::asyncapi::MessageSchema::new(E::EVENT_TYPE, payload)
            .with_title(E::name()),
    )
}

#[cfg(feature = "openapi")]
fn to_json(schema: &utoipa::openapi::RefOr<utoipa::openapi::schema::Schema>) -> Value {
    // utoipa's schema types serialize to JSON by construction.
    serde_json::to_value(schema).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde_json::json;

    use super::*;

    #[test]
    fn references_are_inlined_with_their_siblings() {
        let named = BTreeMap::from([
            (
                "Item".to_owned(),
                json!({"type": "object", "properties": {"sku": {"$ref": "#/components/schemas/Sku"}}}),
            ),
            ("Sku".to_owned(), json!({"type": "string"})),
        ]);
        let schema = json!({"type": "array", "items": {"$ref": "#/components/schemas/Item", "description": "one"}});
        let out = inline_refs("e.v1", &schema, &named).unwrap();
        assert_eq!(
            out,
            json!({"type": "array", "items": {"type": "object", "description": "one",
                   "properties": {"sku": {"type": "string"}}}})
        );
    }

    #[test]
    fn recursion_and_unknown_references_are_errors() {
        let named = BTreeMap::from([(
            "Node".to_owned(),
            json!({"properties": {"next": {"$ref": "#/components/schemas/Node"}}}),
        )]);
        let err = inline_refs(
            "e.v1",
            &json!({"$ref": "#/components/schemas/Node"}),
            &named,
        )
        .unwrap_err();
        assert!(matches!(err, SchemaError::Recursive { ref schema, .. } if schema == "Node"));
        let err = inline_refs(
            "e.v1",
            &json!({"$ref": "#/components/schemas/Gone"}),
            &named,
        )
        .unwrap_err();
        assert!(err.to_string().contains("e.v1"), "{err}");
    }
}
