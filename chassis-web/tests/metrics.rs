//! `/metrics` serves the Prometheus exposition format (checked with a real
//! parser) with the HTTP, bus, outbox and service series. Own test binary:
//! the host installs the process' metrics recorder.

mod common;

use std::time::Duration;

use axum::Router;
use axum::extract::Path;
use axum::routing::get;
use chassis_web::{Json, ServiceContext, current_correlation_id};
use common::{TempDir, client, isolated};
use messaging_abstractions::{EventBusExt, HandlerError, Handlers, IntegrationEvent, Subscription};
use prometheus_parse::{Sample, Scrape, Value};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

#[derive(Debug, Serialize, Deserialize)]
struct Ping {
    n: u32,
}

impl IntegrationEvent for Ping {
    const EVENT_TYPE: &'static str = "test.ping.v1";
}

#[derive(Debug, Serialize, Deserialize)]
struct Poison;

impl IntegrationEvent for Poison {
    const EVENT_TYPE: &'static str = "test.poison.v1";
}

/// GETs `url`: the status and the body.
async fn fetch(url: String) -> (u16, String) {
    let response = client().get(url).send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.text().await.unwrap())
}

fn scrape(text: &str) -> Scrape {
    Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).expect("valid exposition format")
}

fn find<'a>(scrape: &'a Scrape, name: &str, labels: &[(&str, &str)]) -> Vec<&'a Sample> {
    scrape
        .samples
        .iter()
        .filter(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .collect()
}

fn counter(scrape: &Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    find(scrape, name, labels)
        .iter()
        .map(|s| match s.value {
            Value::Counter(v) | Value::Untyped(v) => v,
            ref other => panic!("{name} is not a counter: {other:?}"),
        })
        .sum()
}

fn histogram_count(scrape: &Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    find(scrape, name, labels)
        .iter()
        .map(|s| match &s.value {
            Value::Histogram(buckets) => buckets.last().map_or(0.0, |b| b.count),
            other => panic!("{name} is not a histogram: {other:?}"),
        })
        .sum()
}

async fn subscribe(ctx: ServiceContext, seen: mpsc::UnboundedSender<(u32, u32, Option<String>)>) {
    let handlers = Handlers::new()
        .on_fn(move |ping: Ping, delivery| {
            let seen = seen.clone();
            async move {
                let _ = seen.send((ping.n, delivery.attempt, current_correlation_id()));
                if delivery.attempt == 1 {
                    return Err(HandlerError::retryable("first attempt fails"));
                }
                Ok(())
            }
        })
        .on_fn(|_: Poison, _| async { Err(HandlerError::permanent("never works")) });
    ctx.bus()
        .subscribe(Subscription::new("metrics-test", handlers))
        .await
        .unwrap();
}

