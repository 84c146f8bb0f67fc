//! Request and response bodies of the order service's HTTP API.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

/// The limits the service's validators enforce, from this one place: the
/// service validates with them, and the schema attributes below state them
/// (the service's tests check the two agree).
pub mod limits {
    /// Longest text (names, address fields, customer id), in characters.
    pub const MAX_TEXT: usize = 200;
    /// Longest SKU.
    pub const MAX_SKU: usize = 64;
    /// Most lines in one order.
    pub const MAX_ITEMS: usize = 500;
    /// Most units of one line.
    pub const MAX_QUANTITY: i64 = 10_000;
    /// Largest weight (grams) and dimension (millimetres) of one unit.
    pub const MAX_MEASURE: i64 = u32::MAX as i64;
}

/// `POST /orders`: a customer orders items for a destination.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct PlaceOrderRequest {
    /// Who orders.
    #[cfg_attr(
        feature = "openapi",
        schema(min_length = 1, max_length = 200, pattern = "[^\\t\\n\\v\\f\\r ]")
    )]
    pub customer_id: String,
    /// Where the items go.
    pub destination: Destination,
    /// What is ordered: at least one line, each SKU once.
    #[cfg_attr(feature = "openapi", schema(min_items = 1, max_items = 500))]
    pub items: Vec<OrderItem>,
}

/// A postal destination.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Destination {
    /// Recipient's name.
    #[cfg_attr(
        feature = "openapi",
        schema(min_length = 1, max_length = 200, pattern = "[^\\t\\n\\v\\f\\r ]")
    )]
    pub name: String,
    /// Street and number.
    #[cfg_attr(
        feature = "openapi",
        schema(min_length = 1, max_length = 200, pattern = "[^\\t\\n\\v\\f\\r ]")
    )]
    pub street: String,
    /// City.
    #[cfg_attr(
        feature = "openapi",
        schema(min_length = 1, max_length = 200, pattern = "[^\\t\\n\\v\\f\\r ]")
    )]
    pub city: String,
    /// Postal code.
    #[cfg_attr(
        feature = "openapi",
        schema(min_length = 1, max_length = 200, pattern = "[^\\t\\n\\v\\f\\r ]")
    )]
    pub postal_code: String,
    /// Country.
    #[cfg_attr(
        feature = "openapi",
        schema(min_length = 1, max_length = 200, pattern = "[^\\t\\n\\v\\f\\r ]")
    )]
    pub country: String,
}

/// One order line. Weight and dimensions are per unit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct OrderItem {
    /// Stock keeping unit.
    #[cfg_attr(
        feature = "openapi",
        schema(min_length = 1, max_length = 64, pattern = "[^\\t\\n\\v\\f\\r ]")
    )]
    pub sku: String,
    /// Product name.
    #[cfg_attr(
        feature = "openapi",
        schema(min_length = 1, max_length = 200, pattern = "[^\\t\\n\\v\\f\\r ]")
    )]
    pub name: String,
    /// Price of one unit in cents (≥ 0).
    #[cfg_attr(feature = "openapi", schema(minimum = 0))]
    pub unit_price_cents: i64,
    /// Units ordered (≥ 1).
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 10000))]
    pub quantity: i64,
    /// Weight of one unit in grams (> 0).
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 4294967295i64))]
    pub weight_grams: i64,
    /// Length of one unit in millimetres (> 0).
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 4294967295i64))]
    pub length_mm: i64,
    /// Width of one unit in millimetres (> 0).
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 4294967295i64))]
    pub width_mm: i64,
    /// Height of one unit in millimetres (> 0).
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 4294967295i64))]
    pub height_mm: i64,
}

/// Where an order stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum OrderStatus {
    /// Accepted, not yet complete.
    Placed,
    /// Complete: shipping has been told (`order.completed.v1`).
    Completed,
    /// Cancellation asked (`POST /orders/{id}/cancel`); waiting for shipping.
    Cancelling,
    /// Cancelled: shipping took its units out of the packages not yet sent.
    Cancelled,
    /// Not cancelled: shipping refused (packages already sent) or did not
    /// answer in time; `cancellation.reason` says which. Shipping goes on.
    CancellationRefused,
}

/// How a cancellation went (`OrderView::cancellation`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CancellationView {
    /// When it was asked (RFC 3339).
    #[serde(with = "time::serde::rfc3339")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub requested_at: OffsetDateTime,
    /// When it ended, cancelled or refused (RFC 3339).
    #[serde(with = "time::serde::rfc3339::option", default)]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, format = DateTime))]
    pub finished_at: Option<OffsetDateTime>,
    /// Why it was refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// An order as the service shows it (`POST /orders` → 201, `GET /orders/{id}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct OrderView {
    /// Identity (UUID).
    pub id: Uuid,
    /// Who ordered.
    pub customer_id: String,
    /// Where the order stands.
    pub status: OrderStatus,
    /// Where the items go.
    pub destination: Destination,
    /// The lines as ordered.
    pub items: Vec<OrderItem>,
    /// Price of the whole order in cents.
    pub total_cents: u64,
    /// When it was placed (RFC 3339).
    #[serde(with = "time::serde::rfc3339")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub placed_at: OffsetDateTime,
    /// When it was completed (RFC 3339).
    #[serde(with = "time::serde::rfc3339::option", default)]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, format = DateTime))]
    pub completed_at: Option<OffsetDateTime>,
    /// The cancellation, once one was asked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cancellation: Option<CancellationView>,
    /// Shipping's quote when the order was placed; absent when shipping did
    /// not answer in time (the order is accepted all the same).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shipping_quote: Option<crate::quote::ShippingQuote>,
}
