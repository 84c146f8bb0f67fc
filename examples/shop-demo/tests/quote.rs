//! The shipping quote over the bus (request/response) on the in-memory bus:
//! `POST /orders/quote` answered by the shipping service with its packing
//! rules, the quote kept on a placed order, and the documented fallbacks
//! when shipping does not answer (503 / 504 for the quote, the order placed
//! without a quote), and a quote request delivered twice. The same over
//! RabbitMQ is in `quote_rabbitmq.rs`.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use chassis_domain::messaging::{
    Delivery, Envelope, EventBus, HandlerError, MessageHandler, PublishError, RequestError,
    Responders, ShutdownError, SubscribeError, Subscription,
};
use chassis_testing::InProcess;
use chassis_testing::TestBus;
use common::{lamp_order, lamps};
use order_service_client::dto::OrderStatus;
use order_service_client::quote::QuoteOrderRequest;
use order_service_client::{ClientConfig, ClientError, OrderServiceClient};
use shipping_service::domain::{ShippingConfig, TransportProviders};
use shipping_service_client::quote::{Quote, QuoteRequest};

/// What shipping's own rules say about `request` (the expected answer).
fn expected(request: &QuoteOrderRequest) -> Quote {
    let providers = TransportProviders::from_config(&ShippingConfig::default()).unwrap();
    let items = request
        .items
        .iter()
        .map(|l| shipping_service_client::quote::QuoteItem {
            sku: l.sku.clone(),
            quantity: u32::try_from(l.quantity).unwrap(),
            weight_grams: u32::try_from(l.weight_grams).unwrap(),
            length_mm: u32::try_from(l.length_mm).unwrap(),
            width_mm: u32::try_from(l.width_mm).unwrap(),
            height_mm: u32::try_from(l.height_mm).unwrap(),
        })
        .collect();
    let d = &request.destination;
    shipping_service::quote::quote(
        &providers,
        &QuoteRequest {
            destination: shipping_service_client::quote::Destination {
                name: d.name.clone(),
                street: d.street.clone(),
                city: d.city.clone(),
                postal_code: d.postal_code.clone(),
                country: d.country.clone(),
            },
            items,
        },
    )
    .unwrap()
}

fn status(error: &ClientError) -> u16 {
    match error {
        ClientError::Problem { status, .. } => status.as_u16(),
        other => panic!("expected a problem response, got {other:?}"),
    }
}

#[tokio::test]
async fn a_quote_over_the_bus_follows_shippings_packing_rules_and_is_kept_on_the_order() {
    let bus = TestBus::in_memory();
    let order_svc = chassis_testing::start(order_service::host(), &bus).await;
    let _shipping_svc = chassis_testing::start(shipping_service::host(), &bus).await;
    let orders = OrderServiceClient::new(&ClientConfig::new(order_svc.base_url())).unwrap();

    let quote = orders.quote(&lamps(3)).await.unwrap();
    let rules = expected(&lamps(3));
    assert_eq!(quote.package_count, 2);
    assert_eq!(quote.package_count, rules.package_count);
    assert_eq!(quote.transport_provider, rules.transport_provider);
    assert!(quote.transport_provider.is_some());
    assert_eq!(
        quote
            .packages
            .iter()
            .map(|p| p.weight_grams)
            .collect::<Vec<_>>(),
        [24_000, 12_000]
    );
    assert!(quote.unshippable.is_empty());

    // Placing the order asks too and keeps the answer.
    let placed = orders.place_order(&lamp_order()).await.unwrap();
    assert_eq!(placed.status, OrderStatus::Completed);
    assert_eq!(placed.shipping_quote.as_ref(), Some(&quote));
    let read = orders.get_order(placed.id).await.unwrap().unwrap();
    assert_eq!(read.shipping_quote, Some(quote));

    // The route, its answers and the fallback are in the OpenAPI description.
    let api = reqwest::get(format!("{}/openapi.json", order_svc.base_url()))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for needle in [
        "\"/orders/quote\"",
        "\"504\"",
        "order.placement_quote_timeout",
        "\"ShippingQuote\"",
        "shipping_quote",
    ] {
        assert!(api.contains(needle), "{needle} missing from /openapi.json");
    }
}

#[tokio::test]
async fn invalid_quote_requests_name_their_fields() {
    let bus = TestBus::in_memory();
    let order_svc = chassis_testing::start(order_service::host(), &bus).await;
    let _shipping_svc = chassis_testing::start(shipping_service::host(), &bus).await;
    let orders = OrderServiceClient::new(&ClientConfig::new(order_svc.base_url())).unwrap();

    let mut bad = lamps(0);
    bad.destination.city = String::new();
    bad.items[0].sku = String::new();
    let ClientError::Problem {
        status, problem, ..
    } = orders.quote(&bad).await.unwrap_err()
    else {
        panic!("expected a problem");
    };
    assert_eq!(status.as_u16(), 422);
    let fields: Vec<String> = problem
        .extensions
        .get("errors")
        .and_then(|e| e.as_array())
        .expect("errors listed")
        .iter()
        .map(|e| e["field"].as_str().unwrap().to_owned())
        .collect();
    for field in ["destination.city", "items[0].quantity", "items[0].sku"] {
        assert!(fields.iter().any(|f| f == field), "{field} in {fields:?}");
    }
    assert!(
        !fields.iter().any(|f| f.ends_with(".name")),
        "no placeholder fields: {fields:?}"
    );
}

