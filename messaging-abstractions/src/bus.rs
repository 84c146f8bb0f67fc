use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use chassis_core::HealthCheck;
use uuid::Uuid;

use crate::envelope::{Envelope, IntegrationEvent, MessageContext};
use crate::error::{PublishError, ShutdownError, SubscribeError};
use crate::handler::{FailureKind, Subscription};
use crate::request::RequestError;

/// The event bus port. Object-safe: services hold an `Arc<dyn EventBus>`.
///
/// Promises every provider keeps (checked by `messaging-conformance`):
/// at-least-once delivery to every subscribed group, competing consumers
/// within a group, every envelope field preserved, retryable failures retried
/// with backoff then dead-lettered with the reason and attempt count, permanent
/// and undecodable failures dead-lettered at once, and a draining shutdown.
#[async_trait]
pub trait EventBus: Send + Sync + 'static {
    /// The provider's name as written in config (`inmemory`, `rabbitmq`).
    fn provider(&self) -> &'static str;

    /// Publishes one message. `Ok` means the broker has taken responsibility
    /// for it (confirmed), never "maybe".
    async fn publish(&self, envelope: Envelope) -> Result<(), PublishError>;

    /// Starts a consumer in `subscription.group` for the event types of its
    /// handlers. Declares whatever the broker needs (queues, bindings).
    async fn subscribe(&self, subscription: Subscription) -> Result<(), SubscribeError>;

    /// Sends `request` (an envelope of the request type, see
    /// [`crate::RequestClient`]) to the group subscribed to its type with this
    /// bus' reply address in [`crate::request::REPLY_TO_HEADER`], and waits at most
    /// `timeout` for the envelope answering it (matched on
    /// [`crate::request::IN_REPLY_TO_HEADER`] = the request's `message_id`).
    ///
    /// Errors: nobody subscribed → [`RequestError::NoResponder`] at once; no
    /// answer in time → [`RequestError::Timeout`]. The default says the
    /// provider does not support it; decorators must forward.
    async fn request(
        &self,
        request: Envelope,
        timeout: Duration,
    ) -> Result<Envelope, RequestError> {
        let _ = (request, timeout);
        Err(RequestError::Unsupported {
            provider: self.provider(),
        })
    }

    /// Sends `reply` to the address `request` carries in
    /// [`crate::request::REPLY_TO_HEADER`]. A requester that no longer exists is
    /// [`PublishError::Unroutable`]. Used by [`crate::Responders`].
    async fn reply(&self, request: &Envelope, reply: Envelope) -> Result<(), PublishError> {
        let _ = (request, reply);
        Err(PublishError::Unavailable(format!(
            "the `{}` event bus does not support request/response",
            self.provider()
        )))
    }

    /// Readiness checks of this provider (broker connection, ...).
    fn health_checks(&self) -> Vec<Arc<dyn HealthCheck>> {
        Vec::new()
    }

    /// Dead letters, where the provider can list and replay them.
    fn dead_letters(&self) -> Option<Arc<dyn DeadLetterStore>> {
        None
    }

    /// Stops taking new messages and waits at most `grace` for in-flight
    /// handlers to finish and settle; publishing keeps working. The host
    /// calls it before the outbox relay's last flush, so the events those
    /// handlers raise are still published, and gives it what is left of its
    /// shutdown deadline. Messages taken but not started go back to the
    /// broker. Idempotent; a later [`EventBus::shutdown`] does not wait again.
    /// Decorators must forward.
    async fn stop_consuming(&self, grace: Duration) -> Result<(), ShutdownError>;

    /// Stops consuming (waiting the provider's own drain timeout unless
    /// [`EventBus::stop_consuming`] ran already), then closes: publishing is
    /// refused from then on. Idempotent.
    async fn shutdown(&self) -> Result<(), ShutdownError>;

    /// The bus's [`EventBusHooks`] (cheaper publishing, the bus a decorator
    /// wraps), for a provider or decorator that has them: it returns
    /// `Some(self)`. Callers use [`EventBusExt`], which falls back to
    /// [`EventBus::publish`] when there are none.
    fn hooks(&self) -> Option<&dyn EventBusHooks> {
        None
    }
}

/// What a bus may offer beyond the port: publishing without a copy or in
/// pipelined batches (the outbox relay's path), and, for a decorator
/// (metrics, tracing), the bus it wraps. Reached from any `dyn EventBus`
/// through [`EventBus::hooks`]; every method has a default, so a bus
/// overrides only what it does better.
///
/// ```
/// use std::sync::Arc;
/// use std::time::Duration;
///
/// use async_trait::async_trait;
/// use messaging_abstractions::{
///     Envelope, EventBus, EventBusExt, EventBusHooks, PublishError, ShutdownError,
///     SubscribeError, Subscription,
/// };
///
/// /// A bus that takes whole batches at once.
/// struct Batching;
///
/// #[async_trait]
/// impl EventBus for Batching {
///     fn provider(&self) -> &'static str { "batching" }
///     async fn publish(&self, _: Envelope) -> Result<(), PublishError> {
///         Err(PublishError::Unavailable("one at a time is not this bus' way".into()))
///     }
///     async fn subscribe(&self, _: Subscription) -> Result<(), SubscribeError> { Ok(()) }
///     async fn stop_consuming(&self, _: Duration) -> Result<(), ShutdownError> { Ok(()) }
///     async fn shutdown(&self) -> Result<(), ShutdownError> { Ok(()) }
///     fn hooks(&self) -> Option<&dyn EventBusHooks> { Some(self) }
/// }
///
/// #[async_trait]
/// impl EventBusHooks for Batching {
///     async fn publish_all(&self, _: Vec<Envelope>) -> Result<(), PublishError> { Ok(()) }
/// }
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let bus: Arc<dyn EventBus> = Arc::new(Batching);
/// // Through the port: the bus' own batch path, no downcast.
/// assert!(bus.publish_all(Vec::new()).await.is_ok());
/// # }
/// ```
#[async_trait]
pub trait EventBusHooks: EventBus {
    /// Publishes a message the caller keeps (the typed helpers of
    /// [`EventBusExt`] return the envelope they sent). Same promise as
    /// [`EventBus::publish`]; the default clones, providers that encode from
    /// a reference override it to save the copy.
    async fn publish_ref(&self, envelope: &Envelope) -> Result<(), PublishError> {
        self.publish(envelope.clone()).await
    }

