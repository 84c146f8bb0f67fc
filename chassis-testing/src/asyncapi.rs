//! Contract check between services, from their AsyncAPI documents.
//!
//! Each document says which messages its service sends (`send` operations,
//! and the replies of the requests it answers) and which it receives
//! (`receive` operations, and the replies to the requests it sends). For
//! every message a service receives, [`contract_problems`] wants at least
//! one of the documents to send it, and every sender to guarantee what the
//! receiver requires: each field the receiver's payload schema lists as
//! `required` (nested objects and array items included) must be a
//! required property of the sender's schema, and where both give a JSON
//! type, the sender's must be one the receiver accepts (`null` included:
//! an optional sender field is not enough for a non-null receiver field).
//!
//! The documents may come from any language: references (`$ref`) inside
//! the document are followed, and a payload is either a schema or a
//! multi-format schema object.
//!
//! ```
//! use chassis_testing::asyncapi::contract_problems;
//! use serde_json::json;
//!
//! let schema = |required: &[&str]| json!({"type": "object", "required": required,
//!     "properties": {"order_id": {"type": "string"}, "city": {"type": "string"}}});
//! let doc = |name: &str, action: &str, required: &[&str]| json!({
//!     "asyncapi": "3.0.0", "info": {"title": name, "version": "1"},
//!     "channels": {"c": {"messages": {"m": {"$ref": "#/components/messages/m"}}}},
//!     "operations": {"o": {"action": action, "channel": {"$ref": "#/channels/c"},
//!                          "messages": [{"$ref": "#/channels/c/messages/m"}]}},
//!     "components": {"messages": {"m": {"name": "order.completed.v1",
//!                                       "payload": schema(required)}}},
//! });
//! let producer = doc("orders", "send", &["order_id", "city"]);
//! let consumer = doc("shipping", "receive", &["order_id", "city"]);
//! assert!(contract_problems(&[&producer, &consumer]).is_empty());
//!
//! let producer = doc("orders", "send", &["order_id"]);
//! assert_eq!(
//!     contract_problems(&[&producer, &consumer]),
//!     ["`shipping` requires `order.completed.v1` field `city`, which `orders` may leave out"]
//! );
//! ```

use std::collections::BTreeSet;

use chassis_web::ServiceHostBuilder;
use chassis_web::asyncapi::ASYNCAPI_PATH;
use serde_json::Value;

/// The AsyncAPI document `service` serves at [`ASYNCAPI_PATH`], started with
/// authentication on and the in-memory bus; panics unless the document is
/// served without credentials.
pub async fn asyncapi_document(service: ServiceHostBuilder) -> Value {
    crate::security::served_document(service, ASYNCAPI_PATH).await
}

/// Panics, listing every problem, unless the services of `documents` agree
/// (see the module docs).
pub fn check_contracts(documents: &[&Value]) {
    let problems = contract_problems(documents);
    assert!(
        problems.is_empty(),
        "the AsyncAPI documents disagree:\n  {}",
        problems.join("\n  ")
    );
}

