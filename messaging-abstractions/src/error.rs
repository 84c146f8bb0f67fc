use thiserror::Error;

/// An event could not be encoded.
#[derive(Debug, Error)]
#[error("cannot encode event `{event_type}`: {source}")]
pub struct EncodeError {
    /// The event type.
    pub event_type: String,
    /// The serializer's error.
    #[source]
    pub source: serde_json::Error,
}

/// A payload could not be decoded into the expected event.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum DecodeError {
    /// The envelope holds another event type.
    #[error("expected event type `{expected}`, got `{actual}`")]
    WrongType {
        /// What the handler handles.
        expected: String,
        /// What arrived.
        actual: String,
    },
    /// The content type is not one the decoder reads.
    #[error("unsupported content type `{0}`")]
    ContentType(String),
    /// The payload does not match the event's shape.
    #[error("cannot decode `{event_type}` payload: {reason}")]
    Payload {
        /// The event type.
        event_type: String,
        /// What the deserializer said.
        reason: String,
    },
}

/// A message was not accepted by the bus. Nothing was published unless the
/// variant says otherwise; the caller (or the outbox) may try again.
#[derive(Debug, Error)]
pub enum PublishError {
    /// The event could not be encoded.
    #[error(transparent)]
    Encode(#[from] EncodeError),
    /// The broker is not reachable (disconnected, or did not come back within
    /// the configured wait). Retry later.
    #[error("event bus unavailable: {0}")]
    Unavailable(String),
    /// The broker refused the message (negative confirm).
    #[error("message {message_id} rejected by the broker: {reason}")]
    Rejected {
        /// The refused message.
        message_id: uuid::Uuid,
        /// Why.
        reason: String,
    },
    /// The message could not be routed to any queue (`mandatory` returned it).
    #[error("message {message_id} of type `{event_type}` is unroutable")]
    Unroutable {
        /// The returned message.
        message_id: uuid::Uuid,
        /// Its type.
        event_type: String,
    },
    /// No confirm within the configured time.
    #[error("no publish confirm within {0:?}")]
    Timeout(std::time::Duration),
    /// The bus is shutting down and takes no new messages.
    #[error("event bus is shut down")]
    ShutDown,
}

impl PublishError {
    /// Whether trying the same publish again later may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            Self::Unavailable(_) | Self::Timeout(_) | Self::Rejected { .. }
        )
    }
}

/// A subscription could not be set up.
#[derive(Debug, Error)]
pub enum SubscribeError {
    /// The subscription is invalid (empty group, no handler, ...).
    #[error("invalid subscription: {0}")]
    Invalid(String),
    /// The broker is not reachable.
    #[error("event bus unavailable: {0}")]
    Unavailable(String),
    /// The bus is shutting down.
    #[error("event bus is shut down")]
    ShutDown,
    /// The subscription handles event types the service does not declare
    /// (its AsyncAPI document would not list them): a host refuses it.
    #[error(
        "group `{group}` has a handler for {}, which the service does not declare: add \
         `.subscribes::<E>()` for each such event (`.answers::<R>()` for a request it \
         answers, `.requests::<R>()` for a reply it awaits) to the host builder",
        quoted(.event_types)
    )]
    Undeclared {
        /// The consumer group.
        group: String,
        /// The undeclared event types.
        event_types: Vec<String>,
    },
}

/// `` `a`, `b` `` for an error message.
fn quoted(items: &[String]) -> String {
    items
        .iter()
        .map(|item| format!("`{item}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Shutdown did not complete cleanly.
#[derive(Debug, Error)]
pub enum ShutdownError {
    /// In-flight handlers did not finish within the deadline.
    #[error("{in_flight} handler(s) still running after {waited:?}")]
    Timeout {
        /// Handlers still running.
        in_flight: usize,
        /// How long shutdown waited.
        waited: std::time::Duration,
    },
    /// The provider failed to close its connection.
    #[error("closing the event bus failed: {0}")]
    Close(String),
}

impl ShutdownError {
    /// `Ok` when no handler is left running after a drain of `waited`, else
    /// [`ShutdownError::Timeout`].
    pub fn drained(in_flight: usize, waited: std::time::Duration) -> Result<(), Self> {
        if in_flight == 0 {
            Ok(())
        } else {
            Err(Self::Timeout { in_flight, waited })
        }
    }
}
