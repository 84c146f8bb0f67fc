//! The shipping quote over RabbitMQ: both services in-process, each
//! connecting from its configuration to a vhost of this test (stores in
//! memory): the happy path; shipping down (its queue bound, no consumer):
//! 504 for the quote, orders placed without one, and quotes again once it
//! is back; the broker restarting in the middle: a clear error (never a
//! hang) while it is away, orders still placed, quotes again after the
//! reconnection.
//!
//! Needs RabbitMQ 127.0.0.1:5672 (guest/guest, `rabbitmqctl`); fails
//! without it. The restart test takes the broker lock exclusively and a
//! drop guard always starts the broker again.

mod common;

use std::time::{Duration, Instant};

use chassis_testing::InProcess;
use chassis_web::{RunningService, ServiceHostBuilder};
use common::{BrokerStopped, Vhost, lamp_order, lamps};
use order_service_client::dto::OrderStatus;
use order_service_client::{ClientConfig, ClientError, OrderServiceClient};

/// The order service with short quote timeouts (its own `[order]` section:
/// the shipping service has none).
fn order_host() -> ServiceHostBuilder {
    order_service::host()
        .config("order.quote_timeout", "1s")
        .config("order.placement_quote_timeout", "500ms")
}

async fn start(host: ServiceHostBuilder, vhost: &Vhost) -> RunningService {
    let storage = host.embedded_storage_provider();
    host.config("messaging.provider", "rabbitmq")
        .config("messaging.rabbitmq.url", vhost.amqp_url())
        .config("messaging.rabbitmq.reconnect_initial_backoff", "100ms")
        .config("messaging.rabbitmq.reconnect_max_backoff", "500ms")
        .config("messaging.rabbitmq.publish_wait", "1s")
        .config("storage.provider", storage)
        .in_process()
        .start()
        .await
        .unwrap_or_else(|e| panic!("the service did not start (RabbitMQ up?): {e}"))
}

fn status(error: &ClientError) -> u16 {
    match error {
        ClientError::Problem { status, .. } => status.as_u16(),
        other => panic!("expected a problem response, got {other:?}"),
    }
}

/// Asks until a quote comes (the services may still be attaching).
async fn quote_eventually(
    orders: &OrderServiceClient,
) -> order_service_client::quote::ShippingQuote {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match orders.quote(&lamps(3)).await {
            Ok(quote) => return quote,
            Err(e) => {
                assert!(Instant::now() < deadline, "no quote within 60 s: {e}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quotes_over_rabbitmq_and_the_fallback_while_shipping_is_down() {
    let vhost = Vhost::new("quote");
    let order_svc = start(order_host(), &vhost).await;
    let shipping_svc = start(shipping_service::host(), &vhost).await;
    let orders = OrderServiceClient::new(&ClientConfig::new(order_svc.base_url())).unwrap();

    let quote = orders.quote(&lamps(3)).await.unwrap();
    assert_eq!(quote.package_count, 2);
    assert!(quote.transport_provider.is_some());
    let placed = orders.place_order(&lamp_order()).await.unwrap();
    assert_eq!(placed.shipping_quote.as_ref(), Some(&quote));

    // Shipping down: its quote queue is still bound, nobody consumes it.
    shipping_svc.shutdown().await.unwrap();
    let started = Instant::now();
    let err = orders.quote(&lamps(3)).await.unwrap_err();
    assert_eq!(status(&err), 504, "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(5));
    let started = Instant::now();
    let placed = orders.place_order(&lamp_order()).await.unwrap();
    assert_eq!(placed.status, OrderStatus::Completed);
    assert_eq!(
        placed.shipping_quote, None,
        "the fallback: placed without a quote"
    );
    assert!(started.elapsed() < Duration::from_secs(5));

    // Back: the expired requests waiting in its queue are skipped, new ones
    // answered.
    let _shipping_svc = start(shipping_service::host(), &vhost).await;
    assert_eq!(quote_eventually(&orders).await, quote);
    order_svc.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quotes_across_a_broker_restart() {
    let vhost = Vhost::exclusive("quote-restart");
    let order_svc = start(order_host(), &vhost).await;
    let _shipping_svc = start(shipping_service::host(), &vhost).await;
    let orders = OrderServiceClient::new(&ClientConfig::new(order_svc.base_url())).unwrap();
    let quote = orders.quote(&lamps(3)).await.unwrap();

    {
        let _broker_down = BrokerStopped::stop_app();
        // While it is away: a clear error, in about the timeout.
        let started = Instant::now();
        let err = orders.quote(&lamps(3)).await.unwrap_err();
        let took = started.elapsed();
        println!(
            "quote while the broker is away: {} after {took:?}",
            status(&err)
        );
        assert!(
            matches!(status(&err), 503 | 504),
            "503 (not connected) or 504 (timeout): {err:?}"
        );
        assert!(took < Duration::from_secs(5), "never a hang: {took:?}");
        // Orders are still placed (the outbox publishes them later), without a quote.
        let placed = orders.place_order(&lamp_order()).await.unwrap();
        assert_eq!(placed.status, OrderStatus::Completed);
        assert_eq!(placed.shipping_quote, None);
    }
    // The guard started the broker again; both services reconnect.
    assert_eq!(quote_eventually(&orders).await, quote);
    let placed = orders.place_order(&lamp_order()).await.unwrap();
    assert_eq!(placed.shipping_quote, Some(quote));
    order_svc.shutdown().await.unwrap();
}
