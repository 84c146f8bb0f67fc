//! The order aggregate: what a customer buys, for where, and whether the
//! order is complete (paid) so that shipping may start.

use chassis_domain::{Aggregate, Changes, DomainError, IndexEntry};
use order_service_client::events::{self, ItemToShip, OrderCompleted};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

use super::validation::Violations;

// The limits the HTTP schema states too (one definition, in the client crate).
pub use order_service_client::dto::limits::{MAX_ITEMS, MAX_QUANTITY};
use order_service_client::dto::limits::{MAX_MEASURE, MAX_SKU, MAX_TEXT};

/// What a customer asks for, not yet validated (the `PlaceOrder` command).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlaceOrder {
    /// Who orders.
    pub customer_id: String,
    /// Where the items go.
    pub destination: DestinationInput,
    /// The order lines.
    pub items: Vec<ItemInput>,
}

/// A destination as entered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DestinationInput {
    /// Recipient's name.
    pub name: String,
    /// Street and number.
    pub street: String,
    /// City.
    pub city: String,
    /// Postal code.
    pub postal_code: String,
    /// Country.
    pub country: String,
}

/// An order line as entered. Numbers are signed so that a negative value is
/// reported as a violation of this field rather than as a decoding error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ItemInput {
    /// Stock keeping unit.
    pub sku: String,
    /// Product name.
    pub name: String,
    /// Price of one unit in cents (≥ 0).
    pub unit_price_cents: i64,
    /// Units ordered (≥ 1).
    pub quantity: i64,
    /// Weight of one unit in grams (> 0).
    pub weight_grams: i64,
    /// Length of one unit in millimetres (> 0).
    pub length_mm: i64,
    /// Width of one unit in millimetres (> 0).
    pub width_mm: i64,
    /// Height of one unit in millimetres (> 0).
    pub height_mm: i64,
}

/// Where an order goes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Destination {
    /// Recipient's name.
    pub name: String,
    /// Street and number.
    pub street: String,
    /// City.
    pub city: String,
    /// Postal code.
    pub postal_code: String,
    /// Country.
    pub country: String,
}

/// Size of one unit, in millimetres.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dimensions {
    /// Length.
    pub length_mm: u32,
    /// Width.
    pub width_mm: u32,
    /// Height.
    pub height_mm: u32,
}

/// One line of an order: a product, its price and physical traits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderLine {
    /// Stock keeping unit, unique within the order.
    pub sku: String,
    /// Product name.
    pub name: String,
    /// Price of one unit in cents.
    pub unit_price_cents: u64,
    /// Units ordered.
    pub quantity: u32,
    /// Weight of one unit in grams.
    pub weight_grams: u32,
    /// Size of one unit.
    pub dimensions: Dimensions,
}

impl OrderLine {
    /// Price of the whole line in cents.
    pub fn total_cents(&self) -> u64 {
        self.unit_price_cents
            .saturating_mul(u64::from(self.quantity))
    }
}

/// Where an order stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OrderStatus {
    /// Accepted, not yet complete.
    Placed,
    /// Complete (paid): shipping may start.
    Completed,
    /// The customer asked to cancel; the cancellation saga waits for shipping.
    Cancelling,
    /// Cancelled: shipping released the order's units.
    Cancelled,
    /// The cancellation was refused (or given up); the order goes on.
    CancellationRefused,
}

impl OrderStatus {
    /// The name used in the API (`placed`, `completed`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Placed => "placed",
            Self::Completed => "completed",
            Self::Cancelling => "cancelling",
            Self::Cancelled => "cancelled",
            Self::CancellationRefused => "cancellation_refused",
        }
    }
}

/// What happened to an order (in-process domain events).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OrderEvent {
    /// The order was completed.
    Completed {
        /// The order.
        order_id: Uuid,
        /// When.
        at: OffsetDateTime,
    },
    /// The customer asked to cancel the order.
    CancellationRequested {
        /// The order.
        order_id: Uuid,
    },
    /// The order was cancelled.
    Cancelled {
        /// The order.
        order_id: Uuid,
    },
    /// The cancellation was refused; the order goes on.
    CancellationRefused {
        /// The order.
        order_id: Uuid,
        /// Why.
        reason: String,
    },
}

