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

use std::collections::HashSet;
use std::sync::{Mutex, PoisonError};

use axum::Router;
use axum::routing::get;
use messaging_abstractions::asyncapi::{Catalog, MessageSchema};
use messaging_abstractions::{SubscribeError, Subscription};
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

/// The message types a service declared, as the host's bus decorator
/// checks what the service really subscribes and publishes: a handler for
/// an undeclared type fails its subscription, an undeclared published type
/// is logged at WARN once. Built once at start-up; a publish costs one
/// lookup in a small set.
#[derive(Debug)]
pub(crate) struct Declared {
    /// Events subscribed, requests answered, replies to requests sent.
    received: HashSet<String>,
    /// Events published, requests sent, replies to requests answered.
    sent: HashSet<String>,
    /// Undeclared types published already (each is logged once).
    warned: Mutex<HashSet<String>>,
}

impl Declared {
    /// What `catalog` declares; `None` when it declares nothing: a service
    /// that does not describe its messages has nothing to check against
    /// (tests and tools building a host around a handler, a service not yet
    /// documenting its messages), while one that describes any is held to
    /// its whole description.
    pub(crate) fn from_catalog(catalog: &Catalog) -> Option<Self> {
        if catalog.is_empty() {
            return None;
        }
        let types = |list: &[MessageSchema]| {
            list.iter()
                .map(|m| m.event_type.clone())
                .collect::<Vec<_>>()
        };
        let mut received: HashSet<String> = types(catalog.subscribed()).into_iter().collect();
        let mut sent: HashSet<String> = types(catalog.published()).into_iter().collect();
        for exchange in catalog.answered_requests() {
            received.insert(exchange.request.event_type.clone());
            sent.insert(exchange.response.event_type.clone());
        }
        for exchange in catalog.sent_requests() {
            sent.insert(exchange.request.event_type.clone());
            received.insert(exchange.response.event_type.clone());
        }
        Some(Self {
            received,
            sent,
            warned: Mutex::default(),
        })
    }

    /// Refuses `subscription` when it handles a type not declared received.
    pub(crate) fn check_subscription(
        &self,
        subscription: &Subscription,
    ) -> Result<(), SubscribeError> {
        let undeclared: Vec<String> = subscription
            .handlers
            .event_types()
            .filter(|t| !self.received.contains(*t))
            .map(str::to_owned)
            .collect();
        if undeclared.is_empty() {
            return Ok(());
        }
        Err(SubscribeError::Undeclared {
            group: subscription.group.clone(),
            event_types: undeclared,
        })
    }

    /// Whether publishing `event_type` is the first undeclared publish of
    /// that type (the caller then warns).
    pub(crate) fn first_undeclared_send(&self, event_type: &str) -> bool {
        if self.sent.contains(event_type) {
            return false;
        }
        let mut warned = self.warned.lock().unwrap_or_else(PoisonError::into_inner);
        warned.insert(event_type.to_owned())
    }
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

    fn message(event_type: &str) -> MessageSchema {
        MessageSchema::new(event_type, json!({"type": "object"}))
    }

    struct Ignore;

    #[async_trait::async_trait]
    impl messaging_abstractions::MessageHandler for Ignore {
        async fn handle(
            &self,
            _: &messaging_abstractions::Delivery,
        ) -> Result<(), messaging_abstractions::HandlerError> {
            Ok(())
        }
    }

    fn handling(types: &[&str]) -> Subscription {
        let handlers = types
            .iter()
            .fold(messaging_abstractions::Handlers::new(), |h, t| {
                h.on_raw(*t, std::sync::Arc::new(Ignore))
            });
        Subscription::new("svc", handlers)
    }

    #[test]
    fn nothing_declared_checks_nothing() {
        assert!(Declared::from_catalog(&Catalog::new()).is_none());
    }

    #[test]
    fn subscriptions_may_handle_only_what_is_received() {
        let catalog = Catalog::new()
            .subscribes(message("a.v1"))
            .answers(message("ask.v1"), message("answer.v1"))
            .requests(message("quote.v1"), message("price.v1"));
        let declared = Declared::from_catalog(&catalog).unwrap();
        declared
            .check_subscription(&handling(&["a.v1", "ask.v1", "price.v1"]))
            .unwrap();
        let error = declared
            .check_subscription(&handling(&["a.v1", "b.v1", "answer.v1"]))
            .unwrap_err();
        assert!(
            matches!(&error, SubscribeError::Undeclared { group, event_types }
                if group == "svc" && *event_types == ["answer.v1", "b.v1"]),
            "{error:?}"
        );
        let text = error.to_string();
        assert!(
            text.contains("`answer.v1`, `b.v1`") && text.contains(".subscribes::<E>()"),
            "{text}"
        );
    }

    #[test]
    fn an_undeclared_send_is_reported_once() {
        let catalog = Catalog::new()
            .publishes(message("a.v1"))
            .answers(message("ask.v1"), message("answer.v1"))
            .requests(message("quote.v1"), message("price.v1"));
        let declared = Declared::from_catalog(&catalog).unwrap();
        for sent in ["a.v1", "answer.v1", "quote.v1"] {
            assert!(!declared.first_undeclared_send(sent), "{sent}");
        }
        assert!(declared.first_undeclared_send("b.v1"));
        assert!(!declared.first_undeclared_send("b.v1"));
        assert!(declared.first_undeclared_send("price.v1"));
    }
}
