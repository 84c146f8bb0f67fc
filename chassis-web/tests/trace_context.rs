//! With a tracing provider, a request continues the caller's trace and the
//! message context hands it on to published messages. Own test binary: it
//! installs the global subscriber.

mod common;

use axum::Router;
use axum::routing::get;
use chassis_web::{Json, current_message_context};
use common::{TempDir, client, isolated};
use serde_json::Value;

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT_SPAN: &str = "00f067aa0ba902b7";

#[tokio::test]
async fn request_continues_the_callers_trace_into_the_message_context() {
    let dir = TempDir::new();
    let service = isolated("trace-test", &dir)
        .install_logging(true)
        .config("tracing.provider", "stdout")
        .config("logging.level", "warn")
        .routes(|_| {
            Router::new().route(
                "/publish",
                get(|| async {
                    let ctx = current_message_context();
                    Json(serde_json::json!({
                        "traceparent": ctx.traceparent,
                        "correlation_id": ctx.correlation_id,
                    }))
                }),
            )
        })
        .start()
        .await
        .unwrap();
    let body: Value = client()
        .get(format!("{}/publish", service.base_url()))
        .header("traceparent", format!("00-{TRACE_ID}-{PARENT_SPAN}-01"))
        .header("x-correlation-id", "trace-corr")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let traceparent = body["traceparent"].as_str().expect("traceparent set");
    let parts: Vec<&str> = traceparent.split('-').collect();
    assert_eq!(parts.len(), 4, "{traceparent}");
    assert_eq!(parts[1], TRACE_ID, "same trace");
    assert_ne!(
        parts[2], PARENT_SPAN,
        "the server span is a child, not the caller"
    );
    assert_eq!(body["correlation_id"], "trace-corr");

    // Without a traceparent header a new trace starts.
    let body: Value = client()
        .get(format!("{}/publish", service.base_url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let traceparent = body["traceparent"].as_str().expect("traceparent set");
    assert!(!traceparent.contains(TRACE_ID), "{traceparent}");
    service.shutdown().await.unwrap();
}
