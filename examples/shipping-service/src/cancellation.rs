//! Shipping's side of an order cancellation (the order service runs the
//! saga, see `order_service::cancellation`):
//!
//! - `order.cancellation_requested.v1`: the order's units leave its open
//!   packages (packages left empty are discarded) and
//!   `shipping.shipment_cancelled.v1` answers; if one of its packages was
//!   sent, nothing changes and `shipping.shipment_cancellation_refused.v1`
//!   answers. The decision is recorded on the order's shipment, so a
//!   re-sent request gets the same answer and changes nothing again.
//! - `order.cancellation_withdrawn.v1` (the order service gave up waiting):
//!   released units are packed again; later requests are refused.
//!
//! Both run through the inbox (a redelivered message has no effect), and the
//! answer goes through the outbox in the same unit of work. A request for an
//! order not packed yet fails as retryable: the bus tries again after the
//! packing, and the saga re-sends after its timeout.

use std::sync::Arc;

use async_trait::async_trait;
use chassis_domain::messaging::{Delivery, Handlers};
use chassis_domain::{DomainError, Entity, Envelope, IntegrationEvent, UnitOfWork};
use chassis_storage::{Inbox, InboxHandler};
use order_service_client::cancellation::{OrderCancellationRequested, OrderCancellationWithdrawn};
use shipping_service_client::cancellation::{ShipmentCancellationRefused, ShipmentCancelled};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::domain::cancellation::{ShipmentCancellation, cancel, to_restore};
use crate::domain::{Packing, Shipment, TransportProviders, pack};
use crate::tables::{Packages, Shipments};

/// Adds the cancellation handlers (through `inbox`) to `handlers`.
pub fn handlers(inbox: &Inbox, providers: Arc<TransportProviders>, handlers: Handlers) -> Handlers {
    handlers
        .on::<OrderCancellationRequested>(inbox.handler(CancelShipment))
        .on::<OrderCancellationWithdrawn>(inbox.handler(WithdrawCancellation { providers }))
}

async fn answer<E: IntegrationEvent>(
    uow: &mut dyn UnitOfWork,
    order_id: Uuid,
    event: &E,
) -> Result<(), DomainError> {
    uow.enqueue(&order_id.to_string(), vec![Envelope::for_event(event)?])
        .await
}

async fn shipment(uow: &mut dyn UnitOfWork, order_id: Uuid) -> Result<Shipment, DomainError> {
    match Shipments.get(uow, order_id).await? {
        Some(shipment) => Ok(shipment),
        // Retryable: the order's `order.completed.v1` may not have been
        // handled yet.
        None => Err(DomainError::unavailable(format!(
            "order {order_id} has not been packed (yet)"
        ))),
    }
}

/// Answers a decision already taken (a re-sent request).
async fn answer_again(
    uow: &mut dyn UnitOfWork,
    order_id: Uuid,
    decided: &ShipmentCancellation,
) -> Result<(), DomainError> {
    match decided {
        ShipmentCancellation::Cancelled {
            discarded_packages, ..
        } => {
            let event = ShipmentCancelled {
                order_id,
                released_units: decided.released_units(),
                discarded_packages: discarded_packages.clone(),
            };
            answer(uow, order_id, &event).await
        }
        ShipmentCancellation::Refused {
            reason,
            sent_packages,
            ..
        } => {
            let event = ShipmentCancellationRefused {
                order_id,
                reason: reason.clone(),
                sent_packages: sent_packages.clone(),
            };
            answer(uow, order_id, &event).await
        }
        ShipmentCancellation::Withdrawn { .. } => {
            let event = ShipmentCancellationRefused {
                order_id,
                reason: "the cancellation was withdrawn by the order service".into(),
                sent_packages: Vec::new(),
            };
            answer(uow, order_id, &event).await
        }
    }
}

/// Handles `order.cancellation_requested.v1`.
#[derive(Debug, Clone, Copy, Default)]
pub struct CancelShipment;

#[async_trait]
impl InboxHandler<OrderCancellationRequested> for CancelShipment {
    async fn handle(
        &self,
        event: OrderCancellationRequested,
        _delivery: &Delivery,
        uow: &mut dyn UnitOfWork,
    ) -> Result<(), DomainError> {
        let order_id = event.order_id;
        let (shipments, packages) = (Shipments, Packages);
        let mut shipment = shipment(uow, order_id).await?;
        if let Some(decided) = shipment.cancellation() {
            tracing::info!(%order_id, attempt = event.attempt, "cancellation already decided; answered again");
            return answer_again(uow, order_id, &decided.clone()).await;
        }
        let held = packages.of_order(uow, order_id).await?;
        let decision = cancel(order_id, held, OffsetDateTime::now_utc());
        for mut package in decision.changed {
            packages.update(uow, &mut package).await?;
        }
        let mut discarded = Vec::new();
        for mut package in decision.emptied {
            discarded.push(*package.id());
            packages.delete(uow, &mut package).await?;
        }
        shipment.record_cancellation(decision.outcome.clone(), &discarded, &[]);
        shipments.update(uow, &mut shipment).await?;
        tracing::info!(%order_id, outcome = ?decision.outcome, "order cancellation decided");
        answer_again(uow, order_id, &decision.outcome).await
    }
}

/// Handles `order.cancellation_withdrawn.v1`.
#[derive(Debug, Clone)]
pub struct WithdrawCancellation {
    providers: Arc<TransportProviders>,
}

#[async_trait]
impl InboxHandler<OrderCancellationWithdrawn> for WithdrawCancellation {
    async fn handle(
        &self,
        event: OrderCancellationWithdrawn,
        _delivery: &Delivery,
        uow: &mut dyn UnitOfWork,
    ) -> Result<(), DomainError> {
        let order_id = event.order_id;
        let now = OffsetDateTime::now_utc();
        let (shipments, packages) = (Shipments, Packages);
        let mut shipment = shipment(uow, order_id).await?;
        if matches!(
            shipment.cancellation(),
            Some(ShipmentCancellation::Withdrawn { .. })
        ) {
            return Ok(());
        }
        let mut added = Vec::new();
        let mut restored_units = 0;
        if let Some(order) = to_restore(&shipment) {
            let open = packages.open_for(uow, &order).await?;
            // Packed as a new order (no shipment yet), into the place's
            // open packages first.
            if let Packing::Packed(packed) = pack(&order, None, open, &self.providers, now) {
                for mut package in packed.opened {
                    added.push(*package.id());
                    packages.add(uow, &mut package).await?;
                }
                for mut package in packed.filled {
                    added.push(*package.id());
                    packages.update(uow, &mut package).await?;
                }
                restored_units = order
                    .items
                    .iter()
                    .map(|i| u64::from(i.quantity))
                    .sum::<u64>()
                    - packed
                        .shipment
                        .unshippable()
                        .iter()
                        .map(|u| u64::from(u.quantity))
                        .sum::<u64>();
            }
        }
        shipment.record_cancellation(
            ShipmentCancellation::Withdrawn {
                restored_units,
                at: now,
            },
            &[],
            &added,
        );
        shipments.update(uow, &mut shipment).await?;
        tracing::info!(%order_id, restored_units, reason = %event.reason, "order cancellation withdrawn");
        Ok(())
    }
}
