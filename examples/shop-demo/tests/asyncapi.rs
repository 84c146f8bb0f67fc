//! The AsyncAPI documents of the two example services agree: everything one
//! receives, the other sends, with every field the receiver requires
//! (`chassis_testing::asyncapi`). Each document is the one the service
//! serves at `/asyncapi.json`, without credentials; the official parser's
//! run on the printed documents is `scripts/asyncapi-test`.

use chassis_testing::asyncapi::{asyncapi_document, check_contracts, contract_problems};
use serde_json::Value;

async fn documents() -> (Value, Value) {
    (
        asyncapi_document(order_service::host()).await,
        asyncapi_document(shipping_service::host()).await,
    )
}

/// The payload schema of `message` in `doc`.
fn payload<'a>(doc: &'a mut Value, message: &str) -> &'a mut Value {
    &mut doc["components"]["messages"][message]["payload"]["schema"]
}

#[tokio::test]
async fn the_example_services_agree() {
    let (order, shipping) = documents().await;
    check_contracts(&[&order, &shipping]);
    // Both directions are there: events, saga answers, request and reply.
    for (doc, operation) in [
        (&order, "send_order_completed_v1"),
        (&order, "receive_shipping_shipment_cancelled_v1"),
        (&order, "request_shipping_quote_v1"),
        (&shipping, "receive_order_completed_v1"),
        (&shipping, "send_shipping_shipment_cancellation_refused_v1"),
        (&shipping, "answer_shipping_quote_v1"),
    ] {
        assert!(
            doc["operations"].get(operation).is_some(),
            "{operation} in {}",
            doc["info"]["title"]
        );
    }
}

#[tokio::test]
async fn removing_a_field_shipping_requires_breaks_the_contract() {
    let (mut order, shipping) = documents().await;
    let completed = payload(&mut order, "order_completed_v1");
    completed["properties"]
        .as_object_mut()
        .unwrap()
        .remove("destination");
    completed["required"]
        .as_array_mut()
        .unwrap()
        .retain(|field| field != "destination");
    assert_eq!(
        contract_problems(&[&order, &shipping]),
        [
            "`shipping-service` requires `order.completed.v1` field `destination`, which \
             `order-service` does not send"
        ]
    );
}

#[tokio::test]
async fn a_nested_field_made_optional_breaks_the_contract() {
    let (mut order, shipping) = documents().await;
    let item = &mut payload(&mut order, "order_completed_v1")["properties"]["items"]["items"];
    item["required"]
        .as_array_mut()
        .unwrap()
        .retain(|field| field != "weight_grams");
    let problems = contract_problems(&[&order, &shipping]);
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(
        problems[0].contains("`order.completed.v1` field `items[].weight_grams`")
            && problems[0].contains("may leave out"),
        "{problems:?}"
    );
}

#[tokio::test]
async fn an_event_no_longer_published_breaks_the_contract() {
    let (mut order, shipping) = documents().await;
    order["operations"]
        .as_object_mut()
        .unwrap()
        .remove("send_order_completed_v1");
    assert_eq!(
        contract_problems(&[&order, &shipping]),
        [
            "`shipping-service` receives `order.completed.v1`, which none of `order-service`, \
             `shipping-service` sends"
        ]
    );
}

#[test]
fn the_documents_follow_the_configured_provider() {
    for (provider, header, address) in [
        ("rabbitmq", "cloudEvents_id", "order.completed.v1"),
        ("nats", "ce-id", "chassis.order.completed.v1"),
    ] {
        for host in [order_service::host(), shipping_service::host()] {
            let doc = host
                .env_vars(Vec::<(String, String)>::new())
                .config("messaging.provider", provider)
                .asyncapi_document()
                .unwrap_or_else(|e| panic!("{provider}: {e}"));
            let servers = doc["servers"].as_object().unwrap();
            assert_eq!(servers.keys().collect::<Vec<_>>(), [provider]);
            assert_eq!(
                doc["channels"]["order_completed_v1"]["address"], address,
                "{provider}"
            );
            let headers = &doc["components"]["messages"]["order_completed_v1"]["headers"];
            assert!(
                headers["properties"][header].is_object(),
                "{provider}: {headers}"
            );
        }
    }
}
