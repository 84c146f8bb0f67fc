//! The `otlp` provider end to end: `tracing` spans → OpenTelemetry layer →
//! OTLP exporter (gRPC and HTTP/protobuf) → the in-process receiver, which
//! decodes the real OTLP protobuf.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use chassis_core::config::JsonSource;
use otlp_test_receiver::{OtlpReceiver, ReceivedSpan, Transport};
use serde_json::{Value, json};
use traces_abstractions::TracingConfig;
/// A layer as the host hands it to the logging provider.
type BoxedLayer = Box<dyn tracing_subscriber::Layer<tracing_subscriber::Registry> + Send + Sync>;
use traces_init::{TracingInitError, TracingProvider, propagation};
use tracing::level_filters::LevelFilter;
use tracing_subscriber::Layer;
use tracing_subscriber::layer::{Identity, SubscriberExt};

const WAIT: Duration = Duration::from_secs(15);

/// The wire protocols, as `tracing.otlp.protocol` names them.
#[derive(Debug, Clone, Copy)]
enum Protocol {
    Grpc,
    HttpProtobuf,
}

impl Protocol {
    fn name(self) -> &'static str {
        match self {
            Protocol::Grpc => "grpc",
            Protocol::HttpProtobuf => "http/protobuf",
        }
    }
}

/// A `[tracing]` section (as the host loads it) exporting to `receiver`.
fn otlp_config(service: &str, receiver: &OtlpReceiver, protocol: Protocol, ratio: f64) -> Value {
    let endpoint = match protocol {
        Protocol::Grpc => receiver.grpc_endpoint(),
        Protocol::HttpProtobuf => receiver.http_endpoint(),
    };
    json!({
        "provider": "otlp",
        "sampling_ratio": ratio,
        "service_name": service,
        "service_version": "1.2.3",
        "resource_attributes": { "deployment.environment.name": "test" },
        "otlp": { "protocol": protocol.name(), "endpoint": endpoint, "timeout": "5s" }
    })
}

/// The shared keys of `section` and the source its `otlp` subsection is read
/// from, the way the host hands them to `traces_init::build`.
fn load(section: &Value) -> (TracingConfig, JsonSource) {
    let config = serde_json::from_value(section.clone()).expect("a valid [tracing] section");
    (config, JsonSource::new(json!({ "tracing": section })))
}

/// Builds with no `OTEL_*` variables, so the machine's environment cannot
/// change what is tested.
fn try_build(section: &Value) -> Result<TracingProvider, TracingInitError> {
    let (config, source) = load(section);
    traces_init::build_with_env(&config, &source, &|_| None)
}

fn build(section: &Value) -> TracingProvider {
    try_build(section).expect("otlp provider builds")
}

/// Runs `f` with a subscriber composed the way a host composes it
/// (`logging-init`: a `Registry` with a `Vec` of boxed layers, the logging
/// layer first with its own filter, then the tracing layer), scoped to this
/// thread: nothing global.
fn with_provider<T>(provider: &TracingProvider, f: impl FnOnce() -> T) -> T {
    let logging_stand_in: BoxedLayer = Box::new(Identity::new().with_filter(LevelFilter::WARN));
    let mut layers = vec![logging_stand_in];
    layers.extend(provider.layer());
    let subscriber = tracing_subscriber::registry().with(layers);
    tracing::subscriber::with_default(subscriber, f)
}

fn by_name<'a>(spans: &'a [ReceivedSpan], name: &str) -> &'a ReceivedSpan {
    spans
        .iter()
        .find(|s| s.name == name)
        .unwrap_or_else(|| panic!("no span `{name}` in {spans:#?}"))
}