/// A cancellation of an order: when it was asked, when and how it ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cancellation {
    /// When the customer asked.
    #[serde(with = "time::serde::rfc3339")]
    pub requested_at: OffsetDateTime,
    /// When it ended (cancelled or refused).
    #[serde(with = "time::serde::rfc3339::option", default)]
    pub finished_at: Option<OffsetDateTime>,
    /// Why it was refused.
    #[serde(default)]
    pub reason: Option<String>,
}

/// The order aggregate. State changes only through its methods; the events
/// it raises wait in its [`Changes`] until the repository saves it (the
/// integration events then go to the outbox in the same transaction).
#[derive(Debug, Clone, Serialize, Deserialize, Aggregate)]
#[aggregate(collection = "orders", events = OrderEvent, index = index)]
pub struct Order {
    id: Uuid,
    customer_id: String,
    destination: Destination,
    items: Vec<OrderLine>,
    status: OrderStatus,
    #[serde(with = "time::serde::rfc3339")]
    placed_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option", default)]
    completed_at: Option<OffsetDateTime>,
    #[serde(default)]
    cancellation: Option<Cancellation>,
    /// Shipping's quote at placement, when it answered in time.
    #[serde(default)]
    shipping_quote: Option<super::quote::ShippingQuote>,
    #[serde(skip)]
    changes: Changes<OrderEvent>,
}

impl Order {
    /// Index entries (`AggregateRoot::index_entries`).
    fn index(&self) -> Vec<IndexEntry> {
        vec![
            IndexEntry {
                key: "customer_id".into(),
                value: self.customer_id.clone(),
            },
            IndexEntry {
                key: "status".into(),
                value: self.status.as_str().into(),
            },
        ]
    }
}

impl Order {
    /// Validates `command` and places the order. Every invalid field is
    /// reported with its path (`customer_id`, `destination.city`,
    /// `items[2].quantity`).
    pub fn place(id: Uuid, command: PlaceOrder, now: OffsetDateTime) -> Result<Self, DomainError> {
        let mut v = Violations::default();
        let customer_id = v.text("customer_id", &command.customer_id, MAX_TEXT);
        let destination = parse_destination(&mut v, &command.destination);
        if command.items.is_empty() {
            v.add("items", "must contain at least one item");
        } else if command.items.len() > MAX_ITEMS {
            v.add("items", format!("must contain at most {MAX_ITEMS} items"));
        }
        let mut items: Vec<OrderLine> = Vec::with_capacity(command.items.len());
        for (i, input) in command.items.iter().enumerate() {
            let line = parse_line(&mut v, &format!("items[{i}]"), input);
            if let Some(first) = items.iter().position(|l| l.sku == line.sku)
                && !line.sku.is_empty()
            {
                v.add(
                    format!("items[{i}].sku"),
                    format!("duplicates items[{first}].sku; order each SKU once"),
                );
            }
            items.push(line);
        }
        Ok(v.into_result(|| Self {
            id,
            customer_id,
            destination,
            items,
            status: OrderStatus::Placed,
            placed_at: now,
            completed_at: None,
            cancellation: None,
            shipping_quote: None,
            changes: Changes::default(),
        })?)
    }

    /// Completes the order (the customer has paid): raises
    /// [`OrderEvent::Completed`] and publishes [`OrderCompleted`] with what
    /// shipping needs. A second completion is a conflict (409).
    pub fn complete(&mut self, now: OffsetDateTime) -> Result<(), DomainError> {
        if self.status == OrderStatus::Completed {
            return Err(DomainError::conflict(format!(
                "order {} is already completed",
                self.id
            )));
        }
        self.status = OrderStatus::Completed;
        self.completed_at = Some(now);
        self.changes.raise(OrderEvent::Completed {
            order_id: self.id,
            at: now,
        });
        let event = self.completed_event(now);
        self.changes.publish(event);
        Ok(())
    }

    /// Starts cancelling a completed order (the cancellation saga then asks
    /// shipping). A 409 conflict when it is being cancelled, was cancelled,
    /// had its cancellation refused, or is not complete yet.
    pub fn request_cancellation(&mut self, now: OffsetDateTime) -> Result<(), DomainError> {
        let refusal = match self.status {
            OrderStatus::Completed => None,
            OrderStatus::Placed => Some("is not complete yet".to_owned()),
            OrderStatus::Cancelling => Some("is already being cancelled".to_owned()),
            OrderStatus::Cancelled => Some("is already cancelled".to_owned()),
            OrderStatus::CancellationRefused => Some(format!(
                "cannot be cancelled: {}",
                self.cancellation
                    .as_ref()
                    .and_then(|c| c.reason.as_deref())
                    .unwrap_or("its cancellation was refused")
            )),
        };
        if let Some(why) = refusal {
            return Err(DomainError::conflict(format!("order {} {why}", self.id)));
        }
        self.status = OrderStatus::Cancelling;
        self.cancellation = Some(Cancellation {
            requested_at: now,
            finished_at: None,
            reason: None,
        });
        self.changes
            .raise(OrderEvent::CancellationRequested { order_id: self.id });
        Ok(())
    }

