//! Shipping's quote as the order keeps it: what shipping said, when the
//! order was placed, about how its items would ship. Informational: the
//! packing itself happens in shipping once the order is complete.

use serde::{Deserialize, Serialize};

/// How shipping would ship an order's items.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShippingQuote {
    /// The provider carrying every package, if one carries them all.
    pub transport_provider: Option<String>,
    /// The packages: provider, weight in grams, units.
    pub packages: Vec<QuotedPackage>,
    /// Lines no provider can carry: SKU, units, reason.
    pub unshippable: Vec<UnshippableLine>,
}

/// One package of a quote.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuotedPackage {
    /// Who would carry it.
    pub transport_provider: String,
    /// Its weight in grams.
    pub weight_grams: u64,
    /// Units in it.
    pub units: u32,
}

/// A line no provider can carry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnshippableLine {
    /// Stock keeping unit.
    pub sku: String,
    /// Units.
    pub quantity: u32,
    /// Why.
    pub reason: String,
}
