//! A service's messages as an [AsyncAPI 3.0](https://www.asyncapi.com/docs/reference/specification/v3.0.0)
//! document.
//!
//! A [`Catalog`] lists what a service puts on the bus and takes from it: the
//! events it publishes, the events its consumer group receives, the
//! requests it sends (and the answers it awaits) and the requests it
//! answers. Each message carries the JSON Schema of its payload
//! ([`MessageSchema`]), made by whoever knows the Rust type (the host makes
//! it from the `utoipa::ToSchema` the HTTP API uses too). The broker side,
//! addresses, bindings and the headers the CloudEvents attributes travel in,
//! comes from the provider through [`BrokerBinding`], so this module knows
//! no provider. [`document`] puts both together.
//!
//! Every message's payload is a multi-format schema whose `schemaFormat` is
//! [`JSON_SCHEMA_FORMAT`] (JSON Schema draft 07) and whose schema is
//! self-contained (no `$ref`), so a consumer in any language can read one
//! message without the rest of the document.
//!
//! ```
//! use messaging_abstractions::asyncapi::{self, Catalog, Info, MessageSchema, NoBroker};
//! use serde_json::json;
//!
//! let completed = MessageSchema::new(
//!     "order.completed.v1",
//!     json!({"type": "object", "required": ["order_id"],
//!            "properties": {"order_id": {"type": "string", "format": "uuid"}}}),
//! );
//! let catalog = Catalog::new().publishes(completed);
//! let doc = asyncapi::document(&Info::new("order-service", "1.0.0"), &catalog, &NoBroker);
//! assert_eq!(doc["asyncapi"], "3.0.0");
//! assert_eq!(doc["operations"]["send_order_completed_v1"]["action"], "send");
//! assert_eq!(
//!     doc["components"]["messages"]["order_completed_v1"]["payload"]["schemaFormat"],
//!     asyncapi::JSON_SCHEMA_FORMAT
//! );
//! ```

use std::fmt;

use serde_json::{Map, Value, json};

use crate::cloudevents::{ContentMode, STRUCTURED_JSON, attribute};
use crate::envelope::JSON_CONTENT_TYPE;
use crate::request::REPLY_TO_HEADER;

/// The AsyncAPI version of the documents made here.
pub const ASYNCAPI_VERSION: &str = "3.0.0";

/// The `schemaFormat` of every payload: JSON Schema draft 07, which the
/// schemas the host makes keep to.
pub const JSON_SCHEMA_FORMAT: &str = "application/schema+json;version=draft-07";

/// One message type: its event type on the wire and its payload's schema.
#[derive(Debug, Clone, PartialEq)]
pub struct MessageSchema {
    /// The event type, e.g. `order.completed.v1`.
    pub event_type: String,
    /// A JSON Schema (draft 07) of the payload, without `$ref`.
    pub payload: Value,
    /// The Rust type's name (`OrderCompleted`), shown as the message title.
    pub title: Option<String>,
}

impl MessageSchema {
    /// A message of `event_type` whose payload `payload` describes.
    pub fn new(event_type: impl Into<String>, payload: Value) -> Self {
        Self {
            event_type: event_type.into(),
            payload,
            title: None,
        }
    }

    /// Sets the title (the type's name).
    pub fn with_title(mut self, title: impl Into<String>) -> Self {
        self.title = Some(title.into());
        self
    }
}

/// A request and the response it awaits.
#[derive(Debug, Clone, PartialEq)]
pub struct Exchange {
    /// The request.
    pub request: MessageSchema,
    /// Its answer.
    pub response: MessageSchema,
}

/// What a service sends and receives over the bus.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Catalog {
    publishes: Vec<MessageSchema>,
    subscribes: Vec<MessageSchema>,
    requests: Vec<Exchange>,
    answers: Vec<Exchange>,
}

impl Catalog {
    /// An empty catalog.
    pub fn new() -> Self {
        Self::default()
    }

    /// The service publishes this event (a second declaration of one event
    /// type replaces the first).
    pub fn publishes(mut self, message: MessageSchema) -> Self {
        put(&mut self.publishes, message, |m| &m.event_type);
        self
    }

    /// The service's consumer group receives this event.
    pub fn subscribes(mut self, message: MessageSchema) -> Self {
        put(&mut self.subscribes, message, |m| &m.event_type);
        self
    }

