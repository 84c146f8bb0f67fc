//! Requests over the host's bus: a client span whose context the request
//! carries (the responder's consumer span is its child), and the request
//! metrics by outcome. Own test binary: it installs the global subscriber
//! and the process' metrics recorder.

mod common;

use std::time::Duration;

use axum::Router;
use axum::extract::Path;
use axum::routing::get;
use chassis_web::{Json, current_message_context};
use common::{TempDir, client, isolated};
use messaging_abstractions::{
    HandlerError, IntegrationEvent, Request, RequestClient, RequestError, Responders,
};
use prometheus_parse::{Sample, Scrape, Value};
use serde::{Deserialize, Serialize};

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT_SPAN: &str = "00f067aa0ba902b7";

#[derive(Debug, Serialize, Deserialize)]
struct Ask {
    n: u32,
}

impl IntegrationEvent for Ask {
    const EVENT_TYPE: &'static str = "test.ask.v1";
}

/// The answer reports the trace context the responder ran in.
#[derive(Debug, Serialize, Deserialize)]
struct Answer {
    n: u32,
    request_traceparent: Option<String>,
    handler_traceparent: Option<String>,
}

impl IntegrationEvent for Answer {
    const EVENT_TYPE: &'static str = "test.answer.v1";
}

impl Request for Ask {
    type Response = Answer;
}

/// A request type nobody answers.
#[derive(Debug, Serialize, Deserialize)]
struct Unanswered;

impl IntegrationEvent for Unanswered {
    const EVENT_TYPE: &'static str = "test.unanswered.v1";
}

impl Request for Unanswered {
    type Response = Answer;
}

fn span_id(traceparent: &str) -> (&str, &str) {
    let parts: Vec<&str> = traceparent.split('-').collect();
    assert_eq!(parts.len(), 4, "{traceparent}");
    (parts[1], parts[2])
}

fn counter(scrape: &Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    matching(scrape, name, labels)
        .map(|s| match s.value {
            Value::Counter(v) | Value::Untyped(v) => v,
            ref other => panic!("{name} is not a counter: {other:?}"),
        })
        .sum()
}

fn histogram_count(scrape: &Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    matching(scrape, name, labels)
        .map(|s| match &s.value {
            Value::Histogram(buckets) => buckets.last().map_or(0.0, |b| b.count),
            other => panic!("{name} is not a histogram: {other:?}"),
        })
        .sum()
}

fn matching<'a>(
    scrape: &'a Scrape,
    name: &'a str,
    labels: &'a [(&'a str, &'a str)],
) -> impl Iterator<Item = &'a Sample> + 'a {
    scrape.samples.iter().filter(move |s| {
        s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v))
    })
}

#[tokio::test]
async fn requests_run_in_a_client_span_and_are_counted_by_outcome() {
    let dir = TempDir::new();
    let service = isolated("request-test", &dir)
        .install_logging(true)
        .config("tracing.provider", "stdout")
        .config("logging.level", "error")
        .on_start(|ctx| async move {
            Responders::new()
                .on_fn(|ask: Ask, delivery| async move {
                    if ask.n == 0 {
                        return Err(HandlerError::permanent("zero is not served"));
                    }
                    if ask.n == 99 {
                        tokio::time::sleep(Duration::from_millis(500)).await;
                    }
                    Ok(Answer {
                        n: ask.n,
                        request_traceparent: delivery.envelope.traceparent.clone(),
                        handler_traceparent: current_message_context().traceparent,
                    })
                })
                .subscribe(ctx.bus(), "request-test-responders")
                .await?;
            Ok(())
        })
        .routes(|ctx| {
            let bus = ctx.bus().clone();
            let none = bus.clone();
            Router::new()
                .route(
                    "/ask/{n}",
                    get(move |Path(n): Path<u32>| {
                        let asks =
                            RequestClient::<Ask>::new(bus.clone(), Duration::from_millis(200));
                        async move {
                            let ctx = current_message_context();
                            let outcome = match asks.send_in(&Ask { n }, &ctx).await {
                                Ok(answer) => serde_json::json!({
                                    "server": ctx.traceparent,
                                    "request": answer.request_traceparent,
                                    "handler": answer.handler_traceparent,
                                }),
                                Err(e) => serde_json::json!({ "error": e.to_string() }),
                            };
                            Json(outcome)
                        }
                    }),
                )
                .route(
                    "/nobody",
                    get(move || {
                        let asks =
                            RequestClient::<Unanswered>::new(none.clone(), Duration::from_secs(5));
                        async move {
                            let err = asks.send(&Unanswered).await.unwrap_err();
                            assert!(matches!(err, RequestError::NoResponder { .. }), "{err:?}");
                            Json(serde_json::json!({ "error": err.to_string() }))
                        }
                    }),
                )
        })
        .start()
        .await
        .unwrap();
    let base = service.base_url();
    let get = |path: &str| {
        client()
            .get(format!("{base}{path}"))
            .header("traceparent", format!("00-{TRACE_ID}-{PARENT_SPAN}-01"))
            .send()
    };

    let body: serde_json::Value = get("/ask/3").await.unwrap().json().await.unwrap();
    let server = body["server"].as_str().expect("server span");
    let request = body["request"]
        .as_str()
        .expect("the request carries a traceparent");
    let handler = body["handler"]
        .as_str()
        .expect("the responder runs in a span");
    let (server_trace, server_span) = span_id(server);
    let (request_trace, request_span) = span_id(request);
    let (handler_trace, handler_span) = span_id(handler);
    assert_eq!(
        [server_trace, request_trace, handler_trace],
        [TRACE_ID; 3],
        "one trace"
    );
    assert_ne!(
        request_span, server_span,
        "the request carries its own client span, a child of the server span"
    );
    assert_ne!(
        handler_span, request_span,
        "the responder's consumer span is a child of the client span"
    );

    let failed: serde_json::Value = get("/ask/0").await.unwrap().json().await.unwrap();
    assert!(
        failed["error"]
            .as_str()
            .unwrap()
            .contains("zero is not served"),
        "{failed}"
    );
    let slow: serde_json::Value = get("/ask/99").await.unwrap().json().await.unwrap();
    assert!(
        slow["error"].as_str().unwrap().contains("no response"),
        "{slow}"
    );
    let nobody: serde_json::Value = get("/nobody").await.unwrap().json().await.unwrap();
    assert!(
        nobody["error"].as_str().unwrap().contains("no responder"),
        "{nobody}"
    );

    let text = client()
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let s = Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).expect("exposition format");
    let svc = ("service", "request-test");
    for (request_type, outcome) in [
        ("test.ask.v1", "ok"),
        ("test.ask.v1", "failed"),
        ("test.ask.v1", "timeout"),
        ("test.unanswered.v1", "no_responder"),
    ] {
        let labels = [svc, ("request_type", request_type), ("outcome", outcome)];
        assert_eq!(
            counter(&s, "chassis_bus_requests_total", &labels),
            1.0,
            "{request_type} {outcome}: {text}"
        );
        assert_eq!(
            histogram_count(&s, "chassis_bus_request_duration_seconds", &labels),
            1.0,
            "{request_type} {outcome}: {text}"
        );
    }
    service.shutdown().await.unwrap();
}
