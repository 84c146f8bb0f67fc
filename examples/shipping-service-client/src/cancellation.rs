//! Shipping's answers to an order cancellation
//! (`order_service_client::cancellation::OrderCancellationRequested`). The
//! same request always gets the same answer, however often it arrives.

use messaging_abstractions::IntegrationEvent;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The order's units were taken out of its packages (none had been sent);
/// packages left empty were discarded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ShipmentCancelled {
    /// The order.
    pub order_id: Uuid,
    /// Units taken out of open packages.
    pub released_units: u64,
    /// Packages discarded because nothing was left in them.
    pub discarded_packages: Vec<Uuid>,
}

impl IntegrationEvent for ShipmentCancelled {
    const EVENT_TYPE: &'static str = "shipping.shipment_cancelled.v1";

    /// Messages of one order keep their order.
    fn partition_key(&self) -> Option<String> {
        Some(self.order_id.to_string())
    }
}

/// The order cannot be cancelled any more: some of its packages were sent
/// (or the cancellation had been withdrawn). Nothing was changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ShipmentCancellationRefused {
    /// The order.
    pub order_id: Uuid,
    /// Why, for people.
    pub reason: String,
    /// The order's packages already sent.
    pub sent_packages: Vec<Uuid>,
}

impl IntegrationEvent for ShipmentCancellationRefused {
    const EVENT_TYPE: &'static str = "shipping.shipment_cancellation_refused.v1";

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
        let refused = ShipmentCancellationRefused {
            order_id: Uuid::nil(),
            reason: "sent".into(),
            sent_packages: vec![Uuid::nil()],
        };
        let envelope = Envelope::for_event(&refused).unwrap();
        assert_eq!(
            envelope.event_type,
            "shipping.shipment_cancellation_refused.v1"
        );
        assert_eq!(
            serde_json::from_slice::<serde_json::Value>(&envelope.payload).unwrap(),
            serde_json::json!({"order_id": "00000000-0000-0000-0000-000000000000",
                               "reason": "sent",
                               "sent_packages": ["00000000-0000-0000-0000-000000000000"]})
        );
        let cancelled = ShipmentCancelled {
            order_id: Uuid::nil(),
            released_units: 3,
            discarded_packages: vec![],
        };
        let envelope = Envelope::for_event(&cancelled).unwrap();
        assert_eq!(envelope.event_type, "shipping.shipment_cancelled.v1");
        assert_eq!(envelope.decode::<ShipmentCancelled>().unwrap(), cancelled);
    }
}