    /// The service sends this request and awaits `response`.
    pub fn requests(mut self, request: MessageSchema, response: MessageSchema) -> Self {
        put(&mut self.requests, Exchange { request, response }, |e| {
            &e.request.event_type
        });
        self
    }

    /// The service answers this request with `response`.
    pub fn answers(mut self, request: MessageSchema, response: MessageSchema) -> Self {
        put(&mut self.answers, Exchange { request, response }, |e| {
            &e.request.event_type
        });
        self
    }

    /// The events published.
    pub fn published(&self) -> &[MessageSchema] {
        &self.publishes
    }

    /// The events received.
    pub fn subscribed(&self) -> &[MessageSchema] {
        &self.subscribes
    }

    /// The requests sent.
    pub fn sent_requests(&self) -> &[Exchange] {
        &self.requests
    }

    /// The requests answered.
    pub fn answered_requests(&self) -> &[Exchange] {
        &self.answers
    }

    /// Whether nothing is declared.
    pub fn is_empty(&self) -> bool {
        self.publishes.is_empty()
            && self.subscribes.is_empty()
            && self.requests.is_empty()
            && self.answers.is_empty()
    }
}

fn put<T>(list: &mut Vec<T>, item: T, key: impl Fn(&T) -> &String) {
    match list.iter_mut().find(|old| key(old) == key(&item)) {
        Some(old) => *old = item,
        None => list.push(item),
    }
}

/// The document's `info` and the consumer group the service receives in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Info {
    /// The service's name: the title, and the consumer group.
    pub service: String,
    /// The service's version.
    pub version: String,
    /// A description; a default one names the service.
    pub description: Option<String>,
}

impl Info {
    /// The info of `service` at `version`.
    pub fn new(service: impl Into<String>, version: impl Into<String>) -> Self {
        Self {
            service: service.into(),
            version: version.into(),
            description: None,
        }
    }
}

/// A broker server of the document's `servers`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Server {
    /// `host[:port]`, without credentials.
    pub host: String,
    /// The protocol: `amqp`, `nats`.
    pub protocol: String,
    /// A path on the server (the AMQP virtual host), if any.
    pub pathname: Option<String>,
}

impl Server {
    /// The server a broker URL (`amqp://user:secret@host:5672/vhost`) names,
    /// with the credentials left out and the path percent-decoded (`/%2f`
    /// is the virtual host `/`); the first of a comma-separated list.
    /// `None` when the URL names no host.
    pub fn from_url(url: &str, protocol: &str) -> Option<Self> {
        let first = url.split(',').next().unwrap_or_default().trim();
        let rest = first.split_once("://").map_or(first, |(_, rest)| rest);
        let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
        let host = authority
            .rsplit_once('@')
            .map_or(authority, |(_, host)| host);
        if host.is_empty() {
            return None;
        }
        let path = path.split(['?', '#']).next().unwrap_or_default();
        Some(Self {
            host: host.to_owned(),
            protocol: protocol.to_owned(),
            pathname: (!path.is_empty()).then(|| {
                let path = percent_decode(path);
                // The AMQP default virtual host `/` is written `/%2f`.
                if path.starts_with('/') {
                    path
                } else {
                    format!("/{path}")
                }
            }),
        })
    }
}

