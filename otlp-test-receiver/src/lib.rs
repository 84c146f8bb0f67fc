//! An OpenTelemetry collector small enough to start inside a test.
//!
//! [`OtlpReceiver::start`] listens on two ephemeral ports of `127.0.0.1`, one
//! speaking OTLP/gRPC (`opentelemetry.proto.collector.trace.v1.TraceService`)
//! and one OTLP/HTTP with protobuf bodies (`POST /v1/traces`). It decodes the
//! real OTLP protobuf messages, keeps every span with its resource's
//! `service.name`, and lets the test wait for what it expects, with a
//! timeout, instead of sleeping.
//!
//! ```
//! use std::time::Duration;
//! use otlp_test_receiver::OtlpReceiver;
//!
//! # #[tokio::main] async fn main() {
//! let receiver = OtlpReceiver::start().await.unwrap();
//! // Point the service under test at it:
//! //   tracing.otlp.endpoint = receiver.grpc_endpoint()   (protocol grpc)
//! //   tracing.otlp.endpoint = receiver.http_endpoint()   (protocol http/protobuf)
//! assert!(receiver.grpc_endpoint().starts_with("http://127.0.0.1:"));
//! // ... run the code under test, then:
//! let err = receiver.wait_for_spans(1, Duration::from_millis(10)).await.unwrap_err();
//! assert_eq!(err.received, 0);
//! receiver.shutdown().await;
//! # }
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::trace::v1::{span, status};
use prost::Message;
use tokio::net::TcpListener;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;
use traces_abstractions::{SpanId, TraceId};

/// Path of the traces signal on OTLP/HTTP.
pub const HTTP_TRACES_PATH: &str = "/v1/traces";

/// Which listener a span arrived on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// OTLP/gRPC.
    Grpc,
    /// OTLP/HTTP with a protobuf body.
    HttpProtobuf,
}

/// One span as the receiver decoded it.
#[derive(Debug, Clone, PartialEq)]
pub struct ReceivedSpan {
    /// `service.name` of the resource the span came with.
    pub service_name: String,
    /// Every resource attribute, values rendered as text.
    pub resource: BTreeMap<String, String>,
    /// Name of the instrumentation scope.
    pub scope: String,
    /// Span name.
    pub name: String,
    /// Trace id.
    pub trace_id: TraceId,
    /// Span id.
    pub span_id: SpanId,
    /// Parent span id; `None` for a root span.
    pub parent_span_id: Option<SpanId>,
    /// Span kind as the OTLP enum names it (`SPAN_KIND_SERVER`, ...).
    pub kind: String,
    /// Span attributes, values rendered as text.
    pub attributes: BTreeMap<String, String>,
    /// Status code as OTLP names it (`STATUS_CODE_UNSET`, `..._OK`, `..._ERROR`).
    pub status: String,
    /// Start time, nanoseconds since the Unix epoch.
    pub start_time_unix_nano: u64,
    /// End time, nanoseconds since the Unix epoch.
    pub end_time_unix_nano: u64,
    /// The listener it arrived on.
    pub transport: Transport,
}

/// A receiver could not start.
#[derive(Debug, thiserror::Error)]
#[error("otlp test receiver: cannot listen on 127.0.0.1: {0}")]
pub struct ReceiverStartError(#[from] std::io::Error);

/// A wait ran out of time.
#[derive(Debug, thiserror::Error)]
#[error(
    "otlp test receiver: expected {expected} within {timeout:?}, received {received} span(s): {summary}"
)]
pub struct WaitTimeout {
    /// What the test waited for.
    pub expected: String,
    /// How long it waited.
    pub timeout: Duration,
    /// Spans received in total when it gave up.
    pub received: usize,
    /// `service/name` of every received span, for the failure message.
    pub summary: String,
}

#[derive(Default)]
struct Collected {
    spans: Vec<ReceivedSpan>,
    /// Request headers (lower-case names) of every export request.
    requests: Vec<BTreeMap<String, String>>,
}

struct Shared {
    collected: Mutex<Collected>,
    /// Bumped on every export so waiters re-check.
    changed: watch::Sender<u64>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Collected> {
        // A panic while holding the lock cannot leave `Collected` half
        // updated (pushes only), so a poisoned lock is still usable.
        self.collected.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn record(
        &self,
        request: ExportTraceServiceRequest,
        headers: BTreeMap<String, String>,
        transport: Transport,
    ) {
        let spans = decode(request, transport);
        {
            let mut collected = self.lock();
            collected.spans.extend(spans);
            collected.requests.push(headers);
        }
        self.changed.send_modify(|n| *n += 1);
    }
}

/// The in-process OTLP receiver. Dropping it stops both listeners.
pub struct OtlpReceiver {
    shared: Arc<Shared>,
    grpc_addr: SocketAddr,
    http_addr: SocketAddr,
    stop: Vec<oneshot::Sender<()>>,
    tasks: Vec<JoinHandle<()>>,
}

impl fmt::Debug for OtlpReceiver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OtlpReceiver")
            .field("grpc_addr", &self.grpc_addr)
            .field("http_addr", &self.http_addr)
            .finish_non_exhaustive()
    }
}

