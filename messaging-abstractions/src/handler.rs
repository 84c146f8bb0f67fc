use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::sync::Arc;

use async_trait::async_trait;

use crate::envelope::{Envelope, IntegrationEvent};

/// One delivery of a message to a consumer group.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// The message.
    pub envelope: Envelope,
    /// The consumer group it was delivered to.
    pub group: String,
    /// 1 on the first delivery, 2 on the first retry, ...
    pub attempt: u32,
}

/// How a handler failed, which decides what the bus does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FailureKind {
    /// Worth another try (a dependency was down, a conflict): retried with
    /// backoff, then dead-lettered once the attempts are used up.
    Retryable,
    /// Will fail again whatever happens: dead-lettered at once.
    Permanent,
    /// The payload could not be decoded: dead-lettered at once.
    Undecodable,
}

impl FailureKind {
    /// The name used in dead-letter headers (`retryable`, `permanent`, `undecodable`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Retryable => "retryable",
            Self::Permanent => "permanent",
            Self::Undecodable => "undecodable",
        }
    }
}

/// A handler's failure: its kind and a reason that ends up in the dead letter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HandlerError {
    /// Retry or not.
    pub kind: FailureKind,
    /// Human-readable reason.
    pub reason: String,
}

impl HandlerError {
    /// A failure worth retrying.
    pub fn retryable(reason: impl fmt::Display) -> Self {
        Self {
            kind: FailureKind::Retryable,
            reason: reason.to_string(),
        }
    }

    /// A failure that will not go away.
    pub fn permanent(reason: impl fmt::Display) -> Self {
        Self {
            kind: FailureKind::Permanent,
            reason: reason.to_string(),
        }
    }

    /// The payload could not be decoded.
    pub fn undecodable(reason: impl fmt::Display) -> Self {
        Self {
            kind: FailureKind::Undecodable,
            reason: reason.to_string(),
        }
    }

    /// Whether the bus should try again.
    pub fn is_retryable(&self) -> bool {
        self.kind == FailureKind::Retryable
    }
}

impl fmt::Display for HandlerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} failure: {}", self.kind.as_str(), self.reason)
    }
}

impl std::error::Error for HandlerError {}

/// The untyped handler a provider calls. Services normally use
/// [`EventHandler`] or closures through [`Handlers`].
#[async_trait]
pub trait MessageHandler: Send + Sync + 'static {
    /// Handles one delivery. `Ok` acknowledges it.
    async fn handle(&self, delivery: &Delivery) -> Result<(), HandlerError>;
}

/// A typed handler for one integration event.
#[async_trait]
pub trait EventHandler<E: IntegrationEvent>: Send + Sync + 'static {
    /// Handles the decoded event.
    async fn handle(&self, event: E, delivery: &Delivery) -> Result<(), HandlerError>;
}

/// Decodes the payload, then calls the typed handler; an undecodable payload
/// becomes [`FailureKind::Undecodable`].
struct Typed<E, H> {
    handler: H,
    _event: PhantomData<fn() -> E>,
}

#[async_trait]
impl<E: IntegrationEvent, H: EventHandler<E>> MessageHandler for Typed<E, H> {
    async fn handle(&self, delivery: &Delivery) -> Result<(), HandlerError> {
        let event = delivery
            .envelope
            .decode::<E>()
            .map_err(HandlerError::undecodable)?;
        self.handler.handle(event, delivery).await
    }
}

struct FnHandler<F>(F);

#[async_trait]
impl<E, F, Fut> EventHandler<E> for FnHandler<F>
where
    E: IntegrationEvent,
    F: Fn(E, Delivery) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), HandlerError>> + Send + 'static,
{
    async fn handle(&self, event: E, delivery: &Delivery) -> Result<(), HandlerError> {
        (self.0)(event, delivery.clone()).await
    }
}

/// The handlers of one subscription, by event type.
#[derive(Clone, Default)]
pub struct Handlers {
    by_type: BTreeMap<String, Arc<dyn MessageHandler>>,
}

impl fmt::Debug for Handlers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.by_type.keys()).finish()
    }
}

impl Handlers {
    /// No handlers yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Handles `E` with a typed handler.
    pub fn on<E: IntegrationEvent>(self, handler: impl EventHandler<E>) -> Self {
        self.on_raw(
            E::EVENT_TYPE,
            Arc::new(Typed {
                handler,
                _event: PhantomData,
            }),
        )
    }