/// `%2f` → `/`; anything that is not a valid escape stays as it is.
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = (bytes[i] == b'%')
            .then(|| s.get(i + 1..i + 3))
            .flatten()
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        match escaped {
            Some(byte) => {
                out.push(byte);
                i += 3;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// What a messaging provider adds to a document: where its broker is, the
/// address and bindings of each event type's channel, and the headers the
/// CloudEvents attributes travel in. Provider crates implement it on their
/// settings; every method has the answer of a bus without a wire.
pub trait BrokerBinding: fmt::Debug + Send + Sync {
    /// The provider's name (`messaging.provider`).
    fn provider(&self) -> &'static str;

    /// The broker, or `None` for an in-process bus.
    fn server(&self) -> Option<Server> {
        None
    }

    /// Where events of `event_type` are published (a routing key, a subject).
    fn address(&self, event_type: &str) -> String {
        event_type.to_owned()
    }

    /// The channel's bindings object (keyed by protocol), if any.
    fn channel_bindings(&self, _event_type: &str) -> Option<Value> {
        None
    }

    /// The bindings object of the operation by which consumer group `group`
    /// receives `event_type`, if any.
    fn receive_bindings(&self, _group: &str, _event_type: &str) -> Option<Value> {
        None
    }

    /// Where consumer group `group` receives `event_type` from (its queue,
    /// its durable consumer), for people.
    fn receive_description(&self, _group: &str, _event_type: &str) -> Option<String> {
        None
    }

    /// The message header a CloudEvents attribute travels in
    /// (`cloudEvents_id`, `ce-id`), or `None` when the attribute is not a
    /// header (messages that never leave the process, or an attribute the
    /// protocol carries elsewhere, like AMQP's `content_type` property).
    fn attribute_header(&self, _attribute: &str) -> Option<String> {
        None
    }

    /// How the provider writes messages. In the structured content mode a
    /// message's payload is the whole CloudEvent (`application/cloudevents+json`,
    /// the event's own schema as its `data`) and no attribute is a header.
    fn content_mode(&self) -> ContentMode {
        ContentMode::Binary
    }
}

/// The binding of a bus that never leaves the process: no server, event
/// types as addresses, no headers.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoBroker;

impl BrokerBinding for NoBroker {
    fn provider(&self) -> &'static str {
        "none"
    }
}

/// The attributes every message carries, with whether they are always there.
const ATTRIBUTES: [(&str, bool, &str); 12] = [
    (attribute::SPECVERSION, true, "CloudEvents version, `1.0`"),
    (attribute::ID, true, "Unique id of the message (a UUID)"),
    (attribute::SOURCE, true, "The publishing service's name"),
    (attribute::TYPE, true, "The event type"),
    (
        attribute::TIME,
        true,
        "When the message was created, RFC 3339",
    ),
    (
        attribute::DATACONTENTTYPE,
        false,
        "The payload's media type",
    ),
    (
        attribute::CORRELATIONID,
        false,
        "Correlation id shared by everything one request sets off",
    ),
    (
        attribute::CAUSATIONID,
        false,
        "Id of the message that caused this one",
    ),
    (attribute::TRACEPARENT, false, "W3C trace context"),
    (attribute::TRACESTATE, false, "W3C trace state"),
    (
        attribute::PARTITIONKEY,
        false,
        "Messages with the same key keep their order",
    ),
    (
        attribute::CHASSISHEADERS,
        false,
        "Free headers that are not attributes, as a JSON object of strings",
    ),
];

/// A name usable as a key of `channels`, `operations` and `components`
/// (`[A-Za-z0-9_-]`): `order.completed.v1` → `order_completed_v1`.
pub fn component_id(event_type: &str) -> String {
    event_type
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// The AsyncAPI 3.0 document of a service: `info`, the provider's server,
/// one channel per event type, one operation per direction (`send_…`,
/// `receive_…`, `request_…` and `answer_…` with their `reply`) and the
/// messages with their headers and payload schemas.
pub fn document(info: &Info, catalog: &Catalog, binding: &dyn BrokerBinding) -> Value {
    let mut doc = Builder {
        binding,
        group: &info.service,
        channels: Map::new(),
        operations: Map::new(),
        messages: Map::new(),
    };
    for message in &catalog.publishes {
        let channel = doc.channel(message, false);
        doc.operation("send", &channel, "Publishes", None, false, message);
    }
    for message in &catalog.subscribes {
        let channel = doc.channel(message, false);
        doc.operation("receive", &channel, "Receives", None, true, message);
    }
    for exchange in &catalog.requests {
        let channel = doc.channel(&exchange.request, false);
        let reply = doc.reply(&exchange.response);
        let request = &exchange.request;
        doc.operation("request", &channel, "Asks", Some(reply), false, request);
    }
    for exchange in &catalog.answers {
        let channel = doc.channel(&exchange.request, false);
        let reply = doc.reply(&exchange.response);
        let request = &exchange.request;
        doc.operation("answer", &channel, "Answers", Some(reply), true, request);
    }
    let mut out = json!({
        "asyncapi": ASYNCAPI_VERSION,
        "id": format!("urn:service:{}", component_id(&info.service)),
        "info": {
            "title": info.service,
            "version": info.version,
            "description": info.description.clone().unwrap_or_else(|| format!(
                "The messages `{}` publishes, receives, asks and answers on the `{}` event bus \
                 (CloudEvents 1.0, binary content mode; payloads are JSON).",
                info.service,
                binding.provider()
            )),
        },
        "defaultContentType": JSON_CONTENT_TYPE,
        "channels": doc.channels,
        "operations": doc.operations,
        "components": { "messages": doc.messages },
    });
    if let Some(server) = binding.server() {
        let mut entry = json!({"host": server.host, "protocol": server.protocol});
        if let Some(path) = server.pathname {
            entry["pathname"] = Value::String(path);
        }
        out["servers"] = json!({ binding.provider(): entry });
    }
    out
}

struct Builder<'a> {
    binding: &'a dyn BrokerBinding,
    group: &'a str,
    channels: Map<String, Value>,
    operations: Map<String, Value>,
    messages: Map<String, Value>,
}

impl Builder<'_> {
    /// Declares `message` and its channel; returns the channel's id.
    fn channel(&mut self, message: &MessageSchema, reply: bool) -> String {
        let id = component_id(&message.event_type);
        self.message(&id, message);
        let channel_id = if reply {
            format!("{id}_reply")
        } else {
            id.clone()
        };
        if !self.channels.contains_key(&channel_id) {
            let mut channel = json!({
                "title": message.event_type,
                "messages": { &id: { "$ref": format!("#/components/messages/{id}") } },
            });
            if reply {
                // The requester's own reply address, set per request.
                channel["address"] = Value::Null;
                channel["description"] = Value::String(format!(
                    "Answers of type `{}`, sent straight to the address the request carried.",
                    message.event_type
                ));
            } else {
                channel["address"] = Value::String(self.binding.address(&message.event_type));
                if let Some(bindings) = self.binding.channel_bindings(&message.event_type) {
                    channel["bindings"] = bindings;
                }
            }
            self.channels.insert(channel_id.clone(), channel);
        }
        channel_id
    }

    fn reply(&mut self, response: &MessageSchema) -> Value {
        let channel = self.channel(response, true);
        let id = component_id(&response.event_type);
        let mut reply = json!({
            "channel": { "$ref": format!("#/channels/{channel}") },
            "messages": [{ "$ref": format!("#/channels/{channel}/messages/{id}") }],
        });
        if let Some(location) = self.attribute_location(attribute::CHASSISHEADERS) {
            reply["address"] = json!({
                "description": format!(
                    "The `{REPLY_TO_HEADER}` member of the JSON object in this attribute: the \
                     requester's reply address. The answer names the request's `id` in \
                     `chassis-in-reply-to`."
                ),
                "location": location,
            });
        }
        reply
    }

    /// Where a message carries the CloudEvents attribute `name`: a header in
    /// binary mode (if the binding has one for it), a member of the payload in
    /// structured mode.
    fn attribute_location(&self, name: &str) -> Option<String> {
        match self.binding.content_mode() {
            ContentMode::Binary => self
                .binding
                .attribute_header(name)
                .map(|header| format!("$message.header#/{header}")),
            ContentMode::Structured => Some(format!("$message.payload#/{name}")),
        }
    }

    fn operation(
        &mut self,
        kind: &str,
        channel: &str,
        verb: &str,
        reply: Option<Value>,
        receives: bool,
        message: &MessageSchema,
    ) {
        let id = component_id(&message.event_type);
        let mut operation = json!({
            "action": if receives { "receive" } else { "send" },
            "channel": { "$ref": format!("#/channels/{channel}") },
            "messages": [{ "$ref": format!("#/channels/{channel}/messages/{id}") }],
            "summary": format!("{verb} `{}`", message.event_type),
        });
        if receives {
            if let Some(bindings) = self
                .binding
                .receive_bindings(self.group, &message.event_type)
            {
                operation["bindings"] = bindings;
            }
            if let Some(from) = self
                .binding
                .receive_description(self.group, &message.event_type)
            {
                operation["description"] = Value::String(from);
            }
        }
        if let Some(reply) = reply {
            operation["reply"] = reply;
        }
        self.operations.insert(format!("{kind}_{id}"), operation);
    }

    fn message(&mut self, id: &str, message: &MessageSchema) {
        if self.messages.contains_key(id) {
            return;
        }
        let title = message
            .title
            .clone()
            .unwrap_or_else(|| message.event_type.clone());
        let mut out = match self.binding.content_mode() {
            ContentMode::Binary => {
                let mut out = json!({
                    "name": message.event_type,
                    "title": title,
                    "contentType": JSON_CONTENT_TYPE,
                    "payload": { "schemaFormat": JSON_SCHEMA_FORMAT, "schema": message.payload },
                });
                if let Some(headers) = self.headers(&message.event_type) {
                    out["headers"] = headers;
                }
                out
            }
            ContentMode::Structured => {
                let mut event =
                    attribute_schemas(&message.event_type, |name| Some(name.to_owned()));
                event["properties"]["data"] = message.payload.clone();
                event["required"]
                    .as_array_mut()
                    .expect("a list")
                    .push(json!("data"));
                json!({
                    "name": message.event_type,
                    "title": title,
                    "contentType": STRUCTURED_JSON,
                    "payload": { "schemaFormat": JSON_SCHEMA_FORMAT, "schema": event },
                })
            }
        };
        if let Some(location) = self.attribute_location(attribute::CORRELATIONID) {
            out["correlationId"] = json!({
                "description": "Shared by every message one request sets off.",
                "location": location,
            });
        }
        self.messages.insert(id.to_owned(), out);
    }

    /// The schema of the CloudEvents attribute headers of `event_type`.
    fn headers(&self, event_type: &str) -> Option<Value> {
        let schema = attribute_schemas(event_type, |name| self.binding.attribute_header(name));
        (!schema["properties"].as_object().is_some_and(Map::is_empty)).then_some(schema)
    }
}

