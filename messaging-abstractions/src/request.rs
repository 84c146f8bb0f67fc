//! Request/response over the bus: ask another service a question and await
//! its typed answer, without an HTTP call chain.
//!
//! A request is an ordinary [`Envelope`] of the request's type, published like
//! an event to the group that answers it; it carries the requester's reply
//! address in [`REPLY_TO_HEADER`] and its deadline in [`DEADLINE_HEADER`]. The
//! responder's answer is an envelope of the response type sent straight to
//! that address, with [`IN_REPLY_TO_HEADER`] naming the request's
//! `message_id`, which the requester matches against its pending requests.
//!
//! Providers implement [`EventBus::request`] and [`EventBus::reply`] (the
//! addressing and the pending table); everything typed lives here and works
//! on every provider:
//! - [`RequestClient`] sends a typed request and awaits the typed response;
//! - [`Responders`] holds typed responder functions and
//!   [`Responders::subscribe`] registers them as a consumer group.
//!
//! Semantics every provider keeps (checked by `messaging-conformance`):
//! - nobody subscribed to the request type → [`RequestError::NoResponder`] at
//!   once, never a wait until the timeout;
//! - no answer within the timeout → [`RequestError::Timeout`]; a late answer
//!   is dropped;
//! - a responder that fails permanently answers [`RequestError::Failed`] with
//!   the reason (and its request is dead-lettered like any failed message);
//!   a retryable failure is retried within the deadline;
//! - a request still queued after its deadline is not handled (its requester
//!   has given up): the responder acknowledges it without answering;
//! - the response is decoded and type-checked: a wrong answer is
//!   [`RequestError::Decode`].

use std::collections::HashMap;
use std::future::Future;
use std::marker::PhantomData;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use thiserror::Error;
use tokio::sync::oneshot;
use uuid::Uuid;

use crate::bus::EventBus;
use crate::envelope::{Envelope, IntegrationEvent, MessageContext};
use crate::error::{DecodeError, EncodeError, PublishError, SubscribeError};
use crate::handler::{Delivery, FailureKind, HandlerError, Handlers, MessageHandler, Subscription};

/// Header of a request: the address its response goes to (provider-defined).
pub const REPLY_TO_HEADER: &str = "chassis-reply-to";
/// Header of a request: its deadline, milliseconds since the Unix epoch.
pub const DEADLINE_HEADER: &str = "chassis-deadline-ms";
/// Header of a response: the `message_id` of the request it answers.
pub const IN_REPLY_TO_HEADER: &str = "chassis-in-reply-to";
/// Header of a response that reports a failure instead of an answer; its
/// value is the failure kind (`permanent`, `undecodable`), the payload the
/// reason as UTF-8 text.
pub const REPLY_ERROR_HEADER: &str = "chassis-reply-error";

/// A typed request: the message is itself an [`IntegrationEvent`] (its
/// `EVENT_TYPE` names the request on the wire, e.g. `shipping.quote.v1`),
/// answered by one [`Request::Response`].
pub trait Request: IntegrationEvent {
    /// The answer's type.
    type Response: IntegrationEvent;
}