/// Every disagreement between the services of `documents`, one line each,
/// naming the receiving service, the event type, the field and the sender.
pub fn contract_problems(documents: &[&Value]) -> Vec<String> {
    let services: Vec<Service<'_>> = documents.iter().map(|doc| Service::read(doc)).collect();
    let mut problems = Vec::new();
    for receiver in &services {
        for (event_type, expected) in &receiver.receives {
            let senders: Vec<_> = services
                .iter()
                .filter_map(|s| s.sent(event_type).map(|schema| (s, schema)))
                .collect();
            if senders.is_empty() {
                problems.push(format!(
                    "`{}` receives `{event_type}`, which none of {} sends",
                    receiver.name,
                    services
                        .iter()
                        .map(|s| format!("`{}`", s.name))
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            }
            for (sender, sent) in senders {
                let mut pair = Pair {
                    receiver,
                    sender,
                    event_type,
                    problems: &mut problems,
                };
                pair.compare(sent, expected, "", 0);
            }
        }
    }
    problems
}

/// One document: the service's name and its messages by direction.
struct Service<'a> {
    doc: &'a Value,
    name: String,
    sends: Vec<(String, &'a Value)>,
    receives: Vec<(String, &'a Value)>,
}

impl<'a> Service<'a> {
    fn read(doc: &'a Value) -> Self {
        let mut service = Service {
            doc,
            name: doc["info"]["title"]
                .as_str()
                .unwrap_or("(untitled)")
                .to_owned(),
            sends: Vec::new(),
            receives: Vec::new(),
        };
        let operations = doc["operations"].as_object().into_iter().flatten();
        for (_, operation) in operations {
            let operation = resolve(doc, operation);
            let sends = operation["action"] == "send";
            service.add(resolve(doc, &operation["messages"]), sends);
            let reply = resolve(doc, &operation["reply"]);
            if reply.is_object() {
                let messages = match reply.get("messages") {
                    Some(messages) => resolve(doc, messages),
                    // No list: every message of the reply channel.
                    None => &resolve(doc, &reply["channel"])["messages"],
                };
                service.add(messages, !sends);
            }
        }
        service
    }

    fn add(&mut self, messages: &'a Value, sent: bool) {
        let list: Vec<&Value> = match messages {
            Value::Array(items) => items.iter().collect(),
            Value::Object(map) => map.values().collect(),
            _ => Vec::new(),
        };
        for message in list {
            let message = resolve(self.doc, message);
            let Some(name) = message["name"].as_str() else {
                continue;
            };
            let mut payload = resolve(self.doc, &message["payload"]);
            if payload.get("schemaFormat").is_some() {
                payload = resolve(self.doc, &payload["schema"]);
            }
            let side = if sent {
                &mut self.sends
            } else {
                &mut self.receives
            };
            if !side.iter().any(|(n, _)| n == name) {
                side.push((name.to_owned(), payload));
            }
        }
    }

    fn sent(&self, event_type: &str) -> Option<&'a Value> {
        self.sends
            .iter()
            .find(|(name, _)| name == event_type)
            .map(|(_, schema)| *schema)
    }
}

/// Follows `$ref`s (`#/…` JSON pointers into `doc`) until a value that is
/// not a reference; a dangling reference is `null`.
fn resolve<'a>(doc: &'a Value, mut value: &'a Value) -> &'a Value {
    // A cycle of bare references would loop: a bound that no real document reaches.
    for _ in 0..32 {
        match value.get("$ref").and_then(Value::as_str) {
            Some(reference) => {
                value = reference
                    .strip_prefix('#')
                    .and_then(|pointer| doc.pointer(pointer))
                    .unwrap_or(&Value::Null);
            }
            None => return value,
        }
    }
    &Value::Null
}

/// One sender's schema against one receiver's.
struct Pair<'s, 'a> {
    receiver: &'s Service<'a>,
    sender: &'s Service<'a>,
    event_type: &'s str,
    problems: &'s mut Vec<String>,
}

/// Nesting deeper than this is not compared (a recursive schema).
const MAX_DEPTH: usize = 16;

impl Pair<'_, '_> {
    fn compare(&mut self, sent: &Value, expected: &Value, path: &str, depth: usize) {
        if depth > MAX_DEPTH {
            return;
        }
        let sent = Shape::of(self.sender.doc, sent);
        let expected = Shape::of(self.receiver.doc, expected);
        if let (Some(sent_types), Some(accepted)) = (&sent.types, &expected.types) {
            let refused: Vec<_> = sent_types
                .iter()
                .filter(|t| !accepts(accepted, t))
                .cloned()
                .collect();
            if !refused.is_empty() {
                let field = if path.is_empty() { "payload" } else { path };
                self.problems.push(format!(
                    "`{}` reads `{}` field `{field}` as {}, but `{}` sends {}",
                    self.receiver.name,
                    self.event_type,
                    join(accepted),
                    self.sender.name,
                    join(sent_types)
                ));
                return;
            }
        }
        let sent_properties = sent.schema["properties"].as_object();
        let sent_required = required(sent.schema);
        for field in required(expected.schema) {
            let at = if path.is_empty() {
                field.to_owned()
            } else {
                format!("{path}.{field}")
            };
            let has = sent_properties.is_some_and(|p| p.contains_key(field));
            if !has || !sent_required.contains(field) {
                self.problems.push(format!(
                    "`{}` requires `{}` field `{at}`, which `{}` {}",
                    self.receiver.name,
                    self.event_type,
                    self.sender.name,
                    if has {
                        "may leave out"
                    } else {
                        "does not send"
                    }
                ));
            }
        }
        if let (Some(sent_properties), Some(expected_properties)) =
            (sent_properties, expected.schema["properties"].as_object())
        {
            for (field, schema) in expected_properties {
                if let Some(sent_field) = sent_properties.get(field) {
                    let at = if path.is_empty() {
                        field.clone()
                    } else {
                        format!("{path}.{field}")
                    };
                    self.compare(sent_field, schema, &at, depth + 1);
                }
            }
        }
        let (sent_items, expected_items) = (&sent.schema["items"], &expected.schema["items"]);
        if sent_items.is_object() && expected_items.is_object() {
            self.compare(sent_items, expected_items, &format!("{path}[]"), depth + 1);
        }
    }
}

/// A schema with an `Option`'s `oneOf`/`anyOf` of `null` and one schema
/// unwrapped, and its JSON types (`null` included when it may be `null`).
struct Shape<'a> {
    schema: &'a Value,
    types: Option<BTreeSet<String>>,
}

impl<'a> Shape<'a> {
    fn of(doc: &'a Value, schema: &'a Value) -> Self {
        let schema = resolve(doc, schema);
        let branches = schema
            .get("oneOf")
            .or_else(|| schema.get("anyOf"))
            .and_then(Value::as_array);
        if let Some(branches) = branches {
            let (nulls, others): (Vec<_>, Vec<_>) = branches
                .iter()
                .map(|b| resolve(doc, b))
                .partition(|b| b["type"] == "null");
            if let [only] = others.as_slice() {
                let mut shape = Shape::of(doc, only);
                if !nulls.is_empty()
                    && let Some(types) = &mut shape.types
                {
                    types.insert("null".to_owned());
                }
                return shape;
            }
        }
        let types = match &schema["type"] {
            Value::String(t) => Some(BTreeSet::from([t.clone()])),
            Value::Array(ts) => Some(
                ts.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect(),
            ),
            _ => None,
        };
        Shape { schema, types }
    }
}

/// Whether a receiver accepting the JSON types `accepted` reads a `sent` value.
fn accepts(accepted: &BTreeSet<String>, sent: &str) -> bool {
    accepted.contains(sent) || (sent == "integer" && accepted.contains("number"))
}

fn required(schema: &Value) -> BTreeSet<&str> {
    schema["required"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect()
}

fn join(types: &BTreeSet<String>) -> String {
    types.iter().cloned().collect::<Vec<_>>().join(" or ")
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn doc(name: &str, operations: Value, messages: Value) -> Value {
        json!({"asyncapi": "3.0.0", "info": {"title": name, "version": "1"},
               "operations": operations, "components": {"messages": messages}})
    }

    fn op(action: &str, message: &str) -> Value {
        json!({"action": action, "messages": [{"$ref": format!("#/components/messages/{message}")}]})
    }

    fn item(required: &[&str], quantity: &str) -> Value {
        json!({"name": "order.completed.v1", "payload": {"schemaFormat": "application/schema+json;version=draft-07",
            "schema": {"type": "object", "required": ["items"], "properties": {"items": {
                "type": "array", "items": {"type": "object", "required": required,
                    "properties": {"sku": {"type": "string"}, "quantity": {"type": quantity}}}}}}}})
    }

    #[test]
    fn nested_fields_and_types_are_compared() {
        let producer = doc(
            "orders",
            json!({"s": op("send", "m")}),
            json!({"m": item(&["sku", "quantity"], "integer")}),
        );
        let consumer = doc(
            "shipping",
            json!({"r": op("receive", "m")}),
            json!({"m": item(&["sku", "quantity"], "number")}),
        );
        assert!(contract_problems(&[&producer, &consumer]).is_empty());

        let producer = doc(
            "orders",
            json!({"s": op("send", "m")}),
            json!({"m": item(&["quantity"], "string")}),
        );
        assert_eq!(
            contract_problems(&[&producer, &consumer]),
            [
                "`shipping` requires `order.completed.v1` field `items[].sku`, which `orders` may leave out",
                "`shipping` reads `order.completed.v1` field `items[].quantity` as number, but `orders` sends string",
            ]
        );
    }

    #[test]
    fn an_event_nobody_sends_and_replies_count() {
        let asker = doc(
            "orders",
            json!({"ask": {"action": "send", "messages": [{"$ref": "#/components/messages/q"}],
                           "reply": {"messages": [{"$ref": "#/components/messages/a"}]}}}),
            json!({"q": {"name": "quote.v1", "payload": {"type": "object"}},
                   "a": {"name": "quote_result.v1", "payload": {"type": "object"}}}),
        );
        let answerer = doc(
            "shipping",
            json!({"answer": {"action": "receive", "messages": [{"$ref": "#/components/messages/q"}],
                              "reply": {"messages": [{"$ref": "#/components/messages/a"}]}},
                   "lost": op("receive", "x")}),
            json!({"q": {"name": "quote.v1", "payload": {"type": "object"}},
                   "a": {"name": "quote_result.v1", "payload": {"type": "object"}},
                   "x": {"name": "order.lost.v1", "payload": {"type": "object"}}}),
        );
        assert_eq!(
            contract_problems(&[&asker, &answerer]),
            ["`shipping` receives `order.lost.v1`, which none of `orders`, `shipping` sends"]
        );
    }

    #[test]
    fn an_option_is_nullable() {
        let schema = |field: Value| {
            json!({"name": "e.v1", "payload": {"type": "object", "required": ["f"],
                   "properties": {"f": field}}})
        };
        let producer = doc(
            "p",
            json!({"s": op("send", "m")}),
            json!({"m": schema(json!({"oneOf": [{"type": "null"}, {"type": "string"}]}))}),
        );
        let consumer = doc(
            "c",
            json!({"r": op("receive", "m")}),
            json!({"m": schema(json!({"type": "string"}))}),
        );
        assert_eq!(
            contract_problems(&[&producer, &consumer]),
            ["`c` reads `e.v1` field `f` as string, but `p` sends null or string"]
        );
    }
}
