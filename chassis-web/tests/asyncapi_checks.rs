//! The host holds a service to the messages it declares for its AsyncAPI
//! document: a handler for an undeclared type stops start-up naming it and
//! the call to add; an undeclared type published is logged at WARN once.
//! Own test binary: one test installs the global subscriber.

mod common;

use std::time::Duration;

use common::{Capture, TempDir, isolated};
use messaging_abstractions::asyncapi::MessageSchema;
use messaging_abstractions::{
    Envelope, HandlerError, Handlers, IntegrationEvent, Request, RequestClient, Responders,
    Subscription,
};
use serde::{Deserialize, Serialize};
use serde_json::json;

#[derive(Debug, Serialize, Deserialize)]
struct Shipped {
    id: u32,
}

impl IntegrationEvent for Shipped {
    const EVENT_TYPE: &'static str = "checks.shipped.v1";
}

/// Published by the services below without being declared.
#[derive(Debug, Serialize, Deserialize)]
struct Stray {
    id: u32,
}

impl IntegrationEvent for Stray {
    const EVENT_TYPE: &'static str = "checks.stray.v1";
}

#[derive(Debug, Serialize, Deserialize)]
struct Ask {
    n: u32,
}

impl IntegrationEvent for Ask {
    const EVENT_TYPE: &'static str = "checks.ask.v1";
}

#[derive(Debug, Serialize, Deserialize)]
struct Answer {
    n: u32,
}

impl IntegrationEvent for Answer {
    const EVENT_TYPE: &'static str = "checks.answer.v1";
}

impl Request for Ask {
    type Response = Answer;
}

fn message(event_type: &str) -> MessageSchema {
    MessageSchema::new(event_type, json!({"type": "object"}))
}

fn shipped_handlers() -> Handlers {
    Handlers::new().on_fn(|_: Shipped, _| async { Ok::<(), HandlerError>(()) })
}

#[tokio::test]
async fn a_handler_for_an_undeclared_type_stops_start_up_naming_it() {
    let dir = TempDir::new();
    let error = isolated("checks-undeclared", &dir)
        // Checked without metrics and tracing too (the decorator is there
        // for the declarations alone).
        .config("metrics.enabled", false)
        .messages(|catalog| catalog.publishes(message(Stray::EVENT_TYPE)))
        .on_start(|ctx| async move {
            ctx.bus()
                .subscribe(Subscription::new("checks-undeclared", shipped_handlers()))
                .await?;
            Ok(())
        })
        .start()
        .await
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("group `checks-undeclared` has a handler for `checks.shipped.v1`")
            && error.contains("add `.subscribes::<E>()`"),
        "{error}"
    );
}

#[tokio::test]
async fn a_responder_needs_answers_declared() {
    let dir = TempDir::new();
    let error = isolated("checks-responder", &dir)
        .messages(|catalog| catalog.subscribes(message(Shipped::EVENT_TYPE)))
        .on_start(|ctx| async move {
            Responders::new()
                .on_fn(|ask: Ask, _| async move { Ok(Answer { n: ask.n }) })
                .subscribe(ctx.bus(), "checks-responder-requests")
                .await?;
            Ok(())
        })
        .start()
        .await
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("has a handler for `checks.ask.v1`") && error.contains(".answers::<R>()"),
        "{error}"
    );
}

#[tokio::test]
async fn a_service_declaring_nothing_is_not_checked() {
    let dir = TempDir::new();
    let service = isolated("checks-bare", &dir)
        .on_start(|ctx| async move {
            ctx.bus()
                .subscribe(Subscription::new("checks-bare", shipped_handlers()))
                .await?;
            Ok(())
        })
        .start()
        .await
        .unwrap();
    service.shutdown().await.unwrap();
}

/// A service declaring what it subscribes, answers, asks and publishes
/// starts, exchanges all of it without a warning, and an undeclared event
/// it publishes twice is logged once.
#[tokio::test]
async fn declared_messages_pass_and_an_undeclared_publish_is_logged_once() {
    let capture = Capture::default();
    let dir = TempDir::new();
    let service = isolated("checks-declared", &dir)
        .install_logging(true)
        .config("logging.provider", "console")
        .log_layer(capture.json_layer("warn"))
        .messages(|catalog| {
            catalog
                .subscribes(message(Shipped::EVENT_TYPE))
                .publishes(message(Shipped::EVENT_TYPE))
                .answers(message(Ask::EVENT_TYPE), message(Answer::EVENT_TYPE))
                .requests(message(Ask::EVENT_TYPE), message(Answer::EVENT_TYPE))
        })
        .on_start(|ctx| async move {
            ctx.bus()
                .subscribe(Subscription::new("checks-declared", shipped_handlers()))
                .await?;
            Responders::new()
                .on_fn(|ask: Ask, _| async move { Ok(Answer { n: ask.n + 1 }) })
                .subscribe(ctx.bus(), "checks-declared-requests")
                .await?;
            Ok(())
        })
        .start()
        .await
        .unwrap();
    let bus = service.context().bus().clone();
    bus.publish(Envelope::for_event(&Shipped { id: 1 }).unwrap())
        .await
        .unwrap();
    let answer = RequestClient::<Ask>::new(bus.clone(), Duration::from_secs(5))
        .send(&Ask { n: 1 })
        .await
        .unwrap();
    assert_eq!(answer.n, 2);
    for id in 0..2 {
        // Published all the same.
        bus.publish(Envelope::for_event(&Stray { id }).unwrap())
            .await
            .unwrap();
    }
    service.shutdown().await.unwrap();

    let text = capture.text();
    let warnings: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|l| {
            l["level"] == "WARN"
                && l["message"]
                    .as_str()
                    .is_some_and(|m| m.contains("without declaring"))
        })
        .collect();
    assert_eq!(warnings.len(), 1, "{text}");
    let message = warnings[0]["message"].as_str().unwrap();
    assert!(
        message.contains("`checks.stray.v1`") && message.contains("add `.publishes::<E>()`"),
        "{message}"
    );
}
