//! The event bus decorator: metrics, producer and consumer spans, and the
//! handler's message context.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chassis_core::HealthCheck;
use messaging_abstractions::request::REPLY_ERROR_HEADER;
use messaging_abstractions::{
    DeadLetterStore, Delivery, Envelope, EventBus, EventBusExt, EventBusHooks, HandlerError,
    MessageHandler, PublishError, RequestError, ShutdownError, SubscribeError, Subscription,
};
use traces_init::propagation;
use tracing::Instrument;
use tracing::field::Empty;

use super::dispatch::{in_dispatch, scoped};
use super::metrics::names;
use crate::asyncapi::Declared;
use crate::correlation::with_message_context;

/// Wraps an [`EventBus`]: every publish is counted and (with a tracing
/// provider) runs in a producer span continuing the envelope's trace, whose
/// context the published envelope then carries; every handled delivery
/// runs in a consumer span whose parent is the envelope's `traceparent`,
/// inside [`with_message_context`] with the envelope's correlation id, the
/// message as causation and the consumer span's trace — so what a handler
/// publishes continues the trace — and is counted and timed.
///
/// Every request (`EventBus::request`) runs in a client span continuing the
/// envelope's trace, whose context the request then carries (so the
/// responder's consumer span is its child), and is counted by outcome and
/// timed; the responder's side is an ordinary subscription (consumer span).
///
/// Retried / dead-lettered counts follow the bus' documented policy: a
/// retryable failure is retried while `attempt < max_attempts`, every other
/// failure is dead-lettered.
///
/// The host also checks here what the service really does against what it
/// declared for its AsyncAPI document (when it declared anything): every
/// subscription and publish of a hosted service, its outbox relay's and its
/// requests and replies included, passes this decorator. A subscription
/// with a handler for an undeclared type fails; an undeclared type
/// published, requested or replied is logged at WARN, once per type (a
/// publish never fails for it: the outbox must not get stuck).
pub struct InstrumentedBus {
    inner: Arc<dyn EventBus>,
    service: Arc<str>,
    max_attempts: u32,
    trace: bool,
    dispatch: Option<tracing::Dispatch>,
    declared: Option<Arc<Declared>>,
}

impl std::fmt::Debug for InstrumentedBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InstrumentedBus")
            .field("provider", &self.inner.provider())
            .field("service", &self.service)
            .field("trace", &self.trace)
            .finish_non_exhaustive()
    }
}

impl InstrumentedBus {
    /// Decorates `inner` for `service`. `max_attempts` is
    /// `messaging.retry.max_attempts`; `trace` whether a tracing provider is
    /// enabled (without one no spans are created: nothing to export).
    pub fn new(inner: Arc<dyn EventBus>, service: &str, max_attempts: u32, trace: bool) -> Self {
        Self {
            inner,
            service: Arc::from(service),
            max_attempts,
            trace,
            dispatch: None,
            declared: None,
        }
    }

    /// Checks subscriptions and publishes against `declared`.
    pub(crate) fn checking(mut self, declared: Option<Arc<Declared>>) -> Self {
        self.declared = declared;
        self
    }

    /// Warns, once per type, when `event_type` goes out undeclared (`call`:
    /// the builder call that declares it).
    fn check_sent(&self, event_type: &str, call: &'static str) {
        let Some(declared) = &self.declared else {
            return;
        };
        if declared.first_undeclared_send(event_type) {
            scoped(self.dispatch.as_ref(), || {
                tracing::warn!(
                    event_type,
                    "the service sends `{event_type}` without declaring it: its AsyncAPI \
                     document does not list it; add {call} to the host builder"
                );
            });
        }
    }

    /// Creates the spans in `dispatch` (a host's own subscriber, see the
    /// host) instead of the current one.
    pub fn in_dispatch(mut self, dispatch: Option<tracing::Dispatch>) -> Self {
        self.dispatch = dispatch;
        self
    }

    fn producer_span(&self, envelope: &Envelope) -> tracing::Span {
        let span = tracing::info_span!(
            "publish",
            otel.name = %format_args!("{} publish", envelope.event_type),
            otel.kind = "producer",
            messaging.operation.type = "publish",
            messaging.message.id = %envelope.message_id,
        );
        join_trace(&span, envelope, envelope.correlation_id.as_deref());
        span
    }

