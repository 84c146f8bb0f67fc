//! The order bounded context: pure business rules, no HTTP, broker or SQL.

mod order;
mod validation;

pub use order::{
    Cancellation, Destination, DestinationInput, Dimensions, ItemInput, MAX_ITEMS, MAX_QUANTITY,
    Order, OrderEvent, OrderLine, OrderStatus, PlaceOrder,
};
pub use validation::Violations;