/// A request got no (usable) answer.
#[derive(Debug, Error)]
pub enum RequestError {
    /// Nobody subscribed to the request type: nothing was delivered.
    #[error("no responder for request type `{request_type}`")]
    NoResponder {
        /// The request type.
        request_type: String,
    },
    /// No answer within the timeout. The request may still be handled later.
    #[error("no response to `{request_type}` within {waited:?}")]
    Timeout {
        /// The request type.
        request_type: String,
        /// How long the requester waited.
        waited: Duration,
    },
    /// The responder answered with a failure.
    #[error("responder to `{request_type}` failed ({kind}): {reason}")]
    Failed {
        /// The request type.
        request_type: String,
        /// The failure kind (`permanent`, `undecodable`).
        kind: String,
        /// The responder's reason.
        reason: String,
    },
    /// The request could not be encoded.
    #[error(transparent)]
    Encode(#[from] EncodeError),
    /// The request could not be sent.
    #[error("request could not be sent: {0}")]
    Publish(#[source] PublishError),
    /// The answer is not the expected response.
    #[error("response cannot be decoded: {0}")]
    Decode(#[from] DecodeError),
    /// The connection to the broker was lost while waiting; whether the
    /// request was handled is unknown.
    #[error("connection lost while waiting for `{request_type}`: {reason}")]
    Interrupted {
        /// The request type.
        request_type: String,
        /// What happened.
        reason: String,
    },
    /// This provider does not implement request/response.
    #[error("the `{provider}` event bus does not support request/response")]
    Unsupported {
        /// The provider's name.
        provider: &'static str,
    },
    /// The bus is shutting down.
    #[error("event bus is shut down")]
    ShutDown,
}

impl RequestError {
    /// Whether asking again later may succeed (the caller's fallback decides).
    pub fn is_transient(&self) -> bool {
        match self {
            Self::NoResponder { .. } | Self::Timeout { .. } | Self::Interrupted { .. } => true,
            Self::Publish(e) => e.is_transient(),
            _ => false,
        }
    }

    /// Maps a publish failure of the request itself: an unroutable request
    /// means nobody responds to its type.
    pub fn from_publish(request_type: &str, error: PublishError) -> Self {
        match error {
            PublishError::Unroutable { .. } => Self::NoResponder {
                request_type: request_type.to_owned(),
            },
            PublishError::ShutDown => Self::ShutDown,
            PublishError::Encode(e) => Self::Encode(e),
            other => Self::Publish(other),
        }
    }
}

/// Milliseconds since the Unix epoch of `at`.
fn epoch_ms(at: SystemTime) -> u128 {
    at.duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis()
}

/// Stamps `request` with the deadline `timeout` from now (kept if already set).
pub fn set_deadline(request: &mut Envelope, timeout: Duration) {
    request
        .headers
        .entry(DEADLINE_HEADER.to_owned())
        .or_insert_with(|| epoch_ms(SystemTime::now() + timeout).to_string());
}

/// Whether `request` carries a deadline that has passed.
pub fn is_expired(request: &Envelope) -> bool {
    request
        .headers
        .get(DEADLINE_HEADER)
        .and_then(|v| v.parse::<u128>().ok())
        .is_some_and(|deadline| epoch_ms(SystemTime::now()) > deadline)
}

/// The response envelope answering `request` with `response`: same
/// correlation and trace, the request as cause, [`IN_REPLY_TO_HEADER`] set.
pub fn response_envelope<R: IntegrationEvent>(
    request: &Envelope,
    response: &R,
) -> Result<Envelope, EncodeError> {
    Ok(Envelope::for_event(response)?
        .with_context(&request.context_for_handler())
        .with_header(IN_REPLY_TO_HEADER, request.message_id.to_string()))
}

/// The failure answer to `request`.
pub fn failure_envelope(request: &Envelope, error: &HandlerError) -> Envelope {
    Envelope::new(
        request.event_type.clone(),
        "text/plain; charset=utf-8",
        error.reason.clone().into_bytes(),
    )
    .with_context(&request.context_for_handler())
    .with_header(IN_REPLY_TO_HEADER, request.message_id.to_string())
    .with_header(REPLY_ERROR_HEADER, error.kind.as_str())
}

/// Reads an answer: a failure reply becomes [`RequestError::Failed`], anything
/// else is decoded as `R`.
pub fn decode_response<R: IntegrationEvent>(
    request_type: &str,
    reply: &Envelope,
) -> Result<R, RequestError> {
    if let Some(kind) = reply.headers.get(REPLY_ERROR_HEADER) {
        return Err(RequestError::Failed {
            request_type: request_type.to_owned(),
            kind: kind.clone(),
            reason: String::from_utf8_lossy(&reply.payload).into_owned(),
        });
    }
    Ok(reply.decode::<R>()?)
}

/// What a waiting requester receives.
pub type Answer = Result<Envelope, RequestError>;

/// The requests waiting on one reply address, keyed by the request's
/// `message_id`: the table every provider's [`EventBus::request`] keeps.
/// A requester registers with [`wait_for`](Self::wait_for) before sending
/// and awaits the receiver; the provider hands each reply to
/// [`resolve`](Self::resolve); [`close`](Self::close) fails every waiter
/// when the address goes away (connection lost, shutdown).
#[derive(Debug)]
pub struct PendingRequests {
    /// `None` once closed: nobody can wait here any more.
    table: Mutex<Option<HashMap<Uuid, oneshot::Sender<Answer>>>>,
}

impl PendingRequests {
    /// An open, empty table.
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            table: Mutex::new(Some(HashMap::new())),
        })
    }

    fn table(&self) -> MutexGuard<'_, Option<HashMap<Uuid, oneshot::Sender<Answer>>>> {
        self.table.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether requests can still wait here.
    pub fn is_open(&self) -> bool {
        self.table().is_some()
    }