    fn client_span(&self, envelope: &Envelope, timeout: Duration) -> tracing::Span {
        let span = tracing::info_span!(
            "request",
            otel.name = %format_args!("{} request", envelope.event_type),
            otel.kind = "client",
            messaging.operation.type = "send",
            messaging.message.id = %envelope.message_id,
            timeout_ms = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX),
            outcome = Empty,
        );
        join_trace(&span, envelope, envelope.correlation_id.as_deref());
        span
    }

    fn count_request(&self, request_type: &str, outcome: &'static str, elapsed: Duration) {
        let labels = [
            ("service", self.service.to_string()),
            ("request_type", request_type.to_owned()),
            ("outcome", outcome.to_owned()),
        ];
        metrics::counter!(names::BUS_REQUESTS, &labels).increment(1);
        metrics::histogram!(names::BUS_REQUEST_DURATION, &labels).record(elapsed.as_secs_f64());
    }

    fn count_publish(&self, event_type: &str, result: &Result<(), PublishError>) {
        let name = if result.is_ok() {
            names::BUS_PUBLISHED
        } else {
            names::BUS_PUBLISH_FAILED
        };
        metrics::counter!(name, "service" => self.service.to_string(), "event_type" => event_type.to_owned())
            .increment(1);
    }
}

#[async_trait]
impl EventBus for InstrumentedBus {
    fn provider(&self) -> &'static str {
        self.inner.provider()
    }

    async fn publish(&self, mut envelope: Envelope) -> Result<(), PublishError> {
        self.check_sent(&envelope.event_type, PUBLISHES);
        let event_type = envelope.event_type.clone();
        let result = if self.trace {
            let span = scoped(self.dispatch.as_ref(), || self.producer_span(&envelope));
            propagation::inject_from(&span, &mut envelope.traceparent, &mut envelope.tracestate);
            in_dispatch(
                self.dispatch.as_ref(),
                self.inner.publish(envelope).instrument(span),
            )
            .await
        } else {
            self.inner.publish(envelope).await
        };
        self.count_publish(&event_type, &result);
        result
    }

    async fn subscribe(&self, subscription: Subscription) -> Result<(), SubscribeError> {
        if let Some(declared) = &self.declared {
            declared.check_subscription(&subscription)?;
        }
        let subscription = subscription.map_handlers(|inner| {
            Arc::new(InstrumentedHandler {
                inner,
                service: self.service.clone(),
                max_attempts: self.max_attempts,
                trace: self.trace,
                dispatch: self.dispatch.clone(),
            })
        });
        self.inner.subscribe(subscription).await
    }

    async fn request(
        &self,
        mut request: Envelope,
        timeout: Duration,
    ) -> Result<Envelope, RequestError> {
        self.check_sent(&request.event_type, "`.requests::<R>()`");
        let request_type = request.event_type.clone();
        let start = Instant::now();
        let (result, outcome) = if self.trace {
            let span = scoped(self.dispatch.as_ref(), || {
                self.client_span(&request, timeout)
            });
            propagation::inject_from(&span, &mut request.traceparent, &mut request.tracestate);
            let result = in_dispatch(
                self.dispatch.as_ref(),
                self.inner
                    .request(request, timeout)
                    .instrument(span.clone()),
            )
            .await;
            let outcome = request_outcome(&result);
            span.record("outcome", outcome);
            if let Err(error) = &result {
                scoped(self.dispatch.as_ref(), || {
                    span.in_scope(|| tracing::warn!(%error, "request failed"));
                });
            }
            (result, outcome)
        } else {
            let result = self.inner.request(request, timeout).await;
            let outcome = request_outcome(&result);
            (result, outcome)
        };
        self.count_request(&request_type, outcome, start.elapsed());
        result
    }

    async fn reply(&self, request: &Envelope, reply: Envelope) -> Result<(), PublishError> {
        // The reply's type is the answered request's response.
        self.check_sent(
            &reply.event_type,
            "`.answers::<R>()` (for the request it answers)",
        );
        self.inner.reply(request, reply).await
    }

    fn health_checks(&self) -> Vec<Arc<dyn HealthCheck>> {
        self.inner.health_checks()
    }

    fn dead_letters(&self) -> Option<Arc<dyn DeadLetterStore>> {
        self.inner.dead_letters()
    }

    async fn stop_consuming(&self, grace: Duration) -> Result<(), ShutdownError> {
        self.inner.stop_consuming(grace).await
    }

    async fn shutdown(&self) -> Result<(), ShutdownError> {
        self.inner.shutdown().await
    }

    fn hooks(&self) -> Option<&dyn EventBusHooks> {
        Some(self)
    }
}

