//! The access log (`http.access_log`): one JSON line per request with its
//! fields, probes left out unless asked for, nothing when off (the
//! default). Own test binary: it installs the global subscriber.

mod common;

use std::sync::OnceLock;
use std::time::Duration;

use axum::Router;
use axum::extract::Path;
use axum::routing::get;
use common::{Capture, TempDir, client, isolated};
use serde_json::Value;
use tracing_subscriber::layer::SubscriberExt as _;

/// Every line of this binary's tests, JSON at INFO with the host's context.
fn capture() -> &'static Capture {
    static CAPTURE: OnceLock<Capture> = OnceLock::new();
    CAPTURE.get_or_init(|| {
        let capture = Capture::default();
        let subscriber = tracing_subscriber::Registry::default().with(capture.json_layer("info"));
        tracing::subscriber::set_global_default(subscriber).expect("first subscriber");
        capture
    })
}

/// The access log lines of `service` (its requests' correlation ids are
/// `<service>-<i>`).
fn access_lines(service: &str) -> Vec<Value> {
    capture()
        .text()
        .lines()
        .map(|line| serde_json::from_str::<Value>(line).expect("every line is JSON"))
        .filter(|line| line["target"] == "chassis_web::access_log")
        .filter(|line| {
            line["correlation_id"]
                .as_str()
                .is_some_and(|id| id.starts_with(&format!("{service}-")))
        })
        .collect()
}

/// Starts `name` with the access log settings `settings`, sends the
/// requests of `paths` (correlation id `<name>-<i>`), returns its lines.
async fn serve(
    name: &str,
    settings: &[(&str, chassis_web::ConfigValue)],
    paths: &[&str],
) -> Vec<Value> {
    capture();
    let dir = TempDir::new();
    let mut builder = isolated(name, &dir).routes(|_| {
        Router::new()
            .route(
                "/orders/{id}",
                get(|| async { axum::Json(serde_json::json!({ "id": 7 })) }),
            )
            .route(
                "/slow/{ms}",
                get(|Path(ms): Path<u64>| async move {
                    // Wakes up on whichever worker thread is free.
                    for _ in 0..ms {
                        tokio::time::sleep(Duration::from_millis(1)).await;
                    }
                    "done"
                }),
            )
    });
    for (key, value) in settings {
        builder = builder.config(key, value.clone());
    }
    let service = builder.start().await.unwrap();
    for (i, path) in paths.iter().enumerate() {
        client()
            .get(format!("{}{path}", service.base_url()))
            .header("x-correlation-id", format!("{name}-{i}"))
            .send()
            .await
            .unwrap();
    }
    service.shutdown().await.unwrap();
    access_lines(name)
}

const PROBES: [&str; 3] = ["/health/live", "/health/ready", "/metrics"];

#[tokio::test]
async fn one_json_line_per_request_with_its_fields() {
    let mut paths = vec!["/orders/42", "/nowhere"];
    paths.extend(PROBES);
    let lines = serve(
        "access-on",
        &[("http.access_log.enabled", true.into())],
        &paths,
    )
    .await;
    assert_eq!(lines.len(), 2, "probes are left out: {lines:#?}");

    let order = &lines[0];
    assert_eq!(order["level"], "INFO");
    assert_eq!(order["message"], "request");
    assert_eq!(order["method"], "GET");
    assert_eq!(order["route"], "/orders/{id}", "the template, not the path");
    assert_eq!(order["status"], 200);
    assert_eq!(order["bytes"], r#"{"id":7}"#.len());
    assert!(order["duration_us"].is_u64(), "{order}");
    assert_eq!(order["client"], "127.0.0.1");
    assert_eq!(order["correlation_id"], "access-on-0");
    assert!(order["timestamp"].is_string());

    let unknown = &lines[1];
    assert_eq!(unknown["route"], "unmatched");
    assert_eq!(unknown["status"], 404);
    assert_eq!(unknown["correlation_id"], "access-on-1");
    assert!(
        unknown["bytes"].as_u64().is_some_and(|b| b > 0),
        "{unknown}"
    );
}

#[tokio::test]
async fn probes_are_logged_when_asked_and_routes_can_be_excluded() {
    let mut paths = vec!["/orders/1"];
    paths.extend(PROBES);
    let lines = serve(
        "access-probes",
        &[
            ("http.access_log.enabled", true.into()),
            ("http.access_log.probes", true.into()),
        ],
        &paths,
    )
    .await;
    let routes: Vec<&str> = lines.iter().map(|l| l["route"].as_str().unwrap()).collect();
    assert_eq!(
        routes,
        ["/orders/{id}", "/health/live", "/health/ready", "/metrics"]
    );

    let lines = serve(
        "access-exclude",
        &[
            ("http.access_log.enabled", true.into()),
            (
                "http.access_log.exclude",
                chassis_web::ConfigValue::from(vec!["/orders/{id}"]),
            ),
        ],
        &["/orders/1", "/nowhere"],
    )
    .await;
    let routes: Vec<&str> = lines.iter().map(|l| l["route"].as_str().unwrap()).collect();
    assert_eq!(routes, ["unmatched"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_that_waits_or_times_out_keeps_its_route() {
    let lines = serve(
        "access-slow",
        &[
            ("http.access_log.enabled", true.into()),
            // Far above the short handler's few milliseconds on a busy
            // machine, far below the long one's seconds.
            ("http.request_timeout", "1s".into()),
        ],
        &["/slow/5", "/slow/5000", "/orders/3"],
    )
    .await;
    let seen: Vec<(&str, u64)> = lines
        .iter()
        .map(|l| (l["route"].as_str().unwrap(), l["status"].as_u64().unwrap()))
        .collect();
    assert_eq!(
        seen,
        [
            ("/slow/{ms}", 200),
            ("/slow/{ms}", 503),
            ("/orders/{id}", 200)
        ]
    );
}

#[tokio::test]
async fn off_by_default() {
    let lines = serve("access-default", &[], &["/orders/1", "/nowhere"]).await;
    assert!(lines.is_empty(), "{lines:#?}");
}

#[test]
fn excluded_routes_must_be_templates() {
    let dir = TempDir::new();
    let error = isolated("access-bad", &dir)
        .config(
            "http.access_log.exclude",
            chassis_web::ConfigValue::from(vec!["orders"]),
        )
        .load_config()
        .unwrap_err();
    assert!(
        error.to_string().starts_with("http.access_log.exclude:"),
        "{error}"
    );
}
