//! With a tracing provider on, every log line of a request AND of the
//! message handler it leads to carries the same trace id and correlation id;
//! the handler's lines also carry the causation id, the id of the message
//! being handled (JSON logs, captured). Own test binary: it installs the global subscriber.

mod common;

use std::time::Duration;

use axum::Router;
use axum::routing::post;
use chassis_web::{ServiceContext, current_message_context};
use common::{Capture, TempDir, client, isolated};
use messaging_abstractions::{EventBusExt, Handlers, IntegrationEvent, Subscription};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::mpsc;

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CORRELATION: &str = "corr-trace-logs";

#[derive(Debug, Serialize, Deserialize)]
struct Shipped {
    n: u32,
}

impl IntegrationEvent for Shipped {
    const EVENT_TYPE: &'static str = "test.shipped.v1";
}

async fn subscribe(ctx: ServiceContext, done: mpsc::UnboundedSender<(u32, String)>) {
    let handlers = Handlers::new().on_fn(move |shipped: Shipped, delivery| {
        let done = done.clone();
        let message_id = delivery.envelope.message_id.to_string();
        async move {
            tracing::info!(n = shipped.n, "handling shipped");
            let _ = done.send((shipped.n, message_id));
            Ok(())
        }
    });
    ctx.bus()
        .subscribe(Subscription::new("trace-logs", handlers))
        .await
        .unwrap();
}

/// Whether a JSON log line carries `field` once, as a top-level key (the
/// host's log context), and with `value`.
fn carries(line: &Value, field: &str, value: &str) -> bool {
    let in_spans = line["spans"]
        .as_array()
        .is_some_and(|spans| spans.iter().any(|s| s.get(field).is_some()));
    line[field] == value && !in_spans
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_and_handler_log_lines_carry_trace_and_correlation_ids() {
    let capture = Capture::default();
    let layer = capture.json_layer("info");
    let (done_tx, mut done) = mpsc::unbounded_channel();
    let dir = TempDir::new();
    let service = isolated("trace-log-test", &dir)
        .install_logging(true)
        .config("logging.provider", "console")
        .config("tracing.provider", "stdout")
        .log_layer(layer)
        .on_start(move |ctx| async move {
            subscribe(ctx, done_tx).await;
            Ok(())
        })
        .routes(|ctx| {
            let bus = ctx.bus().clone();
            Router::new().route(
                "/ship",
                post(move || {
                    let bus = bus.clone();
                    async move {
                        tracing::info!("shipping requested");
                        let ctx = current_message_context();
                        bus.publish_event_in(&Shipped { n: 7 }, &ctx).await.unwrap();
                        "ok"
                    }
                }),
            )
        })
        .start()
        .await
        .unwrap();
    let response = client()
        .post(format!("{}/ship", service.base_url()))
        .header("traceparent", format!("00-{TRACE_ID}-00f067aa0ba902b7-01"))
        .header("x-correlation-id", CORRELATION)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let (n, message_id) = tokio::time::timeout(Duration::from_secs(10), done.recv())
        .await
        .expect("the handler runs")
        .unwrap();
    assert_eq!(n, 7);
    service.shutdown().await.unwrap();

    let text = capture.text();
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let line = |message: &str| {
        let found: Vec<&Value> = lines
            .iter()
            .filter(|l| l["fields"]["message"] == message || l["message"] == message)
            .collect();
        assert_eq!(found.len(), 1, "one `{message}` line in {text}");
        found[0]
    };
    for message in ["shipping requested", "handling shipped"] {
        let line = line(message);
        assert!(
            carries(line, "correlation_id", CORRELATION),
            "`{message}` without the correlation id: {line}"
        );
        assert!(
            carries(line, "trace_id", TRACE_ID),
            "`{message}` without the caller's trace id: {line}"
        );
    }
    let handler_line = line("handling shipped");
    assert!(
        carries(handler_line, "causation_id", &message_id),
        "the handler's line without the causation id {message_id}: {handler_line}"
    );
    let request_line = line("shipping requested");
    assert!(
        request_line.get("causation_id").is_none(),
        "a request has no causation id: {request_line}"
    );
}