/// Batches and borrowed envelopes reach the wrapped bus' own paths (counted,
/// and traced one by one when tracing is on); the host unwraps a decorated
/// bus instead of stacking a second decorator.
#[async_trait]
impl EventBusHooks for InstrumentedBus {
    async fn publish_ref(&self, envelope: &Envelope) -> Result<(), PublishError> {
        if self.trace {
            // The envelope must carry the producer span's context: a copy.
            return self.publish(envelope.clone()).await;
        }
        self.check_sent(&envelope.event_type, PUBLISHES);
        let result = self.inner.publish_ref(envelope).await;
        self.count_publish(&envelope.event_type, &result);
        result
    }

    async fn publish_all(&self, envelopes: Vec<Envelope>) -> Result<(), PublishError> {
        if self.trace {
            for envelope in envelopes {
                self.publish(envelope).await?;
            }
            return Ok(());
        }
        let types: Vec<String> = envelopes.iter().map(|e| e.event_type.clone()).collect();
        for event_type in &types {
            self.check_sent(event_type, PUBLISHES);
        }
        let result = self.inner.publish_all(envelopes).await;
        // On error an unknown prefix went out: count the batch as failed.
        for event_type in &types {
            self.count_publish(event_type, &result);
        }
        result
    }

    fn decorated(&self) -> Option<Arc<dyn EventBus>> {
        Some(self.inner.clone())
    }
}

/// The builder call declaring a published event.
const PUBLISHES: &str = "`.publishes::<E>()`";

struct InstrumentedHandler {
    inner: Arc<dyn MessageHandler>,
    service: Arc<str>,
    max_attempts: u32,
    trace: bool,
    dispatch: Option<tracing::Dispatch>,
}

#[async_trait]
impl MessageHandler for InstrumentedHandler {
    async fn handle(&self, delivery: &Delivery) -> Result<(), HandlerError> {
        let envelope = &delivery.envelope;
        let mut context = envelope.context_for_handler();
        let span = scoped(self.dispatch.as_ref(), || self.consumer_span(delivery));
        if self.trace {
            // The handler's correlation id: the message's, else its id.
            join_trace(&span, envelope, context.correlation_id.as_deref());
            propagation::inject_from(&span, &mut context.traceparent, &mut context.tracestate);
        }
        let start = Instant::now();
        let handled = with_message_context(context.clone(), self.inner.handle(delivery))
            .instrument(span.clone());
        let result = in_dispatch(self.dispatch.as_ref(), handled).await;
        self.record(delivery, &result, start.elapsed().as_secs_f64());
        if let Err(error) = &result {
            // In the handler's context too: the line carries its ids.
            let warn = || span.in_scope(|| tracing::warn!(%error, "message handler failed"));
            scoped(self.dispatch.as_ref(), || {
                crate::correlation::sync_scope(context, warn)
            });
        }
        result
    }
}

/// Makes `span` continue the trace `envelope` carries, with `correlation_id`
/// as an OpenTelemetry attribute (log lines take it from the message context
/// instead, see [`crate::MessageLogContext`]).
fn join_trace(span: &tracing::Span, envelope: &Envelope, correlation_id: Option<&str>) {
    propagation::set_parent(
        span,
        envelope.traceparent.as_deref(),
        envelope.tracestate.as_deref(),
    );
    if let Some(id) = correlation_id {
        propagation::set_attribute(span, crate::middleware::CORRELATION_ATTRIBUTE, id);
    }
}

impl InstrumentedHandler {
    fn consumer_span(&self, delivery: &Delivery) -> tracing::Span {
        let envelope = &delivery.envelope;
        tracing::info_span!(
            "consume",
            otel.name = %format_args!("{} process", envelope.event_type),
            otel.kind = "consumer",
            messaging.operation.type = "process",
            messaging.message.id = %envelope.message_id,
            messaging.consumer.group.name = %delivery.group,
            attempt = delivery.attempt,
        )
    }

