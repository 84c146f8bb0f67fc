//! The RabbitMQ side of a service's AsyncAPI document: the broker, the
//! topic exchange events are routed through by event type, each consumer
//! group's queue, and the `cloudEvents_` headers.

use messaging_abstractions::asyncapi::{BrokerBinding, Server};
use messaging_abstractions::cloudevents::attribute;
use serde_json::{Value, json};

use crate::RabbitMqConfig;
use crate::codec::CE_PREFIX;
use crate::topology::Names;

/// The version of the AsyncAPI AMQP bindings written.
const AMQP_BINDING_VERSION: &str = "0.3.0";

impl RabbitMqConfig {
    fn vhost(&self) -> String {
        match self.server().and_then(|s| s.pathname) {
            Some(path) if path != "/" => path.trim_start_matches('/').to_owned(),
            _ => "/".to_owned(),
        }
    }
}

impl BrokerBinding for RabbitMqConfig {
    fn provider(&self) -> &'static str {
        "rabbitmq"
    }

    fn server(&self) -> Option<Server> {
        Server::from_url(self.url.expose(), "amqp")
    }

    /// The routing key: the event type itself.
    fn address(&self, event_type: &str) -> String {
        event_type.to_owned()
    }

    fn channel_bindings(&self, _event_type: &str) -> Option<Value> {
        Some(json!({"amqp": {
            "is": "routingKey",
            "exchange": {
                "name": Names::new(&self.exchange).events_exchange(),
                "type": "topic",
                "durable": true,
                "autoDelete": false,
                "vhost": self.vhost(),
            },
            "bindingVersion": AMQP_BINDING_VERSION,
        }}))
    }

    fn receive_bindings(&self, _group: &str, _event_type: &str) -> Option<Value> {
        Some(json!({"amqp": {"ack": true, "bindingVersion": AMQP_BINDING_VERSION}}))
    }

    fn receive_description(&self, group: &str, event_type: &str) -> Option<String> {
        let names = Names::new(&self.exchange);
        Some(format!(
            "Consumed from the queue `{}` (durable; classic and not durable for a group that \
             answers requests), bound to the exchange `{}` with the routing key `{event_type}`; \
             failed messages end in `{}`.",
            names.group_queue(group),
            names.events_exchange(),
            names.dead_letter_queue(group),
        ))
    }

    /// `cloudEvents_<name>`; `datacontenttype` is the `content_type` property.
    fn attribute_header(&self, name: &str) -> Option<String> {
        (name != attribute::DATACONTENTTYPE).then(|| format!("{CE_PREFIX}{name}"))
    }
}

#[cfg(test)]
mod tests {
    use messaging_abstractions::asyncapi::{self, Catalog, Info, MessageSchema};

    use super::*;

    #[test]
    fn the_document_names_the_exchange_queue_and_headers() {
        let config = RabbitMqConfig {
            url: chassis_core::Secret::new("amqp://guest:secret@rabbit:5672/shop"),
            exchange: "shop.events".into(),
            ..RabbitMqConfig::default()
        };
        let catalog = Catalog::new().subscribes(MessageSchema::new(
            "order.completed.v1",
            json!({"type": "object"}),
        ));
        let doc = asyncapi::document(&Info::new("shipping", "1"), &catalog, &config);
        let text = doc.to_string();
        assert!(!text.contains("secret"), "no credentials: {text}");
        assert_eq!(doc["servers"]["rabbitmq"]["host"], "rabbit:5672");
        let binding = &doc["channels"]["order_completed_v1"]["bindings"]["amqp"];
        assert_eq!(binding["exchange"]["name"], "shop.events");
        assert_eq!(binding["exchange"]["vhost"], "shop");
        let receive = doc["operations"]["receive_order_completed_v1"]["description"]
            .as_str()
            .unwrap();
        assert!(receive.contains("`shop.events.shipping`"), "{receive}");
        let headers = &doc["components"]["messages"]["order_completed_v1"]["headers"];
        assert!(headers["properties"]["cloudEvents_id"].is_object());
        assert!(headers["properties"]["cloudEvents_datacontenttype"].is_null());
        assert_eq!(RabbitMqConfig::default().vhost(), "/");
    }
}