/// An object schema of the CloudEvents attributes of `event_type`, each
/// under the name `named` gives it (attributes it names `None` are left out).
fn attribute_schemas(event_type: &str, named: impl Fn(&str) -> Option<String>) -> Value {
    let mut properties = Map::new();
    let mut required = Vec::new();
    for (name, always, description) in ATTRIBUTES {
        let Some(key) = named(name) else {
            continue;
        };
        let mut schema = json!({"type": "string", "description": description});
        match name {
            attribute::SPECVERSION => schema["const"] = json!(crate::cloudevents::SPEC_VERSION),
            attribute::TYPE => schema["const"] = json!(event_type),
            attribute::TIME => schema["format"] = json!("date-time"),
            _ => {}
        }
        if always {
            required.push(Value::String(key.clone()));
        }
        properties.insert(key, schema);
    }
    json!({"type": "object", "required": required, "properties": properties})
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A wire with `x-` headers and a server.
    #[derive(Debug)]
    struct Wire;

    impl BrokerBinding for Wire {
        fn provider(&self) -> &'static str {
            "wire"
        }
        fn server(&self) -> Option<Server> {
            Some(Server {
                host: "broker:1".into(),
                protocol: "amqp".into(),
                pathname: Some("/".into()),
            })
        }
        fn address(&self, event_type: &str) -> String {
            format!("p.{event_type}")
        }
        fn receive_description(&self, group: &str, _: &str) -> Option<String> {
            Some(format!("queue {group}"))
        }
        fn attribute_header(&self, attribute: &str) -> Option<String> {
            Some(format!("x-{attribute}"))
        }
    }

    fn schema(field: &str) -> Value {
        json!({"type": "object", "required": [field], "properties": {field: {"type": "string"}}})
    }

    #[test]
    fn every_direction_has_its_operation() {
        let catalog = Catalog::new()
            .publishes(MessageSchema::new("a.done.v1", schema("a")).with_title("Done"))
            .subscribes(MessageSchema::new("b.done.v1", schema("b")))
            .requests(
                MessageSchema::new("c.ask.v1", schema("q")),
                MessageSchema::new("c.answer.v1", schema("r")),
            )
            .answers(
                MessageSchema::new("d.ask.v1", schema("q")),
                MessageSchema::new("d.answer.v1", schema("r")),
            );
        let doc = document(&Info::new("svc", "1.2.3"), &catalog, &Wire);
        assert_eq!(doc["servers"]["wire"]["host"], "broker:1");
        assert_eq!(doc["channels"]["a_done_v1"]["address"], "p.a.done.v1");
        assert_eq!(doc["components"]["messages"]["a_done_v1"]["title"], "Done");
        let ops = &doc["operations"];
        assert_eq!(ops["send_a_done_v1"]["action"], "send");
        assert_eq!(ops["receive_b_done_v1"]["action"], "receive");
        assert_eq!(ops["receive_b_done_v1"]["description"], "queue svc");
        assert_eq!(ops["request_c_ask_v1"]["action"], "send");
        assert_eq!(
            ops["request_c_ask_v1"]["reply"]["channel"]["$ref"],
            "#/channels/c_answer_v1_reply"
        );
        assert_eq!(
            ops["request_c_ask_v1"]["reply"]["address"]["location"],
            "$message.header#/x-chassisheaders"
        );
        assert_eq!(ops["answer_d_ask_v1"]["action"], "receive");
        assert!(doc["channels"]["d_answer_v1_reply"]["address"].is_null());
        let message = &doc["components"]["messages"]["b_done_v1"];
        assert_eq!(message["payload"]["schema"], schema("b"));
        assert_eq!(
            message["headers"]["properties"]["x-type"]["const"],
            "b.done.v1"
        );
        assert_eq!(
            message["headers"]["required"],
            json!(["x-specversion", "x-id", "x-source", "x-type", "x-time"])
        );
        assert_eq!(
            message["correlationId"]["location"],
            "$message.header#/x-correlationid"
        );
    }

    /// [`Wire`] writing the structured content mode.
    #[derive(Debug)]
    struct Structured;

    impl BrokerBinding for Structured {
        fn provider(&self) -> &'static str {
            "wire"
        }
        fn attribute_header(&self, attribute: &str) -> Option<String> {
            Wire.attribute_header(attribute)
        }
        fn content_mode(&self) -> ContentMode {
            ContentMode::Structured
        }
    }

    #[test]
    fn in_structured_mode_the_payload_is_the_whole_event() {
        let catalog = Catalog::new()
            .subscribes(MessageSchema::new("b.done.v1", schema("b")))
            .requests(
                MessageSchema::new("c.ask.v1", schema("q")),
                MessageSchema::new("c.answer.v1", schema("r")),
            );
        let doc = document(&Info::new("svc", "1"), &catalog, &Structured);
        let message = &doc["components"]["messages"]["b_done_v1"];
        assert_eq!(message["contentType"], STRUCTURED_JSON);
        assert!(message.get("headers").is_none());
        let event = &message["payload"]["schema"];
        assert_eq!(event["properties"]["data"], schema("b"));
        assert_eq!(event["properties"]["type"]["const"], "b.done.v1");
        assert_eq!(
            event["required"],
            json!(["specversion", "id", "source", "type", "time", "data"])
        );
        assert_eq!(
            message["correlationId"]["location"],
            "$message.payload#/correlationid"
        );
        assert_eq!(
            doc["operations"]["request_c_ask_v1"]["reply"]["address"]["location"],
            "$message.payload#/chassisheaders"
        );
    }

    #[test]
    fn an_in_process_bus_has_no_server_and_no_headers() {
        let catalog = Catalog::new().publishes(MessageSchema::new("a.done.v1", schema("a")));
        let doc = document(&Info::new("svc", "1"), &catalog, &NoBroker);
        assert!(doc.get("servers").is_none());
        let message = &doc["components"]["messages"]["a_done_v1"];
        assert!(message.get("headers").is_none());
        assert_eq!(doc["channels"]["a_done_v1"]["address"], "a.done.v1");
    }

    #[test]
    fn servers_leave_credentials_out() {
        let server = Server::from_url("amqp://guest:pw@127.0.0.1:5672/%2f", "amqp").unwrap();
        assert_eq!(server.host, "127.0.0.1:5672");
        assert_eq!(server.pathname.as_deref(), Some("/"));
        let server = Server::from_url("nats://a:4222, nats://b:4222", "nats").unwrap();
        assert_eq!((server.host.as_str(), server.pathname), ("a:4222", None));
        assert_eq!(Server::from_url("amqp://", "amqp"), None);
    }

    #[test]
    fn a_second_declaration_replaces_the_first() {
        let catalog = Catalog::new()
            .publishes(MessageSchema::new("a.v1", schema("x")))
            .publishes(MessageSchema::new("a.v1", schema("y")));
        assert_eq!(catalog.published().len(), 1);
        assert_eq!(catalog.published()[0].payload, schema("y"));
        assert_eq!(component_id("order.completed.v1"), "order_completed_v1");
    }
}