    /// Handles `E` with an async closure `|event, delivery| async { ... }`.
    pub fn on_fn<E, F, Fut>(self, f: F) -> Self
    where
        E: IntegrationEvent,
        F: Fn(E, Delivery) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), HandlerError>> + Send + 'static,
    {
        self.on::<E>(FnHandler(f))
    }

    /// Handles an event type with an untyped handler (sees the raw envelope).
    pub fn on_raw(
        mut self,
        event_type: impl Into<String>,
        handler: Arc<dyn MessageHandler>,
    ) -> Self {
        self.by_type.insert(event_type.into(), handler);
        self
    }

    /// The handler for `event_type`, if any.
    pub fn get(&self, event_type: &str) -> Option<&Arc<dyn MessageHandler>> {
        self.by_type.get(event_type)
    }

    /// The same event types, each handler replaced by what `wrap` makes of
    /// it: how a bus decorator puts its own handler around the service's
    /// (metrics and tracing, a test recorder).
    pub fn map(
        self,
        mut wrap: impl FnMut(Arc<dyn MessageHandler>) -> Arc<dyn MessageHandler>,
    ) -> Self {
        Self {
            by_type: self
                .by_type
                .into_iter()
                .map(|(event_type, handler)| (event_type, wrap(handler)))
                .collect(),
        }
    }

    /// The event types handled.
    pub fn event_types(&self) -> impl Iterator<Item = &str> {
        self.by_type.keys().map(String::as_str)
    }

    /// Whether there is no handler.
    pub fn is_empty(&self) -> bool {
        self.by_type.is_empty()
    }

    /// Calls the handler for the delivery's event type. A message of a type
    /// with no handler is a permanent failure (dead-lettered, never dropped).
    pub async fn dispatch(&self, delivery: &Delivery) -> Result<(), HandlerError> {
        match self.get(&delivery.envelope.event_type) {
            Some(handler) => handler.handle(delivery).await,
            None => Err(HandlerError::permanent(format!(
                "no handler for event type `{}` in group `{}`",
                delivery.envelope.event_type, delivery.group
            ))),
        }
    }
}

/// A consumer in a consumer group: the group's queue receives every event type
/// in `handlers`; several subscriptions of one group (e.g. two instances of a
/// service) share the messages.
#[derive(Debug, Clone)]
pub struct Subscription {
    /// Consumer group, normally the service name.
    pub group: String,
    /// What to do with each event type.
    pub handlers: Handlers,
    /// Whether the group's messages must survive a restart of the broker.
    pub durability: Durability,
}

/// Whether a group's messages must survive a restart of the broker.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Durability {
    /// Kept until handled, across broker restarts (events).
    #[default]
    Durable,
    /// Worth nothing after a few seconds: requests, whose requester stops
    /// waiting at its timeout ([`crate::Responders::subscribe`]). A provider
    /// may keep them in memory only (RabbitMQ: a classic, non-durable queue
    /// instead of a replicated one); one lost with the broker is an
    /// interrupted request, which the requester sees as such.
    Transient,
}

impl Subscription {
    /// A durable subscription of `group` with `handlers`.
    pub fn new(group: impl Into<String>, handlers: Handlers) -> Self {
        Self {
            group: group.into(),
            handlers,
            durability: Durability::Durable,
        }
    }

    /// The same subscription, its messages [`Durability::Transient`].
    #[must_use]
    pub fn transient(mut self) -> Self {
        self.durability = Durability::Transient;
        self
    }

    /// The same subscription with every handler wrapped by `wrap` (see
    /// [`Handlers::map`]): what a decorating bus passes on, its group and
    /// durability kept.
    #[must_use]
    pub fn map_handlers(
        mut self,
        wrap: impl FnMut(Arc<dyn MessageHandler>) -> Arc<dyn MessageHandler>,
    ) -> Self {
        self.handlers = std::mem::take(&mut self.handlers).map(wrap);
        self
    }

