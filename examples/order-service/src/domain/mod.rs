//! The order bounded context: pure business rules, no HTTP, broker or SQL.

mod order;
mod quote;
mod validation;

pub use order::{
    Cancellation, Destination, DestinationInput, Dimensions, ItemInput, MAX_ITEMS, MAX_QUANTITY,
    Order, OrderEvent, OrderLine, OrderStatus, PlaceOrder,
};
pub use quote::{QuotedPackage, ShippingQuote, UnshippableLine};
pub use validation::Violations;
