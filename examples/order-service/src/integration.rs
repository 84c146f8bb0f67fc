//! Translation between the domain and the HTTP DTOs of the published
//! contract. The only place that knows both.

use chassis_domain::Entity;
use order_service_client::dto;

use crate::domain::{
    Destination, DestinationInput, ItemInput, Order, OrderLine, OrderStatus, PlaceOrder,
};

/// The `PlaceOrder` command from the request body.
pub fn place_order_command(request: dto::PlaceOrderRequest) -> PlaceOrder {
    PlaceOrder {
        customer_id: request.customer_id,
        destination: destination_input(request.destination),
        items: request
            .items
            .into_iter()
            .map(|i| ItemInput {
                sku: i.sku,
                name: i.name,
                unit_price_cents: i.unit_price_cents,
                quantity: i.quantity,
                weight_grams: i.weight_grams,
                length_mm: i.length_mm,
                width_mm: i.width_mm,
                height_mm: i.height_mm,
            })
            .collect(),
    }
}

/// The destination of a request body (order or quote) as the domain takes it.
pub fn destination_input(d: dto::Destination) -> DestinationInput {
    DestinationInput {
        name: d.name,
        street: d.street,
        city: d.city,
        postal_code: d.postal_code,
        country: d.country,
    }
}

fn destination(d: &Destination) -> dto::Destination {
    dto::Destination {
        name: d.name.clone(),
        street: d.street.clone(),
        city: d.city.clone(),
        postal_code: d.postal_code.clone(),
        country: d.country.clone(),
    }
}

fn item(line: &OrderLine) -> dto::OrderItem {
    dto::OrderItem {
        sku: line.sku.clone(),
        name: line.name.clone(),
        unit_price_cents: i64::try_from(line.unit_price_cents).unwrap_or(i64::MAX),
        quantity: i64::from(line.quantity),
        weight_grams: i64::from(line.weight_grams),
        length_mm: i64::from(line.dimensions.length_mm),
        width_mm: i64::from(line.dimensions.width_mm),
        height_mm: i64::from(line.dimensions.height_mm),
    }
}

/// The order as the API shows it.
pub fn order_view(order: &Order) -> dto::OrderView {
    dto::OrderView {
        id: *order.id(),
        customer_id: order.customer_id().to_owned(),
        status: match order.status() {
            OrderStatus::Placed => dto::OrderStatus::Placed,
            OrderStatus::Completed => dto::OrderStatus::Completed,
            OrderStatus::Cancelling => dto::OrderStatus::Cancelling,
            OrderStatus::Cancelled => dto::OrderStatus::Cancelled,
            OrderStatus::CancellationRefused => dto::OrderStatus::CancellationRefused,
        },
        destination: destination(order.destination()),
        items: order.items().iter().map(item).collect(),
        total_cents: order.total_cents(),
        placed_at: order.placed_at(),
        completed_at: order.completed_at(),
        cancellation: order.cancellation().map(|c| dto::CancellationView {
            requested_at: c.requested_at,
            finished_at: c.finished_at,
            reason: c.reason.clone(),
        }),
        shipping_quote: order.shipping_quote().map(crate::quote::quote_view),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::OffsetDateTime;
    use uuid::Uuid;

    fn request() -> dto::PlaceOrderRequest {
        serde_json::from_value(serde_json::json!({
            "customer_id": "c-1",
            "destination": {"name": "Ada", "street": "1 Main St", "city": "London",
                            "postal_code": "N1", "country": "GB"},
            "items": [{"sku": "A", "name": "Lamp", "unit_price_cents": 4999, "quantity": 2,
                       "weight_grams": 1200, "length_mm": 300, "width_mm": 200, "height_mm": 150}]
        }))
        .unwrap()
    }

    #[test]
    fn the_view_mirrors_the_request() {
        let now = OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap();
        let order = Order::place(Uuid::nil(), place_order_command(request()), now).unwrap();
        let view = order_view(&order);
        assert_eq!(view.items, request().items);
        assert_eq!(view.destination, request().destination);
        assert_eq!(view.total_cents, 9998);
        assert_eq!(view.status, dto::OrderStatus::Placed);
    }
}
