//! The receiver against hand-made OTLP requests on both transports.

use std::time::Duration;

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, span};
use otlp_test_receiver::{OtlpReceiver, Transport};
use prost::Message;
use traces_abstractions::{SpanId, TraceId};

const WAIT: Duration = Duration::from_secs(10);

fn kv(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value.into())),
        }),
        ..Default::default()
    }
}

fn request(service: &str, trace: u8, span_id: u8, parent: Option<u8>) -> ExportTraceServiceRequest {
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![kv("service.name", service)],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                spans: vec![Span {
                    trace_id: vec![trace; 16],
                    span_id: vec![span_id; 8],
                    parent_span_id: parent.map(|p| vec![p; 8]).unwrap_or_default(),
                    name: format!("span-{span_id}"),
                    kind: span::SpanKind::Server as i32,
                    attributes: vec![kv("http.route", "/orders")],
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

async fn export_grpc(receiver: &OtlpReceiver, request: ExportTraceServiceRequest) {
    let mut client = TraceServiceClient::connect(receiver.grpc_endpoint())
        .await
        .unwrap();
    client.export(request).await.unwrap();
}

#[tokio::test]
async fn decodes_grpc_and_http_exports() {
    let receiver = OtlpReceiver::start().await.unwrap();
    export_grpc(&receiver, request("orders", 1, 1, None)).await;

    let http = reqwest::Client::new();
    let url = format!("{}/v1/traces", receiver.http_endpoint());
    let response = http
        .post(&url)
        .header("content-type", "application/x-protobuf")
        .header("x-api-key", "k3y")
        .body(request("shipping", 1, 2, Some(1)).encode_to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);

    let trace = TraceId([1; 16]);
    let spans = receiver.wait_for_trace(trace, 2, WAIT).await.unwrap();
    let root = spans.iter().find(|s| s.service_name == "orders").unwrap();
    let child = spans.iter().find(|s| s.service_name == "shipping").unwrap();
    assert_eq!(root.transport, Transport::Grpc);
    assert_eq!(root.parent_span_id, None);
    assert_eq!(root.kind, "SPAN_KIND_SERVER");
    assert_eq!(root.attributes["http.route"], "/orders");
    assert_eq!(child.transport, Transport::HttpProtobuf);
    assert_eq!(child.parent_span_id, Some(SpanId([1; 8])));
    assert_eq!(child.span_id, SpanId([2; 8]));
    assert!(
        receiver
            .request_headers()
            .iter()
            .any(|h| h.get("x-api-key").map(String::as_str) == Some("k3y"))
    );

    // Malformed bodies are refused, not recorded.
    let bad = http
        .post(&url)
        .header("content-type", "application/x-protobuf")
        .body(vec![0xff, 0xff, 0xff])
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    let json = http
        .post(&url)
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(json.status(), 415);
    assert_eq!(receiver.spans().len(), 2);
    receiver.shutdown().await;
}

#[tokio::test]
async fn wait_times_out_with_a_useful_message() {
    let receiver = OtlpReceiver::start().await.unwrap();
    export_grpc(&receiver, request("orders", 7, 3, None)).await;
    let err = receiver
        .wait_for_spans(2, Duration::from_millis(200))
        .await
        .unwrap_err();
    assert_eq!(err.received, 1);
    assert_eq!(
        err.to_string(),
        "otlp test receiver: expected 2 span(s) within 200ms, received 1 span(s): orders/span-3"
    );
    receiver.shutdown().await;
}
