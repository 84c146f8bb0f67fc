//! The order service in-process on the in-memory providers: orders in
//! through its HTTP API (client), `order.completed.v1` out through the
//! outbox relay onto the bus (harness).

use std::sync::{Arc, Mutex};

use chassis_domain::EventBus;
use chassis_domain::messaging::{Handlers, Subscription};
use chassis_testing::TestBus;
use order_service_client::dto::{Destination, OrderItem, OrderStatus, PlaceOrderRequest};
use order_service_client::events::OrderCompleted;
use order_service_client::{CallContext, ClientConfig, OrderServiceClient};

/// An event the probe received, with the envelope's correlation id.
type Received = (OrderCompleted, Option<String>);

fn request() -> PlaceOrderRequest {
    PlaceOrderRequest {
        customer_id: "ada".into(),
        destination: Destination {
            name: "Ada Lovelace".into(),
            street: "12 St James's Square".into(),
            city: "London".into(),
            postal_code: "SW1Y 4JH".into(),
            country: "GB".into(),
        },
        items: vec![
            OrderItem {
                sku: "LAMP".into(),
                name: "Desk lamp".into(),
                unit_price_cents: 4_999,
                quantity: 2,
                weight_grams: 2_400,
                length_mm: 450,
                width_mm: 250,
                height_mm: 250,
            },
            OrderItem {
                sku: "PAN".into(),
                name: "Cast-iron pan".into(),
                unit_price_cents: 3_450,
                quantity: 1,
                weight_grams: 3_200,
                length_mm: 520,
                width_mm: 300,
                height_mm: 90,
            },
        ],
    }
}

#[tokio::test]
async fn a_placed_order_is_stored_and_its_completion_published_with_the_request_context() {
    let bus = TestBus::in_memory();
    let seen: Arc<Mutex<Vec<Received>>> = Arc::default();
    let sink = seen.clone();
    let probe = Handlers::new().on_fn(move |event: OrderCompleted, delivery| {
        let sink = sink.clone();
        async move {
            let correlation = delivery.envelope.correlation_id.clone();
            sink.lock().unwrap().push((event, correlation));
            Ok(())
        }
    });
    bus.subscribe(Subscription::new("probe", probe))
        .await
        .unwrap();
    let service = chassis_testing::start(order_service::host(), &bus).await;
    let orders = OrderServiceClient::new(&ClientConfig::new(service.base_url()))
        .unwrap()
        .with_context(CallContext {
            correlation_id: Some("checkout-42".into()),
            ..CallContext::default()
        });

    let placed = orders.place_order(&request()).await.unwrap();
    assert_eq!(placed.status, OrderStatus::Completed);
    assert_eq!(placed.total_cents, 2 * 4_999 + 3_450);
    assert_eq!(placed.items, request().items);
    let read = orders.get_order(placed.id).await.unwrap().unwrap();
    assert_eq!(read, placed);

    bus.wait_until("the probe to receive the order's event", |log| {
        log.iter()
            .find(|h| h.group == "probe" && h.outcome.is_ok())
            .cloned()
    })
    .await;
    let (event, correlation) = seen.lock().unwrap()[0].clone();
    assert_eq!(event.order_id, placed.id);
    // The event's own destination type carries what the request gave.
    assert_eq!(
        serde_json::to_value(&event.destination).unwrap(),
        serde_json::to_value(request().destination).unwrap()
    );
    assert_eq!(event.items.len(), 2);
    assert_eq!(
        (event.items[0].sku.as_str(), event.items[0].quantity),
        ("LAMP", 2)
    );
    assert_eq!(event.items[1].weight_grams, 3_200);
    assert_eq!(
        correlation.as_deref(),
        Some("checkout-42"),
        "context travels"
    );
    service.shutdown().await.unwrap();
    bus.shutdown().await.unwrap();
}

#[tokio::test]
async fn the_http_contract_location_validation_not_found_and_docs() {
    let bus = TestBus::in_memory();
    let service = chassis_testing::start(order_service::host(), &bus).await;
    let base = service.base_url();
    let http = reqwest::Client::new();

    let created = http
        .post(format!("{base}/orders"))
        .header("content-type", "application/json")
        .body(serde_json::to_vec(&request()).unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let location = created.headers()["location"].to_str().unwrap().to_owned();
    let body: serde_json::Value = created.json().await.unwrap();
    let id = body["id"].as_str().unwrap();
    assert!(uuid::Uuid::parse_str(id).is_ok());
    assert_eq!(location, format!("/orders/{id}"));
    let fetched = http.get(format!("{base}{location}")).send().await.unwrap();
    assert_eq!(fetched.status(), 200);

    let orders = OrderServiceClient::new(&ClientConfig::new(&base)).unwrap();
    let mut invalid = request();
    invalid.items[1].quantity = 0;
    invalid.destination.city = String::new();
    let err = orders.place_order(&invalid).await.unwrap_err();
    assert!(err.is_validation(), "{err}");
    let problem = err.problem().unwrap();
    assert!(problem.mentions("items[1].quantity"), "{problem:?}");
    assert!(problem.mentions("destination.city"), "{problem:?}");

    // A wrong type is rejected by the extractor, also naming the field.
    let mut raw = serde_json::to_value(request()).unwrap();
    raw["items"][0]["weight_grams"] = "heavy".into();
    let rejected = http
        .post(format!("{base}/orders"))
        .header("content-type", "application/json")
        .body(raw.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(rejected.status(), 422);
    assert_eq!(
        rejected.headers()["content-type"],
        "application/problem+json"
    );
    assert!(
        rejected
            .text()
            .await
            .unwrap()
            .contains("items[0].weight_grams")
    );

    assert!(
        orders
            .get_order(uuid::Uuid::now_v7())
            .await
            .unwrap()
            .is_none()
    );

    let spec: serde_json::Value = http
        .get(format!("{base}/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(spec["paths"]["/orders"].get("post").is_some());
    assert!(spec["paths"]["/orders/{id}"].get("get").is_some());
    assert!(
        spec["components"]["schemas"]
            .get("PlaceOrderRequest")
            .is_some()
    );
    let docs = http.get(format!("{base}/docs/")).send().await.unwrap();
    assert_eq!(docs.status(), 200);
    service.shutdown().await.unwrap();
    bus.shutdown().await.unwrap();
}
