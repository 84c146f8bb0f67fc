//! The NATS side of a service's AsyncAPI document: the server, each event
//! type's subject under the prefix, each consumer group's durable JetStream
//! consumer, and the `ce-` headers.

use messaging_abstractions::asyncapi::{BrokerBinding, Server};
use messaging_abstractions::cloudevents::ContentMode;

use crate::NatsConfig;
use crate::codec::CE_PREFIX;
use crate::topology::Names;

impl BrokerBinding for NatsConfig {
    fn provider(&self) -> &'static str {
        "nats"
    }

    fn server(&self) -> Option<Server> {
        Server::from_url(self.url.expose(), "nats")
    }

    /// The subject: `<subject_prefix>.<event type>`.
    fn address(&self, event_type: &str) -> String {
        Names::new(&self.subject_prefix).subject(event_type)
    }

    fn receive_description(&self, group: &str, event_type: &str) -> Option<String> {
        let names = Names::new(&self.subject_prefix);
        Some(format!(
            "Consumed by the durable JetStream consumer `{}` of the stream `{}`; failed \
             messages go to the subject `{}`.",
            names.consumer(group, event_type),
            names.stream(Names::namespace(event_type)),
            names.dead_letter_subject(group),
        ))
    }

    /// `ce-<name>`, every attribute.
    fn attribute_header(&self, name: &str) -> Option<String> {
        Some(format!("{CE_PREFIX}{name}"))
    }

    fn content_mode(&self) -> ContentMode {
        self.content_mode
    }
}

#[cfg(test)]
mod tests {
    use messaging_abstractions::asyncapi::{self, Catalog, Info, MessageSchema};
    use serde_json::json;

    use super::*;

    #[test]
    fn the_document_names_the_subject_consumer_and_headers() {
        let config = NatsConfig {
            url: chassis_core::Secret::new("nats://user:secret@nats:4222"),
            subject_prefix: "shop".into(),
            ..NatsConfig::default()
        };
        let catalog = Catalog::new().subscribes(MessageSchema::new(
            "order.completed.v1",
            json!({"type": "object"}),
        ));
        let doc = asyncapi::document(&Info::new("shipping", "1"), &catalog, &config);
        assert!(!doc.to_string().contains("secret"));
        assert_eq!(doc["servers"]["nats"]["host"], "nats:4222");
        assert_eq!(
            doc["channels"]["order_completed_v1"]["address"],
            "shop.order.completed.v1"
        );
        let receive = doc["operations"]["receive_order_completed_v1"]["description"]
            .as_str()
            .unwrap();
        assert!(receive.contains("`shop_events_order`"), "{receive}");
        let headers = &doc["components"]["messages"]["order_completed_v1"]["headers"];
        assert!(headers["properties"]["ce-datacontenttype"].is_object());
        let structured = NatsConfig {
            content_mode: ContentMode::Structured,
            ..config
        };
        let doc = asyncapi::document(&Info::new("shipping", "1"), &catalog, &structured);
        let message = &doc["components"]["messages"]["order_completed_v1"];
        assert_eq!(message["contentType"], "application/cloudevents+json");
        assert!(message.get("headers").is_none());
    }
}
