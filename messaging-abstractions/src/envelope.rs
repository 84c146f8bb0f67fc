use std::collections::BTreeMap;
use std::time::SystemTime;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::{DecodeError, EncodeError};

/// The content type of JSON payloads, the default encoding.
pub const JSON_CONTENT_TYPE: &str = "application/json";

/// A typed integration event: the contract between services.
///
/// `EVENT_TYPE` is the stable name on the wire, including a version suffix
/// (`"order.completed.v1"`). Change the payload incompatibly → new version.
pub trait IntegrationEvent: Serialize + DeserializeOwned + Send + Sync + 'static {
    /// Stable name and version, e.g. `"order.completed.v1"`.
    const EVENT_TYPE: &'static str;

    /// The key whose messages must keep their order (usually the aggregate
    /// id). `None` means no ordering promise.
    fn partition_key(&self) -> Option<String> {
        None
    }
}

/// The context a message is created in: who asked (correlation), what caused
/// it (causation) and the W3C trace context. The host sets it for every HTTP
/// request and every handled message; [`Envelope::for_event`] reads it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MessageContext {
    /// Correlation id shared by everything one request sets off.
    pub correlation_id: Option<String>,
    /// Id of the message that caused this work, if a message did.
    pub causation_id: Option<String>,
    /// W3C `traceparent`.
    pub traceparent: Option<String>,
    /// W3C `tracestate`.
    pub tracestate: Option<String>,
}

tokio::task_local! {
    static CURRENT: MessageContext;
}

impl MessageContext {
    /// The context of the request or message being handled on this task (the
    /// host sets it for every HTTP request and every handled message); empty
    /// outside one. It follows the task, not tasks it spawns: capture it
    /// before `tokio::spawn` and run the spawned work in
    /// [`MessageContext::scope`].
    pub fn current() -> MessageContext {
        CURRENT.try_with(Clone::clone).unwrap_or_default()
    }

    /// Reads the current context without cloning it; `None` outside one.
    pub fn with_current<R>(f: impl FnOnce(&MessageContext) -> R) -> Option<R> {
        CURRENT.try_with(f).ok()
    }

    /// Runs `future` with this context as the current one.
    pub fn scope<F: Future>(self, future: F) -> tokio::task::futures::TaskLocalFuture<Self, F> {
        CURRENT.scope(self, future)
    }

    /// Runs synchronous `f` with this context as the current one.
    pub fn sync_scope<R>(self, f: impl FnOnce() -> R) -> R {
        CURRENT.sync_scope(self, f)
    }
}

/// A message on the bus: metadata plus the encoded payload.
///
/// Every field survives every provider unchanged (the conformance suite checks
/// it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    /// Unique id of this message; the inbox de-duplicates on it.
    pub message_id: Uuid,
    /// The event type name with version, e.g. `order.completed.v1`.
    pub event_type: String,
    /// Correlation id of the request that set this off.
    pub correlation_id: Option<String>,
    /// Id of the message that caused this one.
    pub causation_id: Option<String>,
    /// W3C `traceparent` of the producer.
    pub traceparent: Option<String>,
    /// W3C `tracestate` of the producer.
    pub tracestate: Option<String>,
    /// When the message was created.
    pub timestamp: SystemTime,
    /// Encoding of `payload` (`application/json` by default).
    pub content_type: String,
    /// Messages with the same key keep their order where the provider promises it.
    pub partition_key: Option<String>,
    /// Free headers (string to string).
    pub headers: BTreeMap<String, String>,
    /// The encoded event.
    pub payload: Vec<u8>,
}

impl Envelope {
    /// An envelope for a raw payload. Prefer [`Envelope::for_event`].
    pub fn new(
        event_type: impl Into<String>,
        content_type: impl Into<String>,
        payload: Vec<u8>,
    ) -> Self {
        Self {
            message_id: Uuid::now_v7(),
            event_type: event_type.into(),
            correlation_id: None,
            causation_id: None,
            traceparent: None,
            tracestate: None,
            timestamp: SystemTime::now(),
            content_type: content_type.into(),
            partition_key: None,
            headers: BTreeMap::new(),
            payload,
        }
    }