    /// Registers request `id` as waiting: `Ok(None)` when the table is
    /// closed. The guard removes the entry when the requester stops waiting
    /// (answer, timeout, error or cancellation). Two waiters for one id could
    /// not both be answered: the second is refused.
    pub fn wait_for(
        self: &Arc<Self>,
        id: Uuid,
    ) -> Result<Option<(oneshot::Receiver<Answer>, PendingGuard)>, RequestError> {
        let mut table = self.table();
        let Some(table) = table.as_mut() else {
            return Ok(None);
        };
        if table.contains_key(&id) {
            return Err(RequestError::Publish(PublishError::Rejected {
                message_id: id,
                reason: "a request with this message_id is already waiting for its answer".into(),
            }));
        }
        let (tx, rx) = oneshot::channel();
        table.insert(id, tx);
        Ok(Some((
            rx,
            PendingGuard {
                table: Arc::downgrade(self),
                id,
            },
        )))
    }

    /// Hands `reply` to the requester waiting for request `id`: `Some(true)`
    /// when it got it, `Some(false)` when nobody waits any more (a late or
    /// duplicate reply, to be dropped), `None` when the table is closed.
    pub fn resolve(&self, id: Uuid, reply: Envelope) -> Option<bool> {
        let waiter = self.table().as_mut()?.remove(&id);
        // A requester that gave up in the meantime dropped its receiver.
        Some(waiter.is_some_and(|tx| tx.send(Ok(reply)).is_ok()))
    }

    /// Closes the table: every waiting request fails with `error()`, later
    /// ones are refused. Returns how many were waiting.
    pub fn close(&self, error: impl Fn() -> RequestError) -> usize {
        let table = self.table().take().unwrap_or_default();
        let waiting = table.len();
        for (_, tx) in table {
            let _ = tx.send(Err(error()));
        }
        waiting
    }

    /// How many requests are waiting.
    pub fn waiting(&self) -> usize {
        self.table().as_ref().map_or(0, HashMap::len)
    }
}

/// Removes a waiting request from its [`PendingRequests`] when dropped.
#[derive(Debug)]
pub struct PendingGuard {
    table: Weak<PendingRequests>,
    id: Uuid,
}

impl Drop for PendingGuard {
    fn drop(&mut self) {
        if let Some(pending) = self.table.upgrade()
            && let Some(table) = pending.table().as_mut()
        {
            table.remove(&self.id);
        }
    }
}

/// A typed client for one request type over any bus.
///
/// ```
/// use std::sync::Arc;
/// use std::time::Duration;
/// use messaging_abstractions::{EventBus, IntegrationEvent, Request, RequestClient, RequestError};
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Debug, Serialize, Deserialize)]
/// struct QuoteRequest { units: u32 }
/// impl IntegrationEvent for QuoteRequest { const EVENT_TYPE: &'static str = "shipping.quote.v1"; }
/// #[derive(Debug, Serialize, Deserialize)]
/// struct Quote { packages: u32 }
/// impl IntegrationEvent for Quote { const EVENT_TYPE: &'static str = "shipping.quote-result.v1"; }
/// impl Request for QuoteRequest { type Response = Quote; }
///
/// async fn packages(bus: Arc<dyn EventBus>) -> Result<u32, RequestError> {
///     let quotes = RequestClient::<QuoteRequest>::new(bus, Duration::from_secs(2));
///     Ok(quotes.send(&QuoteRequest { units: 3 }).await?.packages)
/// }
/// ```
pub struct RequestClient<R: Request> {
    bus: Arc<dyn EventBus>,
    timeout: Duration,
    _request: PhantomData<fn(R) -> R::Response>,
}

impl<R: Request> Clone for RequestClient<R> {
    fn clone(&self) -> Self {
        Self {
            bus: self.bus.clone(),
            timeout: self.timeout,
            _request: PhantomData,
        }
    }
}

impl<R: Request> std::fmt::Debug for RequestClient<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RequestClient")
            .field("request_type", &R::EVENT_TYPE)
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl<R: Request> RequestClient<R> {
    /// A client sending `R` over `bus`, waiting at most `timeout` per request.
    pub fn new(bus: Arc<dyn EventBus>, timeout: Duration) -> Self {
        Self {
            bus,
            timeout,
            _request: PhantomData,
        }
    }

    /// The time each request waits for its answer.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Sends `request` with no inherited context and awaits the answer.
    pub async fn send(&self, request: &R) -> Result<R::Response, RequestError> {
        self.send_in(request, &MessageContext::default()).await
    }

    /// Sends `request` in `context` (correlation, trace) and awaits the answer.
    pub async fn send_in(
        &self,
        request: &R,
        context: &MessageContext,
    ) -> Result<R::Response, RequestError> {
        let mut envelope = Envelope::for_event(request)?.with_context(context);
        set_deadline(&mut envelope, self.timeout);
        let reply = self.bus.request(envelope, self.timeout).await?;
        decode_response::<R::Response>(R::EVENT_TYPE, &reply)
    }
}

