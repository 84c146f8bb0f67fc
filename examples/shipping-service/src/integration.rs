//! Translation between the domain and the contracts it meets: the
//! `OrderCompleted` event it consumes and its own HTTP DTOs. The only place
//! that knows both sides.

use chassis_domain::{DomainError, Entity, FieldError};
use order_service_client::events::OrderCompleted;
use shipping_service_client::dto;

use crate::domain::{
    Address, Dimensions, InvalidAddress, ItemToPack, OrderToPack, Package, PackageStatus, Shipment,
    TrackingStatus,
};

/// The order to pack from the event. An event whose destination is invalid
/// is refused (422-like, not retryable) naming every invalid field
/// (`destination.city`).
pub fn order_to_pack(event: &OrderCompleted) -> Result<OrderToPack, DomainError> {
    let d = &event.destination;
    let destination = Address::new(&d.name, &d.street, &d.city, &d.postal_code, &d.country)
        .map_err(|errors| invalid("destination.", errors))?;
    Ok(OrderToPack {
        order_id: event.order_id,
        destination,
        items: event
            .items
            .iter()
            .map(|i| ItemToPack {
                sku: i.sku.clone(),
                quantity: i.quantity,
                weight_grams: i.weight_grams,
                dimensions: Dimensions::new(i.length_mm, i.width_mm, i.height_mm),
            })
            .collect(),
    })
}

/// The address from a request body; a validation error names each field.
pub fn address(d: &dto::Destination) -> Result<Address, DomainError> {
    Address::new(&d.name, &d.street, &d.city, &d.postal_code, &d.country)
        .map_err(|errors| invalid("", errors))
}

fn invalid(prefix: &str, errors: Vec<InvalidAddress>) -> DomainError {
    DomainError::validation(
        errors
            .into_iter()
            .map(|e| FieldError::new(format!("{prefix}{}", e.field), e.message)),
    )
}

fn destination(a: &Address) -> dto::Destination {
    dto::Destination {
        name: a.name().to_owned(),
        street: a.street().to_owned(),
        city: a.city().to_owned(),
        postal_code: a.postal_code().to_owned(),
        country: a.country().to_owned(),
    }
}

fn status(s: PackageStatus) -> dto::PackageStatus {
    match s {
        PackageStatus::Open => dto::PackageStatus::Open,
        PackageStatus::Sent => dto::PackageStatus::Sent,
    }
}

/// The package as the API shows it.
pub fn package_view(p: &Package) -> dto::PackageView {
    dto::PackageView {
        id: *p.id(),
        status: status(p.status()),
        destination: destination(p.destination()),
        transport_provider: p.transport_provider().name().to_owned(),
        total_weight_grams: p.total_weight_grams(),
        max_weight_grams: p.transport_provider().max_weight_grams(),
        items: p
            .items()
            .iter()
            .map(|i| dto::PackageItem {
                order_id: i.order_id,
                sku: i.sku.clone(),
                quantity: i.quantity,
                weight_grams: i.weight_grams,
            })
            .collect(),
        tracking_id: p.tracking_id().map(str::to_owned),
    }
}

/// A tracking status from the API.
pub fn tracking_status(s: dto::TrackingStatus) -> TrackingStatus {
    match s {
        dto::TrackingStatus::HandedOver => TrackingStatus::HandedOver,
        dto::TrackingStatus::InTransit => TrackingStatus::InTransit,
        dto::TrackingStatus::OutForDelivery => TrackingStatus::OutForDelivery,
        dto::TrackingStatus::Delivered => TrackingStatus::Delivered,
        dto::TrackingStatus::DeliveryFailed => TrackingStatus::DeliveryFailed,
    }
}

fn tracking_status_view(s: TrackingStatus) -> dto::TrackingStatus {
    match s {
        TrackingStatus::HandedOver => dto::TrackingStatus::HandedOver,
        TrackingStatus::InTransit => dto::TrackingStatus::InTransit,
        TrackingStatus::OutForDelivery => dto::TrackingStatus::OutForDelivery,
        TrackingStatus::Delivered => dto::TrackingStatus::Delivered,
        TrackingStatus::DeliveryFailed => dto::TrackingStatus::DeliveryFailed,
    }
}

/// The package's tracking as the API shows it.
pub fn tracking_view(p: &Package) -> dto::Tracking {
    dto::Tracking {
        package_id: *p.id(),
        status: status(p.status()),
        tracking_id: p.tracking_id().map(str::to_owned),
        events: p
            .tracking()
            .iter()
            .map(|e| dto::TrackingEvent {
                status: tracking_status_view(e.status),
                description: e.description.clone(),
                at: e.at,
            })
            .collect(),
    }
}

/// How an order was packed, as the API shows it.
pub fn shipment_view(s: &Shipment) -> dto::ShipmentView {
    dto::ShipmentView {
        order_id: s.order_id(),
        packages: s.packages().to_vec(),
        unshippable: s
            .unshippable()
            .iter()
            .map(|u| dto::UnshippableItem {
                sku: u.sku.clone(),
                quantity: u.quantity,
                reason: u.reason.to_string(),
            })
            .collect(),
        packed_at: s.packed_at(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Packing, ShippingConfig, TransportProviders, pack};
    use order_service_client::events::{Destination, ItemToShip};
    use time::OffsetDateTime;
    use uuid::Uuid;

    fn event(city: &str) -> OrderCompleted {
        OrderCompleted {
            order_id: Uuid::now_v7(),
            destination: Destination {
                name: "Ada".into(),
                street: "1 Main St".into(),
                city: city.into(),
                postal_code: "N1".into(),
                country: "GB".into(),
            },
            items: vec![ItemToShip {
                sku: "A".into(),
                quantity: 2,
                weight_grams: 700,
                length_mm: 10,
                width_mm: 20,
                height_mm: 30,
            }],
            completed_at: OffsetDateTime::UNIX_EPOCH,
        }
    }

    #[test]
    fn an_event_is_packed_and_shown_in_the_contract_shape() {
        let e = event("London");
        let order = order_to_pack(&e).unwrap();
        let providers = TransportProviders::from_config(&ShippingConfig::default()).unwrap();
        let Packing::Packed(packed) =
            pack(&order, None, vec![], &providers, OffsetDateTime::UNIX_EPOCH)
        else {
            panic!("expected the order to be packed");
        };
        let json = serde_json::to_value(package_view(&packed.opened[0])).unwrap();
        assert_eq!(json["status"], "open");
        assert_eq!(json["transport_provider"], "parcel-post");
        assert_eq!(json["total_weight_grams"], 1400);
        assert_eq!(json["destination"]["city"], "London");
        assert_eq!(
            json["items"],
            serde_json::json!([{"order_id": e.order_id, "sku": "A", "quantity": 2, "weight_grams": 700}])
        );
        let tracking = serde_json::to_value(tracking_view(&packed.opened[0])).unwrap();
        assert_eq!(tracking["events"], serde_json::json!([]));
        assert_eq!(
            shipment_view(&packed.shipment).packages,
            [*packed.opened[0].id()]
        );
    }

    #[test]
    fn an_invalid_destination_names_the_fields() {
        let error = order_to_pack(&event(" ")).unwrap_err();
        assert_eq!(error.field_errors()[0].field, "destination.city");
        assert!(!error.is_retryable());
    }
}
