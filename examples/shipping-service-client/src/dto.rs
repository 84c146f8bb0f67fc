//! Request and response bodies of the shipping service's HTTP API.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

/// The limits the service's validators enforce, from this one place: the
/// service validates with them, and the schema attributes below state them
/// (the service's tests check the two agree).
pub mod limits {
    /// Longest text of one address field, in characters.
    pub const MAX_TEXT: usize = 200;
}

/// A postal destination (`PUT /packages/{id}/destination` takes one).
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

/// Where a package stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum PackageStatus {
    /// Still taking items; its destination may change.
    Open,
    /// Handed to the transport provider.
    Sent,
}

/// Units of one order line in a package. `weight_grams` is per unit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PackageItem {
    /// The order the units belong to.
    pub order_id: Uuid,
    /// Stock keeping unit.
    pub sku: String,
    /// Units in this package.
    pub quantity: u32,
    /// Weight of one unit in grams.
    pub weight_grams: u32,
}

/// A package (`GET /packages`, `GET /packages/{id}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PackageView {
    /// Identity (UUID).
    pub id: Uuid,
    /// `open` or `sent`.
    pub status: PackageStatus,
    /// Where it goes.
    pub destination: Destination,
    /// Who carries it.
    pub transport_provider: String,
    /// Weight of everything in it.
    pub total_weight_grams: u64,
    /// The provider's maximum weight for it.
    pub max_weight_grams: u64,
    /// What it holds.
    pub items: Vec<PackageItem>,
    /// Set once sent.
    pub tracking_id: Option<String>,
}

/// Answer of `POST /packages/{id}/send`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SendReceipt {
    /// The package.
    pub id: Uuid,
    /// Always `sent`.
    pub status: PackageStatus,
    /// The provider's tracking id.
    pub tracking_id: String,
}

/// A step of a sent package's journey.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum TrackingStatus {
    /// Handed over to the transport provider.
    HandedOver,
    /// On its way.
    InTransit,
    /// With the courier for the last mile.
    OutForDelivery,
    /// Delivered; the journey is over.
    Delivered,
    /// A delivery attempt failed.
    DeliveryFailed,
}

/// One tracking event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TrackingEvent {
    /// What happened.
    pub status: TrackingStatus,
    /// Detail.
    pub description: String,
    /// When (RFC 3339).
    #[serde(with = "time::serde::rfc3339")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub at: OffsetDateTime,
}

/// Answer of `GET /packages/{id}/tracking`: empty until the package is sent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Tracking {
    /// The package.
    pub package_id: Uuid,
    /// `open` or `sent`.
    pub status: PackageStatus,
    /// Set once sent.
    pub tracking_id: Option<String>,
    /// The journey so far, oldest first.
    pub events: Vec<TrackingEvent>,
}

/// `POST /packages/{id}/tracking`: the transport provider reports a step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct RecordTrackingRequest {
    /// What happened (`handed_over` is recorded by sending).
    pub status: TrackingStatus,
    /// Detail, e.g. the hub's name.
    #[serde(default)]
    pub description: String,
}

/// Units of an order that no transport provider can carry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UnshippableItem {
    /// Stock keeping unit.
    pub sku: String,
    /// Units concerned.
    pub quantity: u32,
    /// Why, in words.
    pub reason: String,
}

/// How an order was packed (`GET /shipments/{order_id}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ShipmentView {
    /// The order.
    pub order_id: Uuid,
    /// The packages holding its units.
    pub packages: Vec<Uuid>,
    /// Its items no provider can carry.
    pub unshippable: Vec<UnshippableItem>,
    /// When it was packed (RFC 3339).
    #[serde(with = "time::serde::rfc3339")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub packed_at: OffsetDateTime,
}
