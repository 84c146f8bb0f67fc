//! The standard middleware stack over real HTTP: problem+json for every
//! error, correlation ids, timeouts, health.

mod common;

use std::time::Duration;

use axum::Router;
use axum::routing::{get, post};
use chassis_web::{CorrelationId, Json, Problem, RunningService, current_message_context};
use common::{TempDir, client, isolated};
use reqwest::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::Value;

#[derive(Debug, Deserialize, Serialize)]
struct PlaceOrder {
    customer: String,
    items: Vec<Item>,
}

#[derive(Debug, Deserialize, Serialize)]
struct Item {
    sku: String,
    quantity: u32,
}

async fn place(Json(order): Json<PlaceOrder>) -> Json<Value> {
    Json(serde_json::json!({ "lines": order.items.len() }))
}

async fn context(id: CorrelationId) -> Json<Value> {
    // What a handler publishing a message would attach to the envelope.
    let ctx = current_message_context();
    Json(serde_json::json!({ "extractor": id.as_str(), "message_context": ctx.correlation_id }))
}

async fn boom() -> &'static str {
    panic!("secret internal detail")
}

async fn slow() -> &'static str {
    tokio::time::sleep(Duration::from_secs(5)).await;
    "late"
}

async fn missing() -> Result<String, Problem> {
    Err(Problem::not_found("order o-9 does not exist"))
}

async fn start(dir: &TempDir) -> RunningService {
    isolated("edge-test", dir)
        .config("http.body_limit", 256)
        .config("http.request_timeout", "300ms")
        .routes(|_| {
            Router::new()
                .route("/orders", post(place))
                .route("/context", get(context))
                .route("/boom", get(boom))
                .route("/slow", get(slow))
                .route("/missing", get(missing))
        })
        .start()
        .await
        .expect("service starts")
}

async fn problem(response: reqwest::Response) -> (StatusCode, Value) {
    let status = response.status();
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_owned();
    assert_eq!(content_type, "application/problem+json", "status {status}");
    assert!(response.headers().contains_key("x-correlation-id"));
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["status"], status.as_u16(), "{body}");
    assert!(body["title"].is_string(), "{body}");
    assert!(body["correlation_id"].is_string(), "{body}");
    (status, body)
}