    /// Encodes `event` as JSON in a new envelope with a fresh message id.
    pub fn for_event<E: IntegrationEvent>(event: &E) -> Result<Self, EncodeError> {
        let payload = serde_json::to_vec(event).map_err(|source| EncodeError {
            event_type: E::EVENT_TYPE.to_owned(),
            source,
        })?;
        let mut envelope = Self::new(E::EVENT_TYPE, JSON_CONTENT_TYPE, payload);
        envelope.partition_key = event.partition_key();
        Ok(envelope)
    }

    /// Fills correlation, causation and trace context from `context` (fields
    /// already set on the envelope win).
    pub fn with_context(mut self, context: &MessageContext) -> Self {
        fn fill(slot: &mut Option<String>, value: &Option<String>) {
            if slot.is_none() {
                slot.clone_from(value);
            }
        }
        fill(&mut self.correlation_id, &context.correlation_id);
        fill(&mut self.causation_id, &context.causation_id);
        fill(&mut self.traceparent, &context.traceparent);
        fill(&mut self.tracestate, &context.tracestate);
        self
    }

    /// Sets the correlation id.
    pub fn with_correlation_id(mut self, id: impl Into<String>) -> Self {
        self.correlation_id = Some(id.into());
        self
    }

    /// Sets a free header.
    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.insert(name.into(), value.into());
        self
    }

    /// The context a handler of this message works in: same correlation id,
    /// this message as the cause, same trace.
    pub fn context_for_handler(&self) -> MessageContext {
        MessageContext {
            correlation_id: self
                .correlation_id
                .clone()
                .or_else(|| Some(self.message_id.to_string())),
            causation_id: Some(self.message_id.to_string()),
            traceparent: self.traceparent.clone(),
            tracestate: self.tracestate.clone(),
        }
    }

    /// Decodes the payload as `E`, checking the event type and content type.
    pub fn decode<E: IntegrationEvent>(&self) -> Result<E, DecodeError> {
        if self.event_type != E::EVENT_TYPE {
            return Err(DecodeError::WrongType {
                expected: E::EVENT_TYPE.to_owned(),
                actual: self.event_type.clone(),
            });
        }
        if !self.content_type.starts_with(JSON_CONTENT_TYPE) {
            return Err(DecodeError::ContentType(self.content_type.clone()));
        }
        serde_json::from_slice(&self.payload).map_err(|e| DecodeError::Payload {
            event_type: self.event_type.clone(),
            reason: e.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Ping {
        n: u32,
    }
    impl IntegrationEvent for Ping {
        const EVENT_TYPE: &'static str = "test.ping.v1";
        fn partition_key(&self) -> Option<String> {
            Some(self.n.to_string())
        }
    }

    #[test]
    fn round_trip_and_context() {
        let ctx = MessageContext {
            correlation_id: Some("c-1".into()),
            traceparent: Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".into()),
            ..Default::default()
        };
        let env = Envelope::for_event(&Ping { n: 7 })
            .unwrap()
            .with_context(&ctx);
        assert_eq!(env.event_type, "test.ping.v1");
        assert_eq!(env.partition_key.as_deref(), Some("7"));
        assert_eq!(env.correlation_id.as_deref(), Some("c-1"));
        assert_eq!(env.decode::<Ping>().unwrap(), Ping { n: 7 });
        let child = env.context_for_handler();
        assert_eq!(child.correlation_id.as_deref(), Some("c-1"));
        assert_eq!(child.causation_id, Some(env.message_id.to_string()));
    }

    #[test]
    fn decode_errors_are_precise() {
        let mut env = Envelope::for_event(&Ping { n: 1 }).unwrap();
        env.payload = b"{not json".to_vec();
        assert!(matches!(
            env.decode::<Ping>(),
            Err(DecodeError::Payload { .. })
        ));
        env.event_type = "other.v1".into();
        assert!(matches!(
            env.decode::<Ping>(),
            Err(DecodeError::WrongType { .. })
        ));
    }
}