impl OtlpReceiver {
    /// Starts both listeners on ephemeral ports of `127.0.0.1`. Must run in a
    /// Tokio runtime; the servers are tasks on it.
    pub async fn start() -> Result<Self, ReceiverStartError> {
        let (changed, _) = watch::channel(0);
        let shared = Arc::new(Shared {
            collected: Mutex::new(Collected::default()),
            changed,
        });

        let grpc_listener = TcpListener::bind("127.0.0.1:0").await?;
        let grpc_addr = grpc_listener.local_addr()?;
        let http_listener = TcpListener::bind("127.0.0.1:0").await?;
        let http_addr = http_listener.local_addr()?;

        let (grpc_stop, grpc_stopped) = oneshot::channel::<()>();
        let grpc = tonic::transport::Server::builder()
            .add_service(TraceServiceServer::new(GrpcTraces(shared.clone())))
            .serve_with_incoming_shutdown(
                tonic::transport::server::TcpIncoming::from(grpc_listener),
                async {
                    let _ = grpc_stopped.await;
                },
            );
        let grpc_task = tokio::spawn(async move {
            // Errors end the server; the test then sees missing spans.
            let _ = grpc.await;
        });

        let (http_stop, http_stopped) = oneshot::channel::<()>();
        let app = axum::Router::new()
            .route(HTTP_TRACES_PATH, axum::routing::post(http_traces))
            .with_state(shared.clone());
        let http_task = tokio::spawn(async move {
            let _ = axum::serve(http_listener, app)
                .with_graceful_shutdown(async {
                    let _ = http_stopped.await;
                })
                .await;
        });

        Ok(Self {
            shared,
            grpc_addr,
            http_addr,
            stop: vec![grpc_stop, http_stop],
            tasks: vec![grpc_task, http_task],
        })
    }

    /// The OTLP/gRPC endpoint, e.g. `http://127.0.0.1:40123`.
    pub fn grpc_endpoint(&self) -> String {
        format!("http://{}", self.grpc_addr)
    }

    /// The OTLP/HTTP base endpoint, e.g. `http://127.0.0.1:40124`
    /// (exporters append `/v1/traces`).
    pub fn http_endpoint(&self) -> String {
        format!("http://{}", self.http_addr)
    }

    /// Every span received so far, in arrival order.
    pub fn spans(&self) -> Vec<ReceivedSpan> {
        self.shared.lock().spans.clone()
    }

    /// The headers (lower-case names) of every export request so far.
    pub fn request_headers(&self) -> Vec<BTreeMap<String, String>> {
        self.shared.lock().requests.clone()
    }

    /// Waits until at least `count` spans arrived; returns all spans.
    pub async fn wait_for_spans(
        &self,
        count: usize,
        timeout: Duration,
    ) -> Result<Vec<ReceivedSpan>, WaitTimeout> {
        self.wait_until(format!("{count} span(s)"), timeout, |spans| {
            spans.len() >= count
        })
        .await
    }

    /// Waits until at least `count` spans of `trace_id` arrived; returns
    /// the spans of that trace.
    pub async fn wait_for_trace(
        &self,
        trace_id: TraceId,
        count: usize,
        timeout: Duration,
    ) -> Result<Vec<ReceivedSpan>, WaitTimeout> {
        let all = self
            .wait_until(
                format!("{count} span(s) of trace {trace_id}"),
                timeout,
                |spans| spans.iter().filter(|s| s.trace_id == trace_id).count() >= count,
            )
            .await?;
        Ok(all.into_iter().filter(|s| s.trace_id == trace_id).collect())
    }

    /// Waits until `done` holds for the spans received so far; returns them.
    /// `expected` describes the condition for the timeout message.
    pub async fn wait_until(
        &self,
        expected: impl Into<String>,
        timeout: Duration,
        mut done: impl FnMut(&[ReceivedSpan]) -> bool,
    ) -> Result<Vec<ReceivedSpan>, WaitTimeout> {
        let mut changes = self.shared.changed.subscribe();
        // `wait_for` checks the current state first, so an export that
        // arrived before this call is never missed.
        let waited = tokio::time::timeout(
            timeout,
            changes.wait_for(|_| done(&self.shared.lock().spans)),
        )
        .await;
        match waited {
            Ok(Ok(_)) => Ok(self.spans()),
            // The sender lives in `self`, so the channel cannot close here;
            // either way the condition did not become true.
            Ok(Err(_)) | Err(_) => {
                let spans = self.spans();
                Err(WaitTimeout {
                    expected: expected.into(),
                    timeout,
                    received: spans.len(),
                    summary: spans
                        .iter()
                        .map(|s| format!("{}/{}", s.service_name, s.name))
                        .collect::<Vec<_>>()
                        .join(", "),
                })
            }
        }
    }