async fn parent_and_child_arrive(protocol: Protocol, transport: Transport) {
    let receiver = OtlpReceiver::start().await.unwrap();
    let mut config = otlp_config("orders", &receiver, protocol, 1.0);
    config["otlp"]["headers"] = json!({ "x-api-key": "k3y" });
    let provider = build(&config);
    assert_eq!(provider.provider_name(), "otlp");

    let trace_id = with_provider(&provider, || {
        let parent = tracing::info_span!("place_order", order.id = "o-42");
        let _entered = parent.enter();
        let trace_id = propagation::current_trace_id().expect("a span is current");
        tracing::info_span!("save_order").in_scope(|| {
            tracing::info!("saved");
        });
        // Below the configured span level: not exported.
        tracing::debug_span!("debug_detail").in_scope(|| {});
        trace_id
    });
    provider.shutdown().await.unwrap();

    let spans = receiver.wait_for_trace(trace_id, 2, WAIT).await.unwrap();
    assert_eq!(spans.len(), 2, "{spans:#?}");
    let parent = by_name(&spans, "place_order");
    let child = by_name(&spans, "save_order");
    for span in [parent, child] {
        assert_eq!(span.service_name, "orders");
        assert_eq!(span.resource["service.version"], "1.2.3");
        assert_eq!(span.resource["deployment.environment.name"], "test");
        assert_eq!(span.transport, transport);
        assert!(span.end_time_unix_nano >= span.start_time_unix_nano);
    }
    assert_eq!(parent.parent_span_id, None);
    assert_eq!(child.parent_span_id, Some(parent.span_id));
    assert_eq!(parent.attributes["order.id"], "o-42");
    assert!(
        receiver
            .request_headers()
            .iter()
            .all(|h| h.get("x-api-key").map(String::as_str) == Some("k3y")),
        "configured headers go with every export"
    );
    receiver.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_export_keeps_service_and_parent_child() {
    parent_and_child_arrive(Protocol::Grpc, Transport::Grpc).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_protobuf_export_keeps_service_and_parent_child() {
    parent_and_child_arrive(Protocol::HttpProtobuf, Transport::HttpProtobuf).await;
}

/// Fields of an `Envelope` as they travel between two services.
#[derive(Default)]
struct EnvelopeTraceFields {
    traceparent: Option<String>,
    tracestate: Option<String>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_trace_across_two_services() {
    let receiver = OtlpReceiver::start().await.unwrap();
    let orders = build(&otlp_config("orders", &receiver, Protocol::Grpc, 1.0));
    let shipping = build(&otlp_config(
        "shipping",
        &receiver,
        Protocol::HttpProtobuf,
        1.0,
    ));

    // Service 1: a request span publishes a message.
    let mut envelope = EnvelopeTraceFields::default();
    let (trace_id, publish_span_id) = with_provider(&orders, || {
        let request = tracing::info_span!("POST /orders");
        let _request = request.enter();
        let publish = tracing::info_span!("publish order.completed.v1");
        let _publish = publish.enter();
        assert!(propagation::inject_current(
            &mut envelope.traceparent,
            &mut envelope.tracestate
        ));
        let cx = propagation::current_context().unwrap();
        (cx.traceparent.trace_id, cx.traceparent.parent_id)
    });
    let traceparent = envelope.traceparent.clone().unwrap();
    assert!(traceparent.starts_with(&format!("00-{trace_id}-{publish_span_id}-")));

    // Service 2: the consumer continues the trace from the envelope.
    let handler_trace = with_provider(&shipping, || {
        let handler = tracing::info_span!(
            "handle order.completed.v1",
            otel.kind = "consumer",
            trace_id = tracing::field::Empty
        );
        assert!(propagation::set_parent(
            &handler,
            envelope.traceparent.as_deref(),
            envelope.tracestate.as_deref(),
        ));
        assert_eq!(propagation::record_trace_id(&handler), Some(trace_id));
        assert!(
            !propagation::set_parent(&handler, envelope.traceparent.as_deref(), None),
            "the parent is fixed once the span has started"
        );
        let _handler = handler.enter();
        tracing::info_span!("pack items").in_scope(|| {});
        propagation::current_trace_id().unwrap()
    });
    assert_eq!(handler_trace, trace_id);

    orders.shutdown().await.unwrap();
    shipping.shutdown().await.unwrap();

    let spans = receiver.wait_for_trace(trace_id, 4, WAIT).await.unwrap();
    assert_eq!(spans.len(), 4, "{spans:#?}");
    assert!(spans.iter().all(|s| s.trace_id == trace_id));
    let services: HashSet<&str> = spans.iter().map(|s| s.service_name.as_str()).collect();
    assert_eq!(services, HashSet::from(["orders", "shipping"]));

    let request = by_name(&spans, "POST /orders");
    let publish = by_name(&spans, "publish order.completed.v1");
    let handler = by_name(&spans, "handle order.completed.v1");
    let pack = by_name(&spans, "pack items");
    assert_eq!(request.parent_span_id, None);
    assert_eq!(publish.parent_span_id, Some(request.span_id));
    assert_eq!(publish.span_id, publish_span_id);
    assert_eq!(
        handler.parent_span_id,
        Some(publish.span_id),
        "the consumer's span is a child of the producer's publish span"
    );
    assert_eq!(handler.service_name, "shipping");
    assert_eq!(handler.kind, "SPAN_KIND_CONSUMER");
    assert_eq!(handler.attributes["trace_id"], trace_id.to_string());
    assert_eq!(pack.parent_span_id, Some(handler.span_id));
    // Every span of the whole receiver belongs to this one trace.
    assert_eq!(receiver.spans().len(), 4);
    receiver.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sampling_ratio_zero_exports_no_new_trace() {
    let receiver = OtlpReceiver::start().await.unwrap();
    let sampled_out = build(&otlp_config("sampled-out", &receiver, Protocol::Grpc, 0.0));
    let control = build(&otlp_config("control", &receiver, Protocol::Grpc, 1.0));

    with_provider(&sampled_out, || {
        for i in 0..20 {
            tracing::info_span!("dropped", i).in_scope(|| {
                tracing::info_span!("dropped child").in_scope(|| {});
            });
        }
    });
    // A caller's sampled decision is followed even at ratio 0 (ParentBased).
    let caller = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    with_provider(&sampled_out, || {
        let span = tracing::info_span!("continued");
        assert!(propagation::set_parent(&span, Some(caller), None));
        span.in_scope(|| {});
    });
    let control_trace = with_provider(&control, || {
        tracing::info_span!("kept").in_scope(|| propagation::current_trace_id().unwrap())
    });

    // Shutdown flushes and waits for the exports, so whatever the ratio-0
    // provider would send has arrived when it returns.
    sampled_out.shutdown().await.unwrap();
    control.shutdown().await.unwrap();
    receiver
        .wait_for_trace(control_trace, 1, WAIT)
        .await
        .unwrap();
    let continued = receiver
        .wait_for_trace(caller[3..35].parse().unwrap(), 1, WAIT)
        .await
        .unwrap();
    assert_eq!(continued[0].name, "continued");

    let names: Vec<(String, String)> = receiver
        .spans()
        .into_iter()
        .map(|s| (s.service_name, s.name))
        .collect();
    assert_eq!(
        names
            .iter()
            .filter(|(_, n)| n.starts_with("dropped"))
            .count(),
        0,
        "{names:?}"
    );
    assert_eq!(names.len(), 2, "{names:?}");
    receiver.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standard_otel_variables_configure_the_exporter() {
    let receiver = OtlpReceiver::start().await.unwrap();
    let env: BTreeMap<&str, String> = BTreeMap::from([
        ("OTEL_SERVICE_NAME", "from-env".to_owned()),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.http_endpoint()),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf".to_owned()),
        (
            "OTEL_EXPORTER_OTLP_HEADERS",
            "authorization=Bearer%20t0ken".to_owned(),
        ),
        ("OTEL_RESOURCE_ATTRIBUTES", "team=shipping".to_owned()),
    ]);
    let (config, source) = load(&json!({ "provider": "otlp" }));
    let config = config.with_host_service("host-default", None);
    let provider =
        traces_init::build_with_env(&config, &source, &|key| env.get(key).cloned()).unwrap();
    assert_eq!(provider.settings().unwrap().service_name, "from-env");

    let trace_id = with_provider(&provider, || {
        tracing::info_span!("from env").in_scope(|| propagation::current_trace_id().unwrap())
    });
    provider.shutdown().await.unwrap();

    let spans = receiver.wait_for_trace(trace_id, 1, WAIT).await.unwrap();
    assert_eq!(spans[0].service_name, "from-env");
    assert_eq!(spans[0].transport, Transport::HttpProtobuf);
    assert_eq!(spans[0].resource["team"], "shipping");
    assert_eq!(
        receiver.request_headers()[0]["authorization"],
        "Bearer t0ken"
    );
    receiver.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn force_flush_exports_without_shutting_down() {
    let receiver = OtlpReceiver::start().await.unwrap();
    let provider = build(&otlp_config("orders", &receiver, Protocol::Grpc, 1.0));
    let first = with_provider(&provider, || {
        tracing::info_span!("first").in_scope(|| propagation::current_trace_id().unwrap())
    });
    provider.force_flush().await.unwrap();
    receiver.wait_for_trace(first, 1, WAIT).await.unwrap();
    // Still exporting after a flush.
    let second = with_provider(&provider, || {
        tracing::info_span!("second").in_scope(|| propagation::current_trace_id().unwrap())
    });
    provider.shutdown().await.unwrap();
    receiver.wait_for_trace(second, 1, WAIT).await.unwrap();
    receiver.shutdown().await;
}

#[test]
fn otlp_outside_a_runtime_is_an_error() {
    let err = try_build(&json!({ "provider": "otlp" })).unwrap_err();
    assert!(matches!(err, TracingInitError::Otlp(_)), "{err}");
    assert!(err.to_string().contains("needs a Tokio runtime"), "{err}");
}

#[tokio::test]
async fn invalid_otlp_settings_name_their_source() {
    let err = try_build(&json!({ "provider": "otlp", "otlp": { "endpoint": "collector:4317" } }))
        .unwrap_err();
    assert!(matches!(err, TracingInitError::InvalidConfig(_)));
    assert_eq!(
        err.to_string(),
        "tracing.otlp.endpoint: expected an http:// or https:// URL with a host, \
         e.g. http://localhost:4317, found `collector:4317` (from override in code)"
    );
    let err = try_build(&json!({ "provider": "otlp", "otlp": { "endpoit": "http://c:4317" } }))
        .unwrap_err();
    // A misspelled key of the provider's section is the provider's to reject.
    let message = err.to_string();
    assert!(message.starts_with("tracing.otlp"), "{message}");
    assert!(message.contains("unknown field `endpoit`"), "{message}");

    let (config, source) = load(&json!({ "provider": "otlp" }));
    let env = |key: &str| (key == "OTEL_EXPORTER_OTLP_PROTOCOL").then(|| "http/json".to_owned());
    let err = traces_init::build_with_env(&config, &source, &env).unwrap_err();
    assert_eq!(
        err.to_string(),
        "tracing.otlp.protocol: expected `grpc` or `http/protobuf`, found `http/json` \
         (from env OTEL_EXPORTER_OTLP_PROTOCOL)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_headers_carry_the_trace_to_a_server_span() {
    let receiver = OtlpReceiver::start().await.unwrap();
    let client = build(&otlp_config("gateway", &receiver, Protocol::Grpc, 1.0));
    let server = build(&otlp_config("orders", &receiver, Protocol::Grpc, 1.0));

    let mut headers = http::HeaderMap::new();
    headers.insert("tracestate", "stale=1".parse().unwrap());
    let (trace_id, client_span_id) = with_provider(&client, || {
        let call = tracing::info_span!("GET /orders/42", otel.kind = "client");
        let _call = call.enter();
        assert!(propagation::inject_http(&mut headers));
        let cx = propagation::current_context().unwrap();
        (cx.traceparent.trace_id, cx.traceparent.parent_id)
    });
    assert!(
        headers.get("tracestate").is_none(),
        "no vendor state: stale header removed"
    );

    with_provider(&server, || {
        let request = tracing::info_span!("GET /orders/{id}", otel.kind = "server");
        assert!(propagation::set_parent_from_headers(&request, &headers));
        request.in_scope(|| {});
    });
    client.shutdown().await.unwrap();
    server.shutdown().await.unwrap();

    let spans = receiver.wait_for_trace(trace_id, 2, WAIT).await.unwrap();
    let server_span = by_name(&spans, "GET /orders/{id}");
    assert_eq!(server_span.service_name, "orders");
    assert_eq!(server_span.kind, "SPAN_KIND_SERVER");
    assert_eq!(server_span.parent_span_id, Some(client_span_id));
    assert_eq!(by_name(&spans, "GET /orders/42").kind, "SPAN_KIND_CLIENT");
    receiver.shutdown().await;
}

/// Exports one span to `endpoint` and shuts down; shutdown must end well
/// within `bound` and report the failed export.
async fn shutdown_fails_within(endpoint: &str, bound: Duration) {
    for protocol in [Protocol::Grpc, Protocol::HttpProtobuf] {
        let protocol = protocol.name();
        let provider = build(&json!({
            "provider": "otlp",
            "otlp": { "protocol": protocol, "endpoint": endpoint, "timeout": "500ms" }
        }));
        with_provider(&provider, || tracing::info_span!("lost").in_scope(|| {}));
        let err = tokio::time::timeout(bound, provider.shutdown())
            .await
            .unwrap_or_else(|_| panic!("{protocol}: shutdown must not hang"))
            .expect_err("the lost export is reported");
        assert!(
            err.to_string()
                .starts_with("tracing provider `otlp`: shutdown failed:"),
            "{protocol}: {err}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_reports_an_unreachable_collector() {
    // A port nobody listens on any more.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    shutdown_fails_within(&endpoint, Duration::from_secs(10)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_is_bounded_by_the_timeout_when_the_collector_hangs() {
    // Connections are accepted by the kernel but never answered.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", silent.local_addr().unwrap());
    shutdown_fails_within(&endpoint, Duration::from_secs(10)).await;
    drop(silent);
}
