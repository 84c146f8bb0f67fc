//! Graceful shutdown: readiness turns 503 first, in-flight requests finish,
//! then background tasks stop.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use common::{TempDir, client, isolated};
use reqwest::StatusCode;
use serde_json::Value;

#[tokio::test]
async fn readiness_turns_503_while_in_flight_request_completes() {
    let dir = TempDir::new();
    let task_stopped = Arc::new(AtomicBool::new(false));
    let stopped = task_stopped.clone();
    let service = isolated("shutdown-test", &dir)
        .config("http.shutdown_delay", "700ms")
        .config("http.shutdown_timeout", "5s")
        .routes(|_| {
            Router::new().route(
                "/slow",
                get(|| async {
                    tokio::time::sleep(Duration::from_millis(1200)).await;
                    "finished"
                }),
            )
        })
        .on_start(move |ctx| async move {
            let signal = ctx.shutdown_signal();
            ctx.spawn("ticker", async move {
                signal.stopping().await;
                stopped.store(true, Ordering::SeqCst);
                Ok(())
            });
            Ok(())
        })
        .start()
        .await
        .unwrap();
    let base = service.base_url();
    let http = client();
    let ready = http
        .get(format!("{base}/health/ready"))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), StatusCode::OK);

    let in_flight = tokio::spawn({
        let http = http.clone();
        let url = format!("{base}/slow");
        async move { http.get(url).send().await }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;

    let handle = service.shutdown_handle();
    let stopping = tokio::spawn(service.wait());
    handle.trigger();
    tokio::time::sleep(Duration::from_millis(100)).await;

    // A fresh connection during the shutdown delay: readiness says 503.
    let ready = client()
        .get(format!("{base}/health/ready"))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body: Value = ready.json().await.unwrap();
    assert_eq!(body["status"], "shutting_down");
    assert!(
        !task_stopped.load(Ordering::SeqCst),
        "tasks stop after HTTP"
    );

    // The in-flight request still completes.
    let response = in_flight
        .await
        .unwrap()
        .expect("in-flight request answered");
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.text().await.unwrap(), "finished");

    stopping.await.unwrap().expect("clean shutdown");
    assert!(
        task_stopped.load(Ordering::SeqCst),
        "background task was told to stop"
    );

    // The listener is closed.
    assert!(
        client()
            .get(format!("{base}/health/live"))
            .send()
            .await
            .is_err()
    );
}

#[tokio::test]
async fn shutdown_does_not_wait_beyond_the_deadline() {
    let dir = TempDir::new();
    let service = isolated("deadline-test", &dir)
        .config("http.shutdown_timeout", "200ms")
        .config("http.request_timeout", "30s")
        .routes(|_| {
            Router::new().route(
                "/stuck",
                get(|| async {
                    tokio::time::sleep(Duration::from_secs(20)).await;
                    "never"
                }),
            )
        })
        .start()
        .await
        .unwrap();
    let url = format!("{}/stuck", service.base_url());
    let in_flight = tokio::spawn(async move { client().get(url).send().await });
    tokio::time::sleep(Duration::from_millis(150)).await;
    let started = std::time::Instant::now();
    let err = service.shutdown().await.unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    assert!(err.to_string().contains("http.shutdown_timeout"), "{err}");
    // The abandoned connection dies with the runtime (the process exits).
    in_flight.abort();
}

#[tokio::test]
async fn failing_background_task_is_reported_at_shutdown() {
    let dir = TempDir::new();
    let service = isolated("task-test", &dir)
        .on_start(|ctx| async move {
            ctx.spawn("relay", async { Err("broker gone".into()) });
            Ok(())
        })
        .start()
        .await
        .unwrap();
    let err = service.shutdown().await.unwrap_err();
    assert!(
        err.to_string()
            .contains("background task `relay` failed: broker gone"),
        "{err}"
    );
}
