//! `POST /orders/quote`: how the items of an order would ship, asked of the
//! shipping service over the bus before ordering. The same quote is kept on
//! an order placed while shipping answers in time ([`crate::dto::OrderView`]
//! `shipping_quote`).

use serde::{Deserialize, Serialize};

use crate::dto::Destination;

/// `POST /orders/quote`: the items and where they would go.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct QuoteOrderRequest {
    /// Where the items would go.
    pub destination: Destination,
    /// What would be shipped: at least one line, each SKU once.
    #[cfg_attr(feature = "openapi", schema(min_items = 1, max_items = 500))]
    pub items: Vec<QuoteLine>,
}

/// One line to quote. Weight and dimensions are per unit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct QuoteLine {
    /// Stock keeping unit.
    #[cfg_attr(
        feature = "openapi",
        schema(min_length = 1, max_length = 64, pattern = "[^\\t\\n\\v\\f\\r ]")
    )]
    pub sku: String,
    /// Units (≥ 1).
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

/// Shipping's quote: transport provider and packages.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ShippingQuote {
    /// The provider carrying every package; absent when several would (see
    /// `packages`) or nothing can be shipped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transport_provider: Option<String>,
    /// How many packages.
    pub package_count: u32,
    /// Each package: provider, weight, units.
    pub packages: Vec<QuotedPackage>,
    /// Lines no provider can carry, with the reason.
    pub unshippable: Vec<UnshippableLine>,
}

/// One package of a quote.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct QuotedPackage {
    /// Who would carry it.
    pub transport_provider: String,
    /// Its weight in grams.
    pub weight_grams: u64,
    /// Units in it.
    pub units: u32,
}

/// A line no transport provider can carry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UnshippableLine {
    /// Stock keeping unit.
    pub sku: String,
    /// Units concerned.
    pub quantity: u32,
    /// Why, in words.
    pub reason: String,
}
