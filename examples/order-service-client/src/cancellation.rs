//! The cancellation contract between the order service (which runs the
//! cancellation saga) and the shipping service. The shipping service
//! answers with the events of `shipping_service_client::cancellation`.
//!
//! Both messages may arrive more than once (re-sent after a timeout,
//! redelivered by the broker): the shipping service handles them
//! idempotently per order.

use messaging_abstractions::IntegrationEvent;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

/// The customer cancelled the order: shipping should take its units out of
/// the packages not yet sent, or refuse when some were sent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct OrderCancellationRequested {
    /// The order.
    pub order_id: Uuid,
    /// 1 for the first request, +1 per re-send after a timeout.
    pub attempt: u32,
    /// When the customer asked (RFC 3339).
    #[serde(with = "time::serde::rfc3339")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub requested_at: OffsetDateTime,
}

impl IntegrationEvent for OrderCancellationRequested {
    const EVENT_TYPE: &'static str = "order.cancellation_requested.v1";

    /// Messages of one order keep their order.
    fn partition_key(&self) -> Option<String> {
        Some(self.order_id.to_string())
    }
}

/// The order service gave up waiting for shipping's answer: the order stays
/// (`cancellation_refused`), so shipping must put back whatever it released
/// for it, and refuse a cancellation request of this order arriving late.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct OrderCancellationWithdrawn {
    /// The order.
    pub order_id: Uuid,
    /// Why the cancellation was given up.
    pub reason: String,
}

impl IntegrationEvent for OrderCancellationWithdrawn {
    const EVENT_TYPE: &'static str = "order.cancellation_withdrawn.v1";

    fn partition_key(&self) -> Option<String> {
        Some(self.order_id.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use messaging_abstractions::Envelope;

    #[test]
    fn wire_format_is_stable() {
        let requested = OrderCancellationRequested {
            order_id: Uuid::nil(),
            attempt: 2,
            requested_at: OffsetDateTime::from_unix_timestamp(0).unwrap(),
        };
        let envelope = Envelope::for_event(&requested).unwrap();
        assert_eq!(envelope.event_type, "order.cancellation_requested.v1");
        assert_eq!(
            serde_json::from_slice::<serde_json::Value>(&envelope.payload).unwrap(),
            serde_json::json!({"order_id": "00000000-0000-0000-0000-000000000000",
                               "attempt": 2, "requested_at": "1970-01-01T00:00:00Z"})
        );
        let withdrawn = OrderCancellationWithdrawn {
            order_id: Uuid::nil(),
            reason: "no answer".into(),
        };
        let envelope = Envelope::for_event(&withdrawn).unwrap();
        assert_eq!(envelope.event_type, "order.cancellation_withdrawn.v1");
        assert_eq!(
            envelope.decode::<OrderCancellationWithdrawn>().unwrap(),
            withdrawn
        );
    }
}