/// Turns a typed responder into the handler a provider calls: skip expired
/// requests, decode, answer, and report permanent failures to the requester.
struct Responder<R, F> {
    bus: Arc<dyn EventBus>,
    respond: F,
    _request: PhantomData<fn(R)>,
}

#[async_trait]
impl<R, F, Fut> MessageHandler for Responder<R, F>
where
    R: Request,
    F: Fn(R, Delivery) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<R::Response, HandlerError>> + Send + 'static,
{
    async fn handle(&self, delivery: &Delivery) -> Result<(), HandlerError> {
        let request = &delivery.envelope;
        if is_expired(request) {
            // The requester stopped waiting: answering would only be dropped.
            return Ok(());
        }
        let outcome = match request.decode::<R>() {
            Ok(typed) => (self.respond)(typed, delivery.clone()).await,
            Err(e) => Err(HandlerError::undecodable(e)),
        };
        let reply = match &outcome {
            Ok(response) => {
                response_envelope(request, response).map_err(HandlerError::permanent)?
            }
            // Retried by the bus; the requester keeps waiting meanwhile.
            Err(e) if e.kind == FailureKind::Retryable => return outcome.map(|_| ()),
            Err(e) => failure_envelope(request, e),
        };
        match self.bus.reply(request, reply).await {
            Ok(()) => {}
            // The requester is gone (its reply address no longer exists):
            // nobody is waiting, the work is done.
            Err(PublishError::Unroutable { .. }) => {}
            Err(e) if e.is_transient() => {
                return Err(HandlerError::retryable(format!("reply not sent: {e}")));
            }
            Err(e) => return Err(HandlerError::permanent(format!("reply not sent: {e}"))),
        }
        // A failure answer was sent; the request itself is still dead-lettered
        // with the reason, so nothing is lost.
        outcome.map(|_| ())
    }
}

/// The responders of one service: typed functions answering request types.
///
/// ```
/// use std::sync::Arc;
/// use messaging_abstractions::{EventBus, HandlerError, IntegrationEvent, Request, Responders};
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Debug, Serialize, Deserialize)]
/// struct QuoteRequest { units: u32 }
/// impl IntegrationEvent for QuoteRequest { const EVENT_TYPE: &'static str = "shipping.quote.v1"; }
/// #[derive(Debug, Serialize, Deserialize)]
/// struct Quote { packages: u32 }
/// impl IntegrationEvent for Quote { const EVENT_TYPE: &'static str = "shipping.quote-result.v1"; }
/// impl Request for QuoteRequest { type Response = Quote; }
///
/// async fn serve(bus: Arc<dyn EventBus>) -> Result<(), Box<dyn std::error::Error>> {
///     Responders::new()
///         .on_fn(|request: QuoteRequest, _delivery| async move {
///             if request.units == 0 {
///                 return Err(HandlerError::permanent("nothing to ship"));
///             }
///             Ok(Quote { packages: request.units.div_ceil(4) })
///         })
///         .subscribe(&bus, "shipping-quotes")
///         .await?;
///     Ok(())
/// }
/// ```
#[derive(Default)]
pub struct Responders {
    entries: Vec<AddResponder>,
}

/// Adds one responder, bound to the bus it answers through, to a handler set.
type AddResponder = Box<dyn FnOnce(Arc<dyn EventBus>, Handlers) -> Handlers + Send>;

impl std::fmt::Debug for Responders {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Responders")
            .field("count", &self.entries.len())
            .finish()
    }
}

impl Responders {
    /// No responder yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Answers `R` with an async closure `|request, delivery| async { Ok(response) }`.
    /// A permanent (or undecodable) failure is sent back to the requester as
    /// [`RequestError::Failed`]; a retryable one is retried by the bus.
    pub fn on_fn<R, F, Fut>(mut self, respond: F) -> Self
    where
        R: Request,
        F: Fn(R, Delivery) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<R::Response, HandlerError>> + Send + 'static,
    {
        self.entries.push(Box::new(move |bus, handlers| {
            handlers.on_raw(
                R::EVENT_TYPE,
                Arc::new(Responder {
                    bus,
                    respond,
                    _request: PhantomData,
                }),
            )
        }));
        self
    }

    /// Whether there is no responder.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The handlers answering through `bus` (to add to a subscription that
    /// also handles events).
    pub fn into_handlers(self, bus: &Arc<dyn EventBus>, mut handlers: Handlers) -> Handlers {
        for entry in self.entries {
            handlers = entry(bus.clone(), handlers);
        }
        handlers
    }

