//! The shipping bounded context: pure business rules, no HTTP, broker or
//! SQL. Its notion of an item (weight and size, no price) is its own; it
//! shares no model with the order service.

mod address;
pub mod cancellation;
pub(crate) mod package;
pub mod packing;
mod shipment;
mod transport;

pub use address::{Address, InvalidAddress};
pub use package::{
    Package, PackageError, PackageEvent, PackageStatus, PackedItem, TrackingEvent, TrackingStatus,
    new_tracking_id,
};
pub use packing::{ItemToPack, OrderToPack, Packed, Packing, pack};
pub use shipment::{Shipment, UnshippableItem};
pub use transport::{
    Dimensions, InvalidShippingConfig, ShippingConfig, TransportProvider, TransportProviderConfig,
    TransportProviders, UnshippableReason,
};
