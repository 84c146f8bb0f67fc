//! The client against a real HTTP server on a loopback port.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use chassis_client::{CallContext, ClientConfig, ClientError, HttpClient};
use serde_json::{Value, json};

async fn serve() -> String {
    async fn echo(headers: HeaderMap, Json(body): Json<Value>) -> impl IntoResponse {
        let h = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        (
            StatusCode::CREATED,
            [(header::LOCATION, "/things/1")],
            Json(json!({
                "body": body,
                "correlation_id": h("x-correlation-id"),
                "traceparent": h("traceparent"),
                "tracestate": h("tracestate"),
                "content_type": h("content-type"),
            })),
        )
    }
    async fn conflict() -> impl IntoResponse {
        (
            StatusCode::CONFLICT,
            [(header::CONTENT_TYPE, "application/problem+json")],
            r#"{"type":"about:blank","title":"Conflict","status":409,"detail":"package already sent"}"#,
        )
    }
    async fn plain_error() -> impl IntoResponse {
        (StatusCode::SERVICE_UNAVAILABLE, "upstream down")
    }
    async fn slow() -> Json<Value> {
        tokio::time::sleep(Duration::from_secs(5)).await;
        Json(json!({}))
    }
    async fn not_json() -> &'static str {
        "hello"
    }
    let app = Router::new()
        .route("/prefix/echo", post(echo))
        .route("/prefix/conflict", get(conflict))
        .route("/prefix/plain", get(plain_error))
        .route("/prefix/slow", get(slow))
        .route("/prefix/text", get(not_json));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}/prefix")
}

#[tokio::test]
async fn context_headers_body_and_location_travel() {
    let base = serve().await;
    let client = HttpClient::new(&ClientConfig::new(&base))
        .unwrap()
        .with_context(CallContext {
            correlation_id: Some("corr-7".into()),
            traceparent: Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".into()),
            tracestate: Some("vendor=1".into()),
            ..CallContext::default()
        });
    let reply = client
        .post::<_, Value>("/echo", &json!({"n": 1}))
        .await
        .unwrap();
    assert_eq!(reply.status, StatusCode::CREATED);
    assert_eq!(reply.location.as_deref(), Some("/things/1"));
    assert_eq!(reply.body["body"], json!({"n": 1}));
    assert_eq!(reply.body["correlation_id"], "corr-7");
    assert_eq!(
        reply.body["traceparent"],
        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    );
    assert_eq!(reply.body["tracestate"], "vendor=1");
    assert_eq!(reply.body["content_type"], "application/json");
}

#[tokio::test]
async fn error_answers_are_typed() {
    let base = serve().await;
    let client = HttpClient::new(&ClientConfig::new(&base)).unwrap();

    let err = client.get::<Value>("/conflict", &[]).await.unwrap_err();
    assert!(err.is_conflict(), "{err}");
    assert_eq!(
        err.problem().unwrap().detail.as_deref(),
        Some("package already sent")
    );

    let err = client.get::<Value>("/plain", &[]).await.unwrap_err();
    assert!(
        matches!(&err, ClientError::Status { status, body, .. }
            if *status == StatusCode::SERVICE_UNAVAILABLE && body == "upstream down"),
        "{err:?}"
    );

    let err = client.get::<Value>("/missing", &[]).await.unwrap_err();
    assert!(err.is_not_found(), "{err}");

    let err = client.get::<Value>("/text", &[]).await.unwrap_err();
    assert!(matches!(err, ClientError::Decode { .. }), "{err:?}");
}

#[tokio::test]
async fn a_slow_service_times_out_and_a_closed_port_is_a_transport_error() {
    let base = serve().await;
    let mut config = ClientConfig::new(&base);
    config.timeout = Duration::from_millis(200);
    let client = HttpClient::new(&config).unwrap();
    let err = client.get::<Value>("/slow", &[]).await.unwrap_err();
    assert!(
        matches!(err, ClientError::Timeout { timeout, .. } if timeout == Duration::from_millis(200)),
        "{err:?}"
    );

    // Bind then drop a listener: nothing answers on that port any more.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let client = HttpClient::new(&ClientConfig::new(format!("http://127.0.0.1:{port}"))).unwrap();
    let err = client.get::<Value>("/x", &[]).await.unwrap_err();
    assert!(matches!(err, ClientError::Transport { .. }), "{err:?}");
    assert_eq!(err.status(), None);
}

/// A service that refuses the first `refusals` calls with 429 (`Retry-After`
/// as given), then answers; the number of calls it saw.
async fn rate_limited(refusals: usize, retry_after: &'static str) -> (String, Arc<AtomicUsize>) {
    let calls = Arc::new(AtomicUsize::new(0));
    let seen = calls.clone();
    let app = Router::new().route(
        "/limited",
        post(move |Json(body): Json<Value>| {
            let seen = seen.clone();
            async move {
                if seen.fetch_add(1, Ordering::SeqCst) < refusals {
                    return (
                        StatusCode::TOO_MANY_REQUESTS,
                        [
                            (header::RETRY_AFTER, retry_after),
                            (header::CONTENT_TYPE, "application/problem+json"),
                        ],
                        r#"{"type":"about:blank","title":"Too Many Requests","status":429}"#,
                    )
                        .into_response();
                }
                Json(body).into_response()
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}"), calls)
}

#[tokio::test]
async fn a_rate_limited_request_is_sent_again_after_retry_after() {
    let (base, calls) = rate_limited(2, "0").await;
    let client = HttpClient::new(&ClientConfig::new(&base)).unwrap();
    let reply = client
        .post::<_, Value>("/limited", &json!({"n": 3}))
        .await
        .unwrap();
    assert_eq!(reply.body, json!({"n": 3}), "the body is sent again whole");
    assert_eq!(calls.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn rate_limit_retries_are_bounded_and_configurable() {
    // More refusals than retries: the 429 reaches the caller as a problem.
    let (base, calls) = rate_limited(10, "0").await;
    let config = ClientConfig {
        rate_limit_retries: 2,
        ..ClientConfig::new(&base)
    };
    let err = HttpClient::new(&config)
        .unwrap()
        .post::<_, Value>("/limited", &json!({}))
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(StatusCode::TOO_MANY_REQUESTS), "{err}");
    assert_eq!(calls.load(Ordering::SeqCst), 3, "one call and two retries");

    // A wait longer than the client's own timeout is not waited for.
    let (base, calls) = rate_limited(1, "3600").await;
    let err = HttpClient::new(&ClientConfig::new(&base))
        .unwrap()
        .post::<_, Value>("/limited", &json!({}))
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(StatusCode::TOO_MANY_REQUESTS), "{err}");
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}