#[tokio::test]
async fn without_shipping_the_quote_is_503_and_orders_are_placed_without_one() {
    let bus = TestBus::in_memory();
    // Shipping never started: nobody answers `shipping.quote.v1`.
    let order_svc = chassis_testing::start(order_service::host(), &bus).await;
    let orders = OrderServiceClient::new(&ClientConfig::new(order_svc.base_url())).unwrap();

    let started = Instant::now();
    let err = orders.quote(&lamps(1)).await.unwrap_err();
    assert_eq!(status(&err), 503, "{err:?}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "no responder is known at once, not after the timeout"
    );

    let placed = orders.place_order(&lamp_order()).await.unwrap();
    assert_eq!(placed.status, OrderStatus::Completed);
    assert_eq!(placed.shipping_quote, None, "the fallback: no quote");
}

#[tokio::test]
async fn a_shipping_too_slow_to_answer_gives_504_and_orders_go_on_without_a_quote() {
    let bus = TestBus::in_memory();
    // A shipping quote responder that answers far too late.
    let slow: std::sync::Arc<dyn EventBus> = bus.bus();
    Responders::new()
        .on_fn(|_request: QuoteRequest, _| async {
            tokio::time::sleep(Duration::from_secs(3)).await;
            Err::<Quote, _>(HandlerError::permanent("too late anyway"))
        })
        .subscribe(
            &slow,
            shipping_service::quote::group(shipping_service::SERVICE_NAME),
        )
        .await
        .unwrap();
    let order_svc = chassis_testing::start(
        order_service::host()
            .config("order.quote_timeout", "300ms")
            .config("order.placement_quote_timeout", "100ms"),
        &bus,
    )
    .await;
    let orders = OrderServiceClient::new(&ClientConfig::new(order_svc.base_url())).unwrap();

    let started = Instant::now();
    let err = orders.quote(&lamps(1)).await.unwrap_err();
    assert_eq!(status(&err), 504, "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(2));

    let started = Instant::now();
    let placed = orders.place_order(&lamp_order()).await.unwrap();
    assert_eq!(placed.status, OrderStatus::Completed);
    assert_eq!(placed.shipping_quote, None, "the fallback: no quote");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "placing waits at most the placement timeout for shipping"
    );
}

/// A bus decorator that delivers every message twice to its subscribers'
/// handlers (as a broker redelivers one whose acknowledgement was lost) and
/// counts the replies sent through it.
struct Twice {
    inner: Arc<dyn EventBus>,
    replies: Arc<AtomicUsize>,
    failed_replies: Arc<AtomicUsize>,
}

struct HandleTwice(Arc<dyn MessageHandler>);

#[async_trait::async_trait]
impl MessageHandler for HandleTwice {
    async fn handle(&self, delivery: &Delivery) -> Result<(), HandlerError> {
        self.0.handle(delivery).await?;
        self.0.handle(delivery).await
    }
}

#[async_trait::async_trait]
impl EventBus for Twice {
    fn provider(&self) -> &'static str {
        self.inner.provider()
    }

    async fn publish(&self, envelope: Envelope) -> Result<(), PublishError> {
        self.inner.publish(envelope).await
    }

    async fn subscribe(&self, subscription: Subscription) -> Result<(), SubscribeError> {
        let subscription = subscription.map_handlers(|handler| Arc::new(HandleTwice(handler)));
        self.inner.subscribe(subscription).await
    }

    async fn request(
        &self,
        request: Envelope,
        timeout: Duration,
    ) -> Result<Envelope, RequestError> {
        self.inner.request(request, timeout).await
    }

    async fn reply(&self, request: &Envelope, reply: Envelope) -> Result<(), PublishError> {
        let result = self.inner.reply(request, reply).await;
        self.replies.fetch_add(1, Ordering::AcqRel);
        if result.is_err() {
            self.failed_replies.fetch_add(1, Ordering::AcqRel);
        }
        result
    }

    async fn stop_consuming(&self, grace: Duration) -> Result<(), ShutdownError> {
        self.inner.stop_consuming(grace).await
    }

    async fn shutdown(&self) -> Result<(), ShutdownError> {
        self.inner.shutdown().await
    }
}

#[tokio::test]
async fn a_quote_request_delivered_twice_is_answered_twice_and_the_second_answer_dropped() {
    let bus = TestBus::in_memory();
    let order_svc = chassis_testing::start(order_service::host(), &bus).await;
    let replies = Arc::new(AtomicUsize::new(0));
    let failed_replies = Arc::new(AtomicUsize::new(0));
    let twice: Arc<dyn EventBus> = Arc::new(Twice {
        inner: bus.bus(),
        replies: replies.clone(),
        failed_replies: failed_replies.clone(),
    });
    let shipping = shipping_service::host();
    let storage = shipping.embedded_storage_provider();
    let _shipping_svc = shipping
        .event_bus(twice)
        .config("storage.provider", storage)
        .in_process()
        .start()
        .await
        .unwrap();
    let orders = OrderServiceClient::new(&ClientConfig::new(order_svc.base_url())).unwrap();

    // Each quote is answered twice; the requester takes the first and drops
    // the second, so the next quote still gets its own answer.
    let three = orders.quote(&lamps(3)).await.unwrap();
    assert_eq!(three.package_count, expected(&lamps(3)).package_count);
    let one = orders.quote(&lamps(1)).await.unwrap();
    assert_eq!(one.package_count, 1);
    let quote_group = shipping_service::quote::group(shipping_service::SERVICE_NAME);
    bus.wait_until("both quote requests handled", |log| {
        let done = log
            .iter()
            .filter(|h| h.group == quote_group && h.outcome.is_ok())
            .count();
        (done >= 2).then_some(())
    })
    .await;
    assert_eq!(
        replies.load(Ordering::Acquire),
        4,
        "two answers per request"
    );
    assert_eq!(
        failed_replies.load(Ordering::Acquire),
        0,
        "a second answer is accepted and dropped, never an error"
    );
    let placed = orders.place_order(&lamp_order()).await.unwrap();
    assert_eq!(placed.shipping_quote, Some(three));
}
