//! One placed order is ONE trace with spans from both services: the order
//! service's HTTP server span → the outbox relay's producer span → the
//! shipping service's consumer span, and, under the server span, the quote
//! asked of shipping over the bus (client span → shipping's consumer span). Both services in one process,
//! `tracing.provider = "otlp"`, exporting to an OTLP receiver inside the
//! test (real OTLP/gRPC protobuf) — once on the in-memory bus, once over
//! the local RabbitMQ (127.0.0.1:5672 guest/guest, a vhost of its own; the
//! test fails without the broker), where the trace context crosses the
//! broker in the message headers.

mod common;

use std::time::Duration;

use chassis_testing::InProcess;
use chassis_testing::TestBus;
use chassis_web::{RunningService, ServiceHostBuilder};
use order_service_client::{ClientConfig, OrderServiceClient};
use otlp_test_receiver::{OtlpReceiver, ReceivedSpan};
use shipping_service_client::ShippingServiceClient;

const ORDER: &str = order_service::SERVICE_NAME;
const SHIPPING: &str = shipping_service::SERVICE_NAME;
const WAIT: Duration = Duration::from_secs(30);

/// The bus both services are on.
enum Broker {
    /// One in-memory bus shared by the two hosts.
    InMemory(TestBus),
    /// Each host connects to this vhost of the local broker itself, from
    /// configuration, as a deployed service does.
    RabbitMq(common::Vhost),
}

impl Broker {
    async fn start(&self, host: ServiceHostBuilder) -> RunningService {
        match self {
            Broker::InMemory(bus) => chassis_testing::start(host, bus).await,
            Broker::RabbitMq(vhost) => {
                let storage = host.embedded_storage_provider();
                host.config("messaging.provider", "rabbitmq")
                    .config("messaging.rabbitmq.url", vhost.amqp_url())
                    .config("storage.provider", storage)
                    .in_process()
                    .start()
                    .await
                    .unwrap_or_else(|e| panic!("the service did not start: {e}"))
            }
        }
    }

    async fn shutdown(self) {
        match self {
            Broker::InMemory(bus) => bus.shutdown().await.unwrap(),
            // Each host closed its own connection; the vhost goes on drop.
            Broker::RabbitMq(vhost) => drop(vhost),
        }
    }
}

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

/// Places one order through the order service's HTTP API on `broker`, waits
/// until the shipping service packed it, and checks the one trace.
async fn a_placed_order_is_one_trace(broker: Broker) {
    let receiver = OtlpReceiver::start().await.unwrap();
    let orders_service = broker.start(traced(order_service::host(), &receiver)).await;
    let shipping_service = broker
        .start(traced(shipping_service::host(), &receiver))
        .await;
    let orders = OrderServiceClient::new(&ClientConfig::new(orders_service.base_url())).unwrap();
    let shipping =
        ShippingServiceClient::new(&ClientConfig::new(shipping_service.base_url())).unwrap();

    let request = shop_demo::samples::orders().remove(0);
    let placed = orders.place_order(&request).await.unwrap();
    let report = shop_demo::await_packed(&shipping, &[placed], WAIT)
        .await
        .unwrap();
    assert!(
        report.missing.is_empty(),
        "not packed: {:?}",
        report.missing
    );
    // Shutdown flushes both services' exporters.
    shipping_service.shutdown().await.unwrap();
    orders_service.shutdown().await.unwrap();
    broker.shutdown().await;

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
    let consumer = one(&trace, "consumer span of the completed order", |s| {
        s.kind == "SPAN_KIND_CONSUMER" && s.name == "order.completed.v1 process"
    });
    // Placing the order asked shipping for a quote over the bus: a client
    // span in the order service, its responder's consumer span under it.
    let asked = one(&trace, "client span of the quote request", |s| {
        s.kind == "SPAN_KIND_CLIENT"
    });
    let answered = one(&trace, "consumer span of the quote request", |s| {
        s.kind == "SPAN_KIND_CONSUMER" && s.name == "shipping.quote.v1 process"
    });
    assert_eq!(
        (asked.service_name.as_str(), asked.name.as_str()),
        (ORDER, "shipping.quote.v1 request")
    );
    assert_eq!(answered.service_name, SHIPPING);
    assert_eq!(answered.parent_span_id, Some(asked.span_id), "{trace:#?}");
    assert!(
        trace
            .iter()
            .any(|s| Some(s.span_id) == asked.parent_span_id && s.service_name == ORDER),
        "the quote request's parent is a span of the order request: {trace:#?}"
    );
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
    assert_eq!(
        server.attributes.get("correlation_id"),
        Some(correlation),
        "the server span carries the request's correlation id"
    );
    // Every consumer span of shipping is in this trace: nothing started a
    // trace of its own on the way.
    assert!(
        spans
            .iter()
            .filter(|s| s.service_name == SHIPPING && s.kind == "SPAN_KIND_CONSUMER")
            .all(|s| s.trace_id == server.trace_id),
        "{spans:#?}"
    );
    receiver.shutdown().await;
}

#[tokio::test]
async fn a_placed_order_is_one_trace_across_both_services() {
    a_placed_order_is_one_trace(Broker::InMemory(TestBus::in_memory())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_placed_order_is_one_trace_across_both_services_over_rabbitmq() {
    a_placed_order_is_one_trace(Broker::RabbitMq(common::Vhost::new("shop-demo-trace"))).await;
}