    /// Shipping released the order's units: the order is cancelled.
    pub fn confirm_cancellation(&mut self, now: OffsetDateTime) -> Result<(), DomainError> {
        let cancellation = self.cancelling()?;
        cancellation.finished_at = Some(now);
        self.status = OrderStatus::Cancelled;
        self.changes
            .raise(OrderEvent::Cancelled { order_id: self.id });
        Ok(())
    }

    /// The compensation of [`request_cancellation`](Self::request_cancellation):
    /// the cancellation is refused (shipping sent packages, or did not
    /// answer) and the order goes on — it is complete, and shipping keeps
    /// its units; the status says `cancellation_refused` with the reason.
    pub fn refuse_cancellation(
        &mut self,
        reason: &str,
        now: OffsetDateTime,
    ) -> Result<(), DomainError> {
        let cancellation = self.cancelling()?;
        cancellation.finished_at = Some(now);
        cancellation.reason = Some(reason.to_owned());
        self.status = OrderStatus::CancellationRefused;
        self.changes.raise(OrderEvent::CancellationRefused {
            order_id: self.id,
            reason: reason.to_owned(),
        });
        Ok(())
    }

    fn cancelling(&mut self) -> Result<&mut Cancellation, DomainError> {
        match (self.status, self.cancellation.as_mut()) {
            (OrderStatus::Cancelling, Some(cancellation)) => Ok(cancellation),
            _ => Err(DomainError::conflict(format!(
                "order {} is not being cancelled (it is {})",
                self.id,
                self.status.as_str()
            ))),
        }
    }

    /// The cancellation, once one was asked.
    pub fn cancellation(&self) -> Option<&Cancellation> {
        self.cancellation.as_ref()
    }

    /// The integration event: destination and items with quantity, weight
    /// and dimensions — no prices.
    fn completed_event(&self, completed_at: OffsetDateTime) -> OrderCompleted {
        let d = &self.destination;
        OrderCompleted {
            order_id: self.id,
            destination: events::Destination {
                name: d.name.clone(),
                street: d.street.clone(),
                city: d.city.clone(),
                postal_code: d.postal_code.clone(),
                country: d.country.clone(),
            },
            items: self
                .items
                .iter()
                .map(|l| ItemToShip {
                    sku: l.sku.clone(),
                    quantity: l.quantity,
                    weight_grams: l.weight_grams,
                    length_mm: l.dimensions.length_mm,
                    width_mm: l.dimensions.width_mm,
                    height_mm: l.dimensions.height_mm,
                })
                .collect(),
            completed_at,
        }
    }

    /// Who ordered.
    pub fn customer_id(&self) -> &str {
        &self.customer_id
    }

    /// Where the items go.
    pub fn destination(&self) -> &Destination {
        &self.destination
    }

    /// The lines.
    pub fn items(&self) -> &[OrderLine] {
        &self.items
    }

    /// Where the order stands.
    pub fn status(&self) -> OrderStatus {
        self.status
    }

    /// When it was placed.
    pub fn placed_at(&self) -> OffsetDateTime {
        self.placed_at
    }

    /// When it was completed.
    pub fn completed_at(&self) -> Option<OffsetDateTime> {
        self.completed_at
    }

    /// Keeps shipping's quote (asked when the order was placed).
    pub fn record_shipping_quote(&mut self, quote: super::quote::ShippingQuote) {
        self.shipping_quote = Some(quote);
    }

    /// Shipping's quote, if it answered in time when the order was placed.
    pub fn shipping_quote(&self) -> Option<&super::quote::ShippingQuote> {
        self.shipping_quote.as_ref()
    }

    /// Price of the whole order in cents.
    pub fn total_cents(&self) -> u64 {
        self.items
            .iter()
            .map(OrderLine::total_cents)
            .fold(0, u64::saturating_add)
    }
}