    /// Publishes several messages, in order. Providers pipeline confirms; on
    /// error, the messages before the failing one may have been published.
    async fn publish_all(&self, envelopes: Vec<Envelope>) -> Result<(), PublishError> {
        publish_each(self, envelopes).await
    }

    /// For a decorator: the bus it wraps, so a host given an already
    /// decorated bus can decorate the original instead of stacking
    /// decorators. Providers keep the default, `None`.
    fn decorated(&self) -> Option<Arc<dyn EventBus>> {
        None
    }
}

/// Publishes `envelopes` one after the other (a bus without a batch path).
async fn publish_each<B: EventBus + ?Sized>(
    bus: &B,
    envelopes: Vec<Envelope>,
) -> Result<(), PublishError> {
    for envelope in envelopes {
        bus.publish(envelope).await?;
    }
    Ok(())
}

/// A message that could not be handled, with why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    /// Id of this dead letter (for replay).
    pub id: Uuid,
    /// The group whose handler failed.
    pub group: String,
    /// The message as it was delivered.
    pub envelope: Envelope,
    /// The last failure's kind.
    pub kind: FailureKind,
    /// The last failure's reason.
    pub reason: String,
    /// How many times it was delivered.
    pub attempts: u32,
    /// When it was dead-lettered.
    pub failed_at: SystemTime,
}

/// Dead letters of a provider that keeps them where the chassis can read them.
#[async_trait]
pub trait DeadLetterStore: Send + Sync {
    /// Dead letters of `group` (all groups when `None`), oldest first.
    async fn list(&self, group: Option<&str>) -> Vec<DeadLetter>;
    /// Sends a dead letter back to its group's queue (attempts start again)
    /// and removes it from the store. `false` if there is no such letter.
    async fn replay(&self, id: Uuid) -> Result<bool, PublishError>;
}

/// Helpers on any [`EventBus`], `dyn` included: typed publishing, and the
/// [`EventBusHooks`] with their fallbacks.
#[async_trait]
pub trait EventBusExt {
    /// Publishes a message the caller keeps: the bus' own
    /// [`EventBusHooks::publish_ref`], else a copy through
    /// [`EventBus::publish`].
    async fn publish_ref(&self, envelope: &Envelope) -> Result<(), PublishError>;

    /// Publishes several messages, in order: the bus' own
    /// [`EventBusHooks::publish_all`] (pipelined), else one by one. On error,
    /// the messages before the failing one may have been published.
    async fn publish_all(&self, envelopes: Vec<Envelope>) -> Result<(), PublishError>;

    /// The bus a decorator wraps ([`EventBusHooks::decorated`]).
    fn decorated(&self) -> Option<Arc<dyn EventBus>>;

    /// Encodes and publishes `event` with the given context; returns the
    /// envelope that was sent.
    async fn publish_event_in<E: IntegrationEvent>(
        &self,
        event: &E,
        context: &MessageContext,
    ) -> Result<Envelope, PublishError>;

    /// Encodes and publishes `event` with no inherited context.
    async fn publish_event<E: IntegrationEvent>(
        &self,
        event: &E,
    ) -> Result<Envelope, PublishError> {
        self.publish_event_in(event, &MessageContext::default())
            .await
    }
}

#[async_trait]
impl<B: EventBus + ?Sized> EventBusExt for B {
    async fn publish_ref(&self, envelope: &Envelope) -> Result<(), PublishError> {
        match self.hooks() {
            Some(hooks) => EventBusHooks::publish_ref(hooks, envelope).await,
            None => self.publish(envelope.clone()).await,
        }
    }

    async fn publish_all(&self, envelopes: Vec<Envelope>) -> Result<(), PublishError> {
        match self.hooks() {
            Some(hooks) => EventBusHooks::publish_all(hooks, envelopes).await,
            None => publish_each(self, envelopes).await,
        }
    }

    fn decorated(&self) -> Option<Arc<dyn EventBus>> {
        self.hooks().and_then(EventBusHooks::decorated)
    }

    async fn publish_event_in<E: IntegrationEvent>(
        &self,
        event: &E,
        context: &MessageContext,
    ) -> Result<Envelope, PublishError> {
        let envelope = Envelope::for_event(event)?.with_context(context);
        self.publish_ref(&envelope).await?;
        Ok(envelope)
    }
}
