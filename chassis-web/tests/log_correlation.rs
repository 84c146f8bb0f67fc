//! Every log line written while handling a request carries its correlation
//! id. Own test binary: it installs the global subscriber.

mod common;

use axum::Router;
use axum::routing::get;
use common::{Capture, TempDir, client, isolated};

#[tokio::test]
async fn log_lines_of_a_request_carry_its_correlation_id() {
    let capture = Capture::default();
    let layer = capture.json_layer("info");
    // The host's own path: the provider layer plus extra layers on one registry.
    let dir = TempDir::new();
    let service = isolated("log-test", &dir)
        .install_logging(true)
        .config("logging.provider", "console")
        .log_layer(layer)
        .routes(|_| {
            Router::new().route(
                "/work",
                get(|| async {
                    tracing::info!("validating order");
                    tokio::task::yield_now().await;
                    tracing::warn!(sku = "a-1", "stock low");
                    "done"
                }),
            )
        })
        .start()
        .await
        .unwrap();
    let response = client()
        .get(format!("{}/work", service.base_url()))
        .header("x-correlation-id", "corr-77")
        .send()
        .await
        .unwrap();
    assert_eq!(response.text().await.unwrap(), "done");
    service.shutdown().await.unwrap();

    let text = capture.text();
    let request_lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|l| l["message"] == "validating order" || l["message"] == "stock low")
        .collect();
    assert_eq!(request_lines.len(), 2, "{text}");
    for line in request_lines {
        assert_eq!(
            line["correlation_id"], "corr-77",
            "line without correlation id: {line}"
        );
    }
    let outside: Vec<&str> = text
        .lines()
        .filter(|l| !l.contains("validating order") && !l.contains("stock low"))
        .filter(|l| l.contains("corr-77"))
        .collect();
    assert!(outside.is_empty(), "lines outside the request: {outside:?}");
}
