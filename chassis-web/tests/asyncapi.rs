//! `/asyncapi.json`: the declared messages, served without credentials like
//! `/openapi.json`, and a payload schema that cannot stand alone stops
//! start-up.

mod common;

use chassis_web::asyncapi::ASYNCAPI_PATH;
use common::{TempDir, client, isolated};
use messaging_abstractions::asyncapi::MessageSchema;
use reqwest::StatusCode;
use serde_json::{Value, json};

#[tokio::test]
async fn the_document_is_served_without_credentials() {
    let dir = TempDir::new();
    let schema = json!({"type": "object", "required": ["order_id"],
                        "properties": {"order_id": {"type": "string"}}});
    let service = isolated("asyncapi-test", &dir)
        .version("2.1.0")
        .config("security.auth.enabled", true)
        .config("security.auth.api_keys", "asyncapi-test-key-0123456789")
        .messages(|catalog| {
            catalog
                .publishes(MessageSchema::new("order.completed.v1", schema.clone()))
                .subscribes(MessageSchema::new(
                    "shipping.sent.v1",
                    json!({"type": "object"}),
                ))
        })
        .start()
        .await
        .unwrap();

    let response = client()
        .get(format!("{}{ASYNCAPI_PATH}", service.base_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let doc: Value = response.json().await.unwrap();
    assert_eq!(doc["asyncapi"], "3.0.0");
    assert_eq!(doc["info"]["title"], "asyncapi-test");
    assert_eq!(doc["info"]["version"], "2.1.0");
    assert_eq!(
        doc["components"]["messages"]["order_completed_v1"]["payload"]["schema"],
        schema
    );
    assert_eq!(
        doc["operations"]["receive_shipping_sent_v1"]["action"],
        "receive"
    );
    // Anything else still needs credentials.
    let other = client()
        .get(format!("{}/orders", service.base_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(other.status(), StatusCode::UNAUTHORIZED);
    service.shutdown().await.unwrap();
}

#[cfg(feature = "openapi")]
#[tokio::test]
async fn a_recursive_payload_stops_start_up_naming_the_event_type() {
    #[derive(serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
    struct Node {
        // utoipa itself needs this on a recursive field (its schema
        // collection would recurse forever); the `$ref` it leaves is what
        // cannot be inlined.
        #[schema(no_recursion)]
        children: Vec<Node>,
    }
    impl messaging_abstractions::IntegrationEvent for Node {
        const EVENT_TYPE: &'static str = "tree.node.v1";
    }

    let dir = TempDir::new();
    let host = isolated("asyncapi-test", &dir).publishes::<Node>();
    let error = host.asyncapi_document().unwrap_err().to_string();
    assert!(
        error.contains("`tree.node.v1`") && error.contains("`Node`"),
        "{error}"
    );
    let error = host.start().await.err().unwrap().to_string();
    assert!(error.contains("`tree.node.v1`"), "{error}");
}
