//! One placed order is ONE trace with spans from both services: the order
//! service's HTTP server span → the outbox relay's producer span → the
//! shipping service's consumer span. Both services in one process on one
//! in-memory bus, `tracing.provider = "otlp"`, exporting to an OTLP receiver
//! inside the test (real OTLP/gRPC protobuf).

use std::time::Duration;

use chassis_testing::TestBus;
use chassis_web::ServiceHostBuilder;
use order_service_client::{ClientConfig, OrderServiceClient};
use otlp_test_receiver::{OtlpReceiver, ReceivedSpan};

const ORDER: &str = order_service::SERVICE_NAME;
const SHIPPING: &str = shipping_service::SERVICE_NAME;

fn traced(host: ServiceHostBuilder, receiver: &OtlpReceiver) -> ServiceHostBuilder {
    host.config("tracing.provider", "otlp")
        .config("tracing.otlp.protocol", "grpc")
        .config("tracing.otlp.endpoint", receiver.grpc_endpoint())
}

fn one<'a>(
    spans: &'a [ReceivedSpan],
    what: &str,
    pred: impl Fn(&ReceivedSpan) -> bool,
) -> &'a ReceivedSpan {
    let found: Vec<_> = spans.iter().filter(|s| pred(s)).collect();
    assert_eq!(found.len(), 1, "expected one {what}; spans: {spans:#?}");
    found[0]
}

#[tokio::test]
async fn a_placed_order_is_one_trace_across_both_services() {
    let receiver = OtlpReceiver::start().await.unwrap();
    let bus = TestBus::in_memory();
    let orders_service =
        chassis_testing::start(traced(order_service::host(), &receiver), &bus).await;
    let shipping_service =
        chassis_testing::start(traced(shipping_service::host(), &receiver), &bus).await;
    let orders = OrderServiceClient::new(&ClientConfig::new(orders_service.base_url())).unwrap();

    let request = shop_demo::samples::orders().remove(0);
    orders.place_order(&request).await.unwrap();
    bus.wait_until("shipping to pack the order", |log| {
        log.iter()
            .any(|h| h.group == SHIPPING && h.outcome.is_ok())
            .then_some(())
    })
    .await;
    // Shutdown flushes both services' exporters.
    shipping_service.shutdown().await.unwrap();
    orders_service.shutdown().await.unwrap();
    bus.shutdown().await.unwrap();

    let spans = receiver
        .wait_until(
            "a consumer span of shipping",
            Duration::from_secs(10),
            |spans| {
                spans
                    .iter()
                    .any(|s| s.service_name == SHIPPING && s.kind == "SPAN_KIND_CONSUMER")
            },
        )
        .await
        .unwrap();
    let server = one(&spans, "POST server span of the order service", |s| {
        s.service_name == ORDER && s.kind == "SPAN_KIND_SERVER" && s.name.starts_with("POST")
    });
    let trace: Vec<ReceivedSpan> = spans
        .iter()
        .filter(|s| s.trace_id == server.trace_id)
        .cloned()
        .collect();
    let producer = one(&trace, "producer span", |s| s.kind == "SPAN_KIND_PRODUCER");
    let consumer = one(&trace, "consumer span", |s| s.kind == "SPAN_KIND_CONSUMER");
    assert_eq!(
        producer.service_name, ORDER,
        "the relay publishes in the order service"
    );
    assert_eq!(consumer.service_name, SHIPPING);
    assert_eq!(producer.name, "order.completed.v1 publish");
    assert_eq!(consumer.name, "order.completed.v1 process");
    // The chain: server span (or a span under it) → producer → consumer.
    assert_eq!(
        consumer.parent_span_id,
        Some(producer.span_id),
        "{trace:#?}"
    );
    let producer_parent = producer
        .parent_span_id
        .expect("the producer continues the request");
    assert!(
        trace
            .iter()
            .any(|s| s.span_id == producer_parent && s.service_name == ORDER),
        "the producer's parent is a span of the order request: {trace:#?}"
    );
    // Correlation travels with the trace.
    let correlation = consumer
        .attributes
        .get("correlation_id")
        .expect("correlation id");
    assert!(!correlation.is_empty());
    assert_eq!(producer.attributes.get("correlation_id"), Some(correlation));
    // One trace: every span of the services about this order is in it.
    assert!(trace.iter().any(|s| s.service_name == ORDER));
    assert!(trace.iter().any(|s| s.service_name == SHIPPING));
    receiver.shutdown().await;
}