fn parse_destination(v: &mut Violations, d: &DestinationInput) -> Destination {
    Destination {
        name: v.text("destination.name", &d.name, MAX_TEXT),
        street: v.text("destination.street", &d.street, MAX_TEXT),
        city: v.text("destination.city", &d.city, MAX_TEXT),
        postal_code: v.text("destination.postal_code", &d.postal_code, MAX_TEXT),
        country: v.text("destination.country", &d.country, MAX_TEXT),
    }
}

fn parse_line(v: &mut Violations, path: &str, item: &ItemInput) -> OrderLine {
    OrderLine {
        sku: v.text(&format!("{path}.sku"), &item.sku, MAX_SKU),
        name: v.text(&format!("{path}.name"), &item.name, MAX_TEXT),
        unit_price_cents: v.in_range(
            &format!("{path}.unit_price_cents"),
            item.unit_price_cents,
            0,
            i64::MAX,
        ),
        quantity: v.in_range(&format!("{path}.quantity"), item.quantity, 1, MAX_QUANTITY),
        weight_grams: v.in_range(
            &format!("{path}.weight_grams"),
            item.weight_grams,
            1,
            MAX_MEASURE,
        ),
        dimensions: Dimensions {
            length_mm: v.in_range(&format!("{path}.length_mm"), item.length_mm, 1, MAX_MEASURE),
            width_mm: v.in_range(&format!("{path}.width_mm"), item.width_mm, 1, MAX_MEASURE),
            height_mm: v.in_range(&format!("{path}.height_mm"), item.height_mm, 1, MAX_MEASURE),
        },
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use chassis_domain::{AggregateRoot, Entity};

    pub(crate) fn item(sku: &str) -> ItemInput {
        ItemInput {
            sku: sku.into(),
            name: format!("Product {sku}"),
            unit_price_cents: 1999,
            quantity: 2,
            weight_grams: 1500,
            length_mm: 300,
            width_mm: 200,
            height_mm: 100,
        }
    }

    pub(crate) fn command(items: Vec<ItemInput>) -> PlaceOrder {
        PlaceOrder {
            customer_id: "customer-1".into(),
            destination: DestinationInput {
                name: "Ada Lovelace".into(),
                street: "12 St James's Square".into(),
                city: "London".into(),
                postal_code: "SW1Y 4JH".into(),
                country: "GB".into(),
            },
            items,
        }
    }

    fn now() -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap()
    }

    fn fields(e: &DomainError) -> Vec<&str> {
        e.field_errors().iter().map(|x| x.field.as_str()).collect()
    }

    #[test]
    fn a_valid_order_is_placed_with_trimmed_values() {
        let mut cmd = command(vec![item("A-1"), item("B-2")]);
        cmd.destination.city = "  London ".into();
        let order = Order::place(Uuid::nil(), cmd, now()).unwrap();
        assert_eq!(order.status(), OrderStatus::Placed);
        assert_eq!(order.version(), 0);
        assert!(order.changes().integration_events().is_empty());
        assert_eq!(order.destination().city, "London");
        assert_eq!(order.items().len(), 2);
        assert_eq!(order.total_cents(), 2 * 2 * 1999);
        assert_eq!(order.completed_at(), None);
    }

    #[test]
    fn every_invalid_field_is_named_by_its_path() {
        let mut cmd = command(vec![item("A"), item("B"), item("C")]);
        cmd.customer_id = " ".into();
        cmd.destination.postal_code = String::new();
        cmd.items[2].quantity = 0;
        cmd.items[1].weight_grams = -5;
        cmd.items[0].height_mm = 0;
        cmd.items[0].unit_price_cents = -1;
        let err = Order::place(Uuid::nil(), cmd, now()).unwrap_err();
        assert_eq!(
            fields(&err),
            [
                "customer_id",
                "destination.postal_code",
                "items[0].unit_price_cents",
                "items[0].height_mm",
                "items[1].weight_grams",
                "items[2].quantity",
            ]
        );
        assert!(
            err.to_string()
                .contains("items[2].quantity: must be between 1 and 10000")
        );
    }

    #[test]
    fn limits_are_inclusive() {
        let mut cmd = command(vec![item("A")]);
        cmd.items[0].quantity = MAX_QUANTITY;
        cmd.items[0].weight_grams = 1;
        cmd.items[0].unit_price_cents = 0;
        assert!(Order::place(Uuid::nil(), cmd.clone(), now()).is_ok());
        cmd.items[0].quantity = MAX_QUANTITY + 1;
        cmd.items[0].weight_grams = i64::from(u32::MAX) + 1;
        let err = Order::place(Uuid::nil(), cmd, now()).unwrap_err();
        assert_eq!(fields(&err), ["items[0].quantity", "items[0].weight_grams"]);
    }

    #[test]
    fn an_order_needs_items_and_distinct_skus() {
        let err = Order::place(Uuid::nil(), command(vec![]), now()).unwrap_err();
        assert_eq!(fields(&err), ["items"]);
        let err = Order::place(
            Uuid::nil(),
            command(vec![item("A"), item("B"), item("A")]),
            now(),
        )
        .unwrap_err();
        assert_eq!(fields(&err), ["items[2].sku"]);
        assert!(err.to_string().contains("duplicates items[0].sku"));
        let too_many = (0..=MAX_ITEMS).map(|i| item(&format!("S{i}"))).collect();
        let err = Order::place(Uuid::nil(), command(too_many), now()).unwrap_err();
        assert_eq!(fields(&err), ["items"]);
    }

    #[test]
    fn completing_raises_one_event_and_only_once() {
        let id = Uuid::now_v7();
        let mut order = Order::place(id, command(vec![item("A")]), now()).unwrap();
        order.complete(now()).unwrap();
        assert_eq!(order.status(), OrderStatus::Completed);
        assert_eq!(order.completed_at(), Some(now()));
        assert_eq!(
            order.changes().domain_events(),
            [OrderEvent::Completed {
                order_id: id,
                at: now()
            }]
        );
        let published = order.changes().integration_events();
        assert_eq!(published.len(), 1);
        let envelope = published[0].to_envelope().unwrap();
        let event: OrderCompleted = envelope.decode().unwrap();
        assert_eq!(event.order_id, id);
        assert_eq!(event.destination.city, "London");
        assert_eq!(
            (event.items[0].quantity, event.items[0].weight_grams),
            (2, 1500)
        );
        let json = String::from_utf8(envelope.payload).unwrap();
        assert!(!json.contains("price") && !json.contains("1999"), "{json}");

        let err = order.complete(now()).unwrap_err();
        assert_eq!(err.status(), 409);
        assert_eq!(order.changes().integration_events().len(), 1);
    }

    #[test]
    fn cancellation_from_completed_only_then_cancelled_or_refused() {
        let mut order = Order::place(Uuid::now_v7(), command(vec![item("A")]), now()).unwrap();
        assert_eq!(order.request_cancellation(now()).unwrap_err().status(), 409);
        order.complete(now()).unwrap();
        order.request_cancellation(now()).unwrap();
        assert_eq!(order.status(), OrderStatus::Cancelling);
        let again = order.request_cancellation(now()).unwrap_err();
        assert!(
            again.to_string().contains("already being cancelled"),
            "{again}"
        );
        let mut refused = order.clone();
        order.confirm_cancellation(now()).unwrap();
        assert_eq!(order.status(), OrderStatus::Cancelled);
        assert_eq!(order.cancellation().unwrap().finished_at, Some(now()));
        assert_eq!(order.request_cancellation(now()).unwrap_err().status(), 409);
        assert_eq!(order.confirm_cancellation(now()).unwrap_err().status(), 409);

        refused.refuse_cancellation("packages sent", now()).unwrap();
        assert_eq!(refused.status(), OrderStatus::CancellationRefused);
        assert_eq!(
            refused.cancellation().unwrap().reason.as_deref(),
            Some("packages sent")
        );
        let err = refused.request_cancellation(now()).unwrap_err();
        assert!(err.to_string().contains("packages sent"), "{err}");
        let json = serde_json::to_value(&refused).unwrap();
        assert_eq!(json["status"], "cancellation_refused");
        let back: Order = serde_json::from_value(json).unwrap();
        assert_eq!(back.cancellation(), refused.cancellation());
    }

    #[test]
    fn state_round_trips_through_json_without_pending_events() {
        let mut order = Order::place(Uuid::now_v7(), command(vec![item("A")]), now()).unwrap();
        order.complete(now()).unwrap();
        let json = serde_json::to_value(&order).unwrap();
        assert_eq!(json["status"], "completed");
        assert_eq!(json["placed_at"], "2027-01-15T08:00:00Z");
        let back: Order = serde_json::from_value(json.clone()).unwrap();
        assert_eq!(serde_json::to_value(&back).unwrap(), json);
        assert!(back.changes().integration_events().is_empty());
        assert_eq!(back.id(), order.id());
    }
}