#[tokio::test]
async fn metrics_endpoint_has_http_bus_outbox_and_service_series() {
    let dir = TempDir::new();
    let (tx, mut rx) = mpsc::unbounded_channel();
    let service = isolated("metrics-test", &dir)
        .version("1.2.3")
        .config("messaging.retry.initial_backoff", "10ms")
        .config("metrics.refresh_interval", "50ms")
        .on_start(move |ctx| async move {
            subscribe(ctx, tx).await;
            Ok(())
        })
        .routes(|ctx| {
            let bus = ctx.bus().clone();
            Router::new().route(
                "/items/{id}",
                get(move |Path(id): Path<u32>| {
                    let bus = bus.clone();
                    async move {
                        let ctx = chassis_web::current_message_context();
                        bus.publish_event_in(&Ping { n: id }, &ctx).await.unwrap();
                        bus.publish_event_in(&Poison, &ctx).await.unwrap();
                        Json(serde_json::json!({ "id": id }))
                    }
                }),
            )
        })
        .start()
        .await
        .unwrap();
    let base = service.base_url();
    for id in [1, 2] {
        let response = client()
            .get(format!("{base}/items/{id}"))
            .header("x-correlation-id", format!("corr-{id}"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
    }
    assert_eq!(fetch(format!("{base}/nothing-here")).await.0, 404);

    // Each ping: attempt 1 fails, attempt 2 succeeds, in the request's correlation.
    let mut deliveries = Vec::new();
    while deliveries.len() < 4 {
        let next = tokio::time::timeout(Duration::from_secs(10), rx.recv()).await;
        deliveries.push(next.expect("handler deliveries").expect("channel open"));
    }
    for (n, attempt, correlation) in &deliveries {
        assert!(*attempt <= 2, "{deliveries:?}");
        assert_eq!(correlation.as_deref(), Some(format!("corr-{n}").as_str()));
    }

    let text = async {
        loop {
            let (_, text) = fetch(format!("{base}/metrics")).await;
            let s = scrape(&text);
            // Counted after the handler returns: wait for the last ones.
            let svc = [("service", "metrics-test")];
            if counter(&s, "messaging_consumed_total", &svc) >= 6.0
                && !find(&s, "outbox_pending_messages", &svc).is_empty()
            {
                return text;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    let text = tokio::time::timeout(Duration::from_secs(10), text)
        .await
        .expect("bus metrics within 10 s");
    let s = scrape(&text);
    let svc = ("service", "metrics-test");

    let route = [
        svc,
        ("route", "/items/:id"),
        ("method", "GET"),
        ("status", "200"),
    ];
    assert_eq!(
        counter(&s, "http_server_requests_total", &route),
        2.0,
        "{text}"
    );
    assert_eq!(
        histogram_count(&s, "http_server_request_duration_seconds", &route),
        2.0,
        "{text}"
    );
    assert!(
        find(
            &s,
            "http_server_requests_total",
            &[("route", "/nothing-here")]
        )
        .is_empty(),
        "raw paths never become labels: {text}"
    );

    let ping = [svc, ("event_type", "test.ping.v1")];
    let poison = [svc, ("event_type", "test.poison.v1")];
    assert_eq!(
        counter(&s, "messaging_published_total", &ping),
        2.0,
        "{text}"
    );
    assert_eq!(
        counter(&s, "messaging_published_total", &poison),
        2.0,
        "{text}"
    );
    let ping_group = [
        svc,
        ("event_type", "test.ping.v1"),
        ("group", "metrics-test"),
    ];
    assert_eq!(
        counter(&s, "messaging_consumed_total", &ping_group),
        4.0,
        "{text}"
    );
    assert_eq!(
        counter(&s, "messaging_retried_total", &ping_group),
        2.0,
        "{text}"
    );
    assert_eq!(
        counter(
            &s,
            "messaging_handler_failed_total",
            &[svc, ("event_type", "test.ping.v1"), ("kind", "retryable")]
        ),
        2.0,
        "{text}"
    );
    assert_eq!(
        counter(
            &s,
            "messaging_dead_lettered_total",
            &[svc, ("event_type", "test.poison.v1"), ("kind", "permanent")]
        ),
        2.0,
        "{text}"
    );
    assert_eq!(
        histogram_count(
            &s,
            "messaging_handler_duration_seconds",
            &[svc, ("event_type", "test.ping.v1"), ("outcome", "ok")]
        ),
        2.0,
        "{text}"
    );
    for gauge in [
        "outbox_pending_messages",
        "outbox_quarantined_messages",
        "outbox_relay_lag_seconds",
    ] {
        let samples = find(&s, gauge, &[svc]);
        assert!(
            matches!(samples.as_slice(), [one] if matches!(one.value, Value::Gauge(v) if v == 0.0)),
            "{gauge}: {text}"
        );
    }
    let info = find(&s, "service_info", &[svc, ("version", "1.2.3")]);
    assert!(
        matches!(info.as_slice(), [one] if matches!(one.value, Value::Gauge(v) if v == 1.0)),
        "{text}"
    );
    service.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_second_host_shares_the_recorder_and_a_metrics_port_serves_it_too() {
    let dir = TempDir::new();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let first = isolated("metrics-first", &dir).start().await.unwrap();
    let second = isolated("metrics-second", &dir)
        .config("metrics.path", "/internal/metrics")
        .config("metrics.port", i64::from(port))
        .start()
        .await
        .unwrap();
    let (_, text) = fetch(format!("http://127.0.0.1:{port}/internal/metrics")).await;
    let s = scrape(&text);
    for service in ["metrics-first", "metrics-second"] {
        assert_eq!(
            find(&s, "service_info", &[("service", service)]).len(),
            1,
            "{text}"
        );
    }
    let (status, _) = fetch(format!("{}/internal/metrics", second.base_url())).await;
    assert_eq!(status, 200);
    second.shutdown().await.unwrap();
    first.shutdown().await.unwrap();

    let disabled = isolated("metrics-off", &dir)
        .config("metrics.enabled", false)
        .start()
        .await
        .unwrap();
    let (status, _) = fetch(format!("{}/metrics", disabled.base_url())).await;
    assert_eq!(status, 404);
    disabled.shutdown().await.unwrap();

    let error = isolated("metrics-bad", &dir)
        .config("metrics.path", "metrics")
        .start()
        .await
        .unwrap_err();
    assert!(error.to_string().contains("metrics.path"), "{error}");
}