    /// Checks the subscription can be set up (non-empty group name made of
    /// `[A-Za-z0-9._-]`, at least one handler).
    pub fn validate(&self) -> Result<(), crate::SubscribeError> {
        if self.group.is_empty()
            || !self
                .group
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        {
            return Err(crate::SubscribeError::Invalid(format!(
                "group name `{}` must be non-empty and use only letters, digits, `.`, `_` or `-`",
                self.group
            )));
        }
        if self.handlers.is_empty() {
            return Err(crate::SubscribeError::Invalid(format!(
                "subscription of group `{}` has no handler",
                self.group
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::{Deserialize, Serialize};

    #[derive(Debug, Serialize, Deserialize)]
    struct Ping {
        n: u32,
    }
    impl IntegrationEvent for Ping {
        const EVENT_TYPE: &'static str = "test.ping.v1";
    }

    fn delivery(env: Envelope) -> Delivery {
        Delivery {
            envelope: env,
            group: "g".into(),
            attempt: 1,
        }
    }

    #[tokio::test]
    async fn dispatch_decodes_and_classifies() {
        let handlers = Handlers::new().on_fn(|p: Ping, _| async move {
            if p.n == 0 {
                Err(HandlerError::retryable("zero"))
            } else {
                Ok(())
            }
        });
        let ok = Envelope::for_event(&Ping { n: 1 }).unwrap();
        assert_eq!(handlers.dispatch(&delivery(ok)).await, Ok(()));
        let zero = Envelope::for_event(&Ping { n: 0 }).unwrap();
        assert!(
            handlers
                .dispatch(&delivery(zero))
                .await
                .unwrap_err()
                .is_retryable()
        );
        let mut bad = Envelope::for_event(&Ping { n: 1 }).unwrap();
        bad.payload = b"[]".to_vec();
        let err = handlers.dispatch(&delivery(bad)).await.unwrap_err();
        assert_eq!(err.kind, FailureKind::Undecodable);
        let other = Envelope::new("unknown.v1", "application/json", b"{}".to_vec());
        let err = handlers.dispatch(&delivery(other)).await.unwrap_err();
        assert_eq!(err.kind, FailureKind::Permanent);
        assert!(err.reason.contains("unknown.v1"));
    }

    /// Fails every delivery, naming what it wraps.
    struct Refusing(Arc<dyn MessageHandler>);

    #[async_trait]
    impl MessageHandler for Refusing {
        async fn handle(&self, delivery: &Delivery) -> Result<(), HandlerError> {
            self.0.handle(delivery).await?;
            Err(HandlerError::permanent("wrapped"))
        }
    }

    #[tokio::test]
    async fn map_wraps_every_handler_and_keeps_the_event_types() {
        let handlers = Handlers::new().on_fn(|_: Ping, _| async { Ok(()) }).on_raw(
            "other.v1",
            Handlers::new()
                .on_fn(|_: Ping, _| async { Ok(()) })
                .get(Ping::EVENT_TYPE)
                .unwrap()
                .clone(),
        );
        let mut wrapped = 0;
        let mapped = handlers.map(|inner| {
            wrapped += 1;
            Arc::new(Refusing(inner))
        });
        assert_eq!(wrapped, 2);
        assert_eq!(
            mapped.event_types().collect::<Vec<_>>(),
            ["other.v1", Ping::EVENT_TYPE]
        );
        let ping = Envelope::for_event(&Ping { n: 1 }).unwrap();
        let err = mapped.dispatch(&delivery(ping)).await.unwrap_err();
        assert_eq!(err.reason, "wrapped", "the wrapper ran around the handler");
    }

    #[test]
    fn mapping_the_handlers_keeps_group_and_durability() {
        let h = Handlers::new().on_fn(|_: Ping, _| async { Ok(()) });
        let mut wrapped = 0;
        let mapped = Subscription::new("answers", h)
            .transient()
            .map_handlers(|inner| {
                wrapped += 1;
                Arc::new(Refusing(inner))
            });
        assert_eq!(wrapped, 1);
        assert_eq!(mapped.group, "answers");
        assert_eq!(mapped.durability, Durability::Transient);
        assert_eq!(
            mapped.handlers.event_types().collect::<Vec<_>>(),
            [Ping::EVENT_TYPE]
        );
    }

    #[test]
    fn validation() {
        let h = Handlers::new().on_fn(|_: Ping, _| async { Ok(()) });
        assert!(Subscription::new("shipping", h.clone()).validate().is_ok());
        assert!(Subscription::new("bad name", h).validate().is_err());
        assert!(Subscription::new("g", Handlers::new()).validate().is_err());
    }
}