    /// Subscribes the responders as consumer group `group` on `bus`, its
    /// messages [`crate::Durability::Transient`]: a request outlives its
    /// requester's timeout by nothing. Use a group of its own (e.g.
    /// `<service>-requests`) so requests never wait behind a backlog of
    /// events.
    pub async fn subscribe(
        self,
        bus: &Arc<dyn EventBus>,
        group: impl Into<String>,
    ) -> Result<(), SubscribeError> {
        let handlers = self.into_handlers(bus, Handlers::new());
        bus.subscribe(Subscription::new(group, handlers).transient())
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::{Deserialize, Serialize};

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Ask {
        n: u32,
    }
    impl IntegrationEvent for Ask {
        const EVENT_TYPE: &'static str = "test.ask.v1";
    }
    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Answer {
        n: u32,
    }
    impl IntegrationEvent for Answer {
        const EVENT_TYPE: &'static str = "test.answer.v1";
    }

    #[test]
    fn deadline_and_expiry() {
        let mut env = Envelope::for_event(&Ask { n: 1 }).unwrap();
        assert!(!is_expired(&env), "no deadline never expires");
        set_deadline(&mut env, Duration::from_secs(60));
        assert!(!is_expired(&env));
        let mut old = Envelope::for_event(&Ask { n: 1 }).unwrap();
        old.headers.insert(DEADLINE_HEADER.into(), "1000".into());
        assert!(is_expired(&old));
    }

    #[test]
    fn responses_and_failures_round_trip() {
        let request = Envelope::for_event(&Ask { n: 2 })
            .unwrap()
            .with_correlation_id("c-9");
        let reply = response_envelope(&request, &Answer { n: 4 }).unwrap();
        assert_eq!(
            reply.headers.get(IN_REPLY_TO_HEADER),
            Some(&request.message_id.to_string())
        );
        assert_eq!(reply.correlation_id.as_deref(), Some("c-9"));
        assert_eq!(
            decode_response::<Answer>(Ask::EVENT_TYPE, &reply).unwrap(),
            Answer { n: 4 }
        );
        let failed = failure_envelope(&request, &HandlerError::permanent("no stock"));
        match decode_response::<Answer>(Ask::EVENT_TYPE, &failed) {
            Err(RequestError::Failed { kind, reason, .. }) => {
                assert_eq!(kind, "permanent");
                assert_eq!(reason, "no stock");
            }
            other => panic!("expected Failed, got {other:?}"),
        }
        // A response of the wrong type is a decode error, not a panic.
        let wrong = response_envelope(&request, &Ask { n: 1 }).unwrap();
        assert!(matches!(
            decode_response::<Answer>(Ask::EVENT_TYPE, &wrong),
            Err(RequestError::Decode(_))
        ));
    }

    #[tokio::test]
    async fn pending_requests_get_their_answer_once_and_fail_on_close() {
        let pending = PendingRequests::new();
        let id = Uuid::new_v4();
        let (rx, guard) = pending.wait_for(id).unwrap().unwrap();
        assert!(matches!(
            pending.wait_for(id),
            Err(RequestError::Publish(PublishError::Rejected { .. }))
        ));
        let reply = Envelope::new("t.answer.v1", "application/json", b"{}".to_vec());
        assert_eq!(pending.resolve(id, reply.clone()), Some(true));
        assert_eq!(rx.await.unwrap().unwrap(), reply);
        assert_eq!(pending.resolve(id, reply.clone()), Some(false), "duplicate");
        drop(guard);
        assert_eq!(pending.waiting(), 0);

        // A requester that gives up leaves nothing behind.
        let (_rx, guard) = pending.wait_for(Uuid::new_v4()).unwrap().unwrap();
        assert_eq!(pending.waiting(), 1);
        drop(guard);
        assert_eq!(pending.waiting(), 0);

        let (rx, _guard) = pending.wait_for(Uuid::new_v4()).unwrap().unwrap();
        assert_eq!(pending.close(|| RequestError::ShutDown), 1);
        assert!(matches!(rx.await.unwrap(), Err(RequestError::ShutDown)));
        assert!(!pending.is_open());
        assert!(pending.wait_for(Uuid::new_v4()).unwrap().is_none());
        assert_eq!(pending.resolve(id, reply), None);
    }

    #[test]
    fn unroutable_request_means_no_responder() {
        let err = RequestError::from_publish(
            "test.ask.v1",
            PublishError::Unroutable {
                message_id: uuid::Uuid::nil(),
                event_type: "test.ask.v1".into(),
            },
        );
        assert!(matches!(err, RequestError::NoResponder { .. }));
        assert!(err.is_transient());
    }
}