#[tokio::test]
async fn every_error_is_problem_json() {
    let dir = TempDir::new();
    let service = start(&dir).await;
    let base = service.base_url();
    let http = client();
    let post_json = |body: &'static str| {
        http.post(format!("{base}/orders"))
            .header("content-type", "application/json")
            .body(body)
    };

    // valid request first: the stack lets it through
    let ok = post_json(r#"{"customer":"c","items":[{"sku":"a","quantity":2}]}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), StatusCode::OK);
    assert_eq!(ok.json::<Value>().await.unwrap()["lines"], 1);

    // malformed JSON → 400
    let (status, body) = problem(
        post_json(r#"{"customer": "c", "items": ["#)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .starts_with("malformed JSON"),
        "{body}"
    );

    // wrong type → 422 naming the field path
    let (status, body) = problem(
        post_json(r#"{"customer":"c","items":[{"sku":"a","quantity":"two"}]}"#)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body["errors"][0]["field"], "items[0].quantity", "{body}");

    // missing field → 422 naming the field path
    let (status, body) = problem(
        post_json(r#"{"customer":"c","items":[{"quantity":1}]}"#)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body["errors"][0]["field"], "items[0].sku", "{body}");

    // oversized body → 413 (limit 256 bytes)
    let big = format!(r#"{{"customer":"{}","items":[]}}"#, "x".repeat(1000));
    let (status, body) = problem(
        http.post(format!("{base}/orders"))
            .header("content-type", "application/json")
            .body(big)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(
        body["detail"].as_str().unwrap().contains("http.body_limit"),
        "{body}"
    );

    // unsupported media type → 415
    let (status, _) = problem(
        http.post(format!("{base}/orders"))
            .header("content-type", "text/plain")
            .body("customer=c")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE);

    // unknown route → 404
    let (status, body) = problem(http.get(format!("{base}/nowhere")).send().await.unwrap()).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(
        body["detail"].as_str().unwrap().contains("/nowhere"),
        "{body}"
    );

    // wrong method → 405, the Allow header kept
    let response = http.delete(format!("{base}/orders")).send().await.unwrap();
    assert!(
        response.headers()["allow"]
            .to_str()
            .unwrap()
            .contains("POST")
    );
    let (status, body) = problem(response).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(body["instance"], "/orders");

    // handler panic → 500, nothing of the panic leaks
    let (status, body) = problem(http.get(format!("{base}/boom")).send().await.unwrap()).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(
        !body.to_string().contains("secret internal detail"),
        "{body}"
    );

    // handler timeout → 503
    let (status, body) = problem(http.get(format!("{base}/slow")).send().await.unwrap()).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .contains("http.request_timeout"),
        "{body}"
    );

    // a handler's own problem passes unchanged
    let (status, body) = problem(http.get(format!("{base}/missing")).send().await.unwrap()).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["detail"], "order o-9 does not exist");

    // the service still serves after the panic and the timeout
    let live = http
        .get(format!("{base}/health/live"))
        .send()
        .await
        .unwrap();
    assert_eq!(live.status(), StatusCode::OK);

    service.shutdown().await.unwrap();
}

#[tokio::test]
async fn chunked_body_over_the_limit_is_413() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let dir = TempDir::new();
    let service = start(&dir).await;
    // No Content-Length: the limit is enforced while reading (256 bytes here).
    let mut stream = tokio::net::TcpStream::connect(service.local_addr())
        .await
        .unwrap();
    let chunk = "x".repeat(200);
    let request = format!(
        "POST /orders HTTP/1.1\r\nhost: test\r\ncontent-type: application/json\r\n\
         transfer-encoding: chunked\r\nconnection: close\r\n\r\n\
         {len:x}\r\n{chunk}\r\n{len:x}\r\n{chunk}\r\n0\r\n\r\n",
        len = chunk.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    assert!(response.starts_with("HTTP/1.1 413"), "{response}");
    assert!(response.contains("application/problem+json"), "{response}");
    service.shutdown().await.unwrap();
}

/// GET `url`, with `x-correlation-id: id` when given.
async fn fetch(http: &reqwest::Client, url: String, id: Option<&str>) -> reqwest::Response {
    let request = http.get(url);
    let request = match id {
        Some(id) => request.header("x-correlation-id", id),
        None => request,
    };
    request.send().await.unwrap()
}

fn echoed(response: &reqwest::Response) -> String {
    response.headers()["x-correlation-id"]
        .to_str()
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn correlation_id_round_trip() {
    let dir = TempDir::new();
    let service = start(&dir).await;
    let base = service.base_url();
    let http = client();

    // Given by the client: echoed, seen by the handler and the message context.
    let response = fetch(&http, format!("{base}/context"), Some("order-flow-42")).await;
    assert_eq!(echoed(&response), "order-flow-42");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["extractor"], "order-flow-42");
    assert_eq!(body["message_context"], "order-flow-42");

    // Not given: generated (a UUID), the same in header and handler.
    let response = fetch(&http, format!("{base}/context"), None).await;
    let header = echoed(&response);
    assert!(uuid::Uuid::parse_str(&header).is_ok(), "{header}");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["extractor"], header.as_str());

    // Unusable (too long): replaced by a generated one.
    let response = fetch(&http, format!("{base}/context"), Some(&"x".repeat(200))).await;
    let header = echoed(&response);
    assert!(uuid::Uuid::parse_str(&header).is_ok(), "{header}");

    // Problems carry it too.
    let response = fetch(&http, format!("{base}/nowhere"), Some("c-404")).await;
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["correlation_id"], "c-404");

    service.shutdown().await.unwrap();
}

#[tokio::test]
async fn health_probes_report_checks() {
    let dir = TempDir::new();
    let service = start(&dir).await;
    let base = service.base_url();
    let http = client();
    let live = fetch(&http, format!("{base}/health/live"), None).await;
    assert_eq!(live.status(), StatusCode::OK);
    let ready = fetch(&http, format!("{base}/health/ready"), None).await;
    assert_eq!(ready.status(), StatusCode::OK);
    let body: Value = ready.json().await.unwrap();
    assert_eq!(body["status"], "ready");
    assert!(body["checks"].is_array(), "{body}");
    service.shutdown().await.unwrap();
}