    fn record(&self, delivery: &Delivery, result: &Result<(), HandlerError>, elapsed: f64) {
        let envelope = &delivery.envelope;
        let base = [
            ("service", self.service.to_string()),
            ("event_type", envelope.event_type.clone()),
            ("group", delivery.group.clone()),
        ];
        metrics::counter!(names::BUS_CONSUMED, &base).increment(1);
        match result {
            Ok(()) => {
                metrics::histogram!(names::BUS_HANDLER_DURATION, &with(&base, "outcome", "ok"))
                    .record(elapsed);
            }
            Err(error) => {
                metrics::histogram!(
                    names::BUS_HANDLER_DURATION,
                    &with(&base, "outcome", "error")
                )
                .record(elapsed);
                let kind = error.kind.as_str();
                metrics::counter!(names::BUS_FAILED, &with(&base, "kind", kind)).increment(1);
                if error.is_retryable() && delivery.attempt < self.max_attempts {
                    metrics::counter!(names::BUS_RETRIED, &base).increment(1);
                } else {
                    metrics::counter!(names::BUS_DEAD_LETTERED, &with(&base, "kind", kind))
                        .increment(1);
                }
            }
        }
    }
}

/// The `outcome` label of a request: `ok`, `failed` (the responder answered
/// with a failure), or what went wrong.
fn request_outcome(result: &Result<Envelope, RequestError>) -> &'static str {
    match result {
        Ok(reply) if reply.headers.contains_key(REPLY_ERROR_HEADER) => "failed",
        Ok(_) => "ok",
        Err(RequestError::NoResponder { .. }) => "no_responder",
        Err(RequestError::Timeout { .. }) => "timeout",
        Err(RequestError::Failed { .. }) => "failed",
        Err(RequestError::Interrupted { .. }) => "interrupted",
        Err(RequestError::ShutDown) => "shut_down",
        Err(RequestError::Unsupported { .. }) => "unsupported",
        Err(RequestError::Encode(_) | RequestError::Decode(_)) => "invalid",
        Err(RequestError::Publish(_)) => "unavailable",
    }
}

fn with(
    base: &[(&'static str, String); 3],
    key: &'static str,
    value: &str,
) -> Vec<(&'static str, String)> {
    let mut labels = base.to_vec();
    labels.push((key, value.to_owned()));
    labels
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use messaging_abstractions::{Durability, Handlers, MessageHandler};

    use super::*;

    struct Ack;

    #[async_trait]
    impl MessageHandler for Ack {
        async fn handle(&self, _: &Delivery) -> Result<(), HandlerError> {
            Ok(())
        }
    }

    /// Keeps what it was asked to subscribe.
    #[derive(Default)]
    struct Recording(Mutex<Vec<(String, Durability, Vec<String>)>>);

    #[async_trait]
    impl EventBus for Recording {
        fn provider(&self) -> &'static str {
            "recording"
        }
        async fn publish(&self, _: Envelope) -> Result<(), PublishError> {
            Ok(())
        }
        async fn subscribe(&self, subscription: Subscription) -> Result<(), SubscribeError> {
            let types = subscription.handlers.event_types().map(str::to_owned);
            self.0.lock().unwrap().push((
                subscription.group.clone(),
                subscription.durability,
                types.collect(),
            ));
            Ok(())
        }
        async fn stop_consuming(&self, _: Duration) -> Result<(), ShutdownError> {
            Ok(())
        }
        async fn shutdown(&self) -> Result<(), ShutdownError> {
            Ok(())
        }
    }

    #[tokio::test]
    async fn a_subscription_passes_on_with_its_group_and_durability() {
        let inner = Arc::new(Recording::default());
        let bus = InstrumentedBus::new(inner.clone(), "svc", 3, false);
        let handlers = Handlers::new().on_raw("test.ask.v1", Arc::new(Ack));
        bus.subscribe(Subscription::new("answers", handlers.clone()).transient())
            .await
            .unwrap();
        bus.subscribe(Subscription::new("events", handlers))
            .await
            .unwrap();
        let seen = inner.0.lock().unwrap().clone();
        assert_eq!(
            seen,
            [
                (
                    "answers".to_owned(),
                    Durability::Transient,
                    vec!["test.ask.v1".to_owned()]
                ),
                (
                    "events".to_owned(),
                    Durability::Durable,
                    vec!["test.ask.v1".to_owned()]
                ),
            ]
        );
    }
}