    /// Stops both listeners and waits for them to finish.
    pub async fn shutdown(mut self) {
        for stop in self.stop.drain(..) {
            let _ = stop.send(());
        }
        for task in self.tasks.drain(..) {
            let _ = task.await;
        }
    }
}

impl Drop for OtlpReceiver {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

struct GrpcTraces(Arc<Shared>);

#[tonic::async_trait]
impl TraceService for GrpcTraces {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let headers = request
            .metadata()
            .iter()
            .filter_map(|entry| match entry {
                tonic::metadata::KeyAndValueRef::Ascii(k, v) => {
                    Some((k.as_str().to_owned(), v.to_str().ok()?.to_owned()))
                }
                tonic::metadata::KeyAndValueRef::Binary(..) => None,
            })
            .collect();
        self.0
            .record(request.into_inner(), headers, Transport::Grpc);
        Ok(tonic::Response::new(ExportTraceServiceResponse {
            partial_success: None,
        }))
    }
}

async fn http_traces(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if content_type != "application/x-protobuf" {
        return (
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "expected content-type application/x-protobuf",
        )
            .into_response();
    }
    let request = match ExportTraceServiceRequest::decode(body) {
        Ok(request) => request,
        Err(e) => {
            return (
                StatusCode::BAD_REQUEST,
                format!("invalid ExportTraceServiceRequest: {e}"),
            )
                .into_response();
        }
    };
    let headers = headers
        .iter()
        .filter_map(|(k, v)| Some((k.as_str().to_owned(), v.to_str().ok()?.to_owned())))
        .collect();
    shared.record(request, headers, Transport::HttpProtobuf);
    let response = ExportTraceServiceResponse {
        partial_success: None,
    };
    (
        [(header::CONTENT_TYPE, "application/x-protobuf")],
        response.encode_to_vec(),
    )
        .into_response()
}

fn decode(request: ExportTraceServiceRequest, transport: Transport) -> Vec<ReceivedSpan> {
    let mut out = Vec::new();
    for resource_spans in request.resource_spans {
        let resource = attributes(
            resource_spans
                .resource
                .map(|r| r.attributes)
                .unwrap_or_default(),
        );
        let service_name = resource.get("service.name").cloned().unwrap_or_default();
        for scope_spans in resource_spans.scope_spans {
            let scope = scope_spans.scope.map(|s| s.name).unwrap_or_default();
            for span in scope_spans.spans {
                // Ids of the wrong length cannot come from a conforming
                // exporter; such spans are kept with zero ids so a test sees
                // them and fails on its assertions rather than here.
                let trace_id = TraceId(span.trace_id.as_slice().try_into().unwrap_or_default());
                let span_id = SpanId(span.span_id.as_slice().try_into().unwrap_or_default());
                let parent_span_id = <[u8; 8]>::try_from(span.parent_span_id.as_slice())
                    .ok()
                    .filter(|id| *id != [0; 8])
                    .map(SpanId);
                let kind = span::SpanKind::try_from(span.kind)
                    .map(|k| k.as_str_name().to_owned())
                    .unwrap_or_else(|_| format!("SPAN_KIND_{}", span.kind));
                let status = span
                    .status
                    .and_then(|s| status::StatusCode::try_from(s.code).ok())
                    .unwrap_or(status::StatusCode::Unset)
                    .as_str_name()
                    .to_owned();
                out.push(ReceivedSpan {
                    service_name: service_name.clone(),
                    resource: resource.clone(),
                    scope: scope.clone(),
                    name: span.name,
                    trace_id,
                    span_id,
                    parent_span_id,
                    kind,
                    attributes: attributes(span.attributes),
                    status,
                    start_time_unix_nano: span.start_time_unix_nano,
                    end_time_unix_nano: span.end_time_unix_nano,
                    transport,
                });
            }
        }
    }
    out
}

fn attributes(kvs: Vec<KeyValue>) -> BTreeMap<String, String> {
    kvs.into_iter()
        .map(|kv| (kv.key, kv.value.map(render).unwrap_or_default()))
        .collect()
}

fn render(value: AnyValue) -> String {
    match value.value {
        Some(any_value::Value::StringValue(s)) => s,
        Some(any_value::Value::BoolValue(b)) => b.to_string(),
        Some(any_value::Value::IntValue(i)) => i.to_string(),
        Some(any_value::Value::DoubleValue(d)) => d.to_string(),
        Some(any_value::Value::ArrayValue(a)) => format!(
            "[{}]",
            a.values
                .into_iter()
                .map(render)
                .collect::<Vec<_>>()
                .join(",")
        ),
        Some(any_value::Value::KvlistValue(l)) => format!("{:?}", attributes(l.values)),
        Some(any_value::Value::BytesValue(b)) => format!("{b:02x?}"),
        // Profiling-only dictionary reference: treated as absent, as the
        // OTLP specification asks of receivers of other signals.
        Some(any_value::Value::StringValueStrindex(_)) | None => String::new(),
    }
}
