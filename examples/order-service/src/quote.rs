//! Shipping quotes over the bus (request/response, `shipping.quote.v1`):
//! which transport provider and how many packages the items would take.
//!
//! - `POST /orders/quote` validates the items and destination like an order
//!   (422 problem naming each field), asks shipping and answers its quote.
//!   Shipping not answering quotes at all → **503**; no answer within
//!   `order.quote_timeout` → **504**; shipping refusing the request (its own
//!   address rules) → **422** with shipping's reason.
//! - **At order placement** the order service asks too, with the shorter
//!   `order.placement_quote_timeout`, and keeps the answer on the order
//!   (`shipping_quote`). **Fallback**: when shipping does not answer in time
//!   (or is down, or refuses), the order is placed all the same, without a
//!   quote — a quote is information, shipping packs the order from
//!   `order.completed.v1` either way — and a warning is logged with why.
//!   Placing an order never fails or waits longer because of shipping.
//!
//! ```toml
//! [order]
//! quote_timeout = "2s"              # POST /orders/quote
//! placement_quote_timeout = "300ms" # asked while placing an order
//! ```

use std::sync::Arc;
use std::time::Duration;

use chassis_domain::messaging::{EventBus, MessageContext, RequestClient, RequestError};
use chassis_domain::{DomainError, FieldError};
use chassis_web::axum::extract::State;
use chassis_web::axum::http::StatusCode;
use chassis_web::{BoxError, Json, Problem, ServiceContext, current_message_context};
use order_service_client::quote::{self as dto, QuoteOrderRequest};
use serde::{Deserialize, Serialize};
use shipping_service_client::quote::{
    Destination as ShippingDestination, Quote, QuoteItem, QuoteRequest,
};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::app::Orders;
use crate::domain::{ItemInput, Order, PlaceOrder, QuotedPackage, ShippingQuote, UnshippableLine};

/// The quote settings of the `[order]` section.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct QuoteConfig {
    /// How long `POST /orders/quote` waits for shipping.
    #[serde(with = "chassis_core::duration")]
    pub quote_timeout: Duration,
    /// How long placing an order waits for shipping's quote before going on
    /// without one.
    #[serde(with = "chassis_core::duration")]
    pub placement_quote_timeout: Duration,
}

impl Default for QuoteConfig {
    fn default() -> Self {
        Self {
            quote_timeout: Duration::from_secs(2),
            placement_quote_timeout: Duration::from_millis(300),
        }
    }
}

impl QuoteConfig {
    /// Reads and checks the `[order]` section.
    pub fn from_context(ctx: &ServiceContext) -> Result<Self, BoxError> {
        let config: Self = ctx.section("order")?;
        if config.quote_timeout.is_zero() || config.placement_quote_timeout.is_zero() {
            return Err(
                "order.quote_timeout, order.placement_quote_timeout: expected durations > 0".into(),
            );
        }
        Ok(config)
    }
}

/// Asks shipping for quotes. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Quotes {
    asked: RequestClient<QuoteRequest>,
    at_placement: RequestClient<QuoteRequest>,
}

impl Quotes {
    /// Quotes over `bus` with the timeouts of `config`.
    pub fn new(bus: Arc<dyn EventBus>, config: &QuoteConfig) -> Self {
        Self {
            asked: RequestClient::new(bus.clone(), config.quote_timeout),
            at_placement: RequestClient::new(bus, config.placement_quote_timeout),
        }
    }

    /// The quote for a valid order's items (`POST /orders/quote`).
    pub async fn quote(
        &self,
        order: &Order,
        context: &MessageContext,
    ) -> Result<ShippingQuote, RequestError> {
        let quote = self.asked.send_in(&request_for(order), context).await?;
        Ok(shipping_quote(quote))
    }

    /// The quote while placing `order`, or `None` (logged) when shipping does
    /// not give one within the placement timeout: the documented fallback.
    pub async fn at_placement(
        &self,
        order: &Order,
        context: &MessageContext,
    ) -> Option<ShippingQuote> {
        match self
            .at_placement
            .send_in(&request_for(order), context)
            .await
        {
            Ok(quote) => Some(shipping_quote(quote)),
            Err(error) => {
                tracing::warn!(
                    %error,
                    timeout = ?self.at_placement.timeout(),
                    "no shipping quote; placing the order without one"
                );
                None
            }
        }
    }
}

/// What shipping is asked about `order`.
fn request_for(order: &Order) -> QuoteRequest {
    let d = order.destination();
    QuoteRequest {
        destination: ShippingDestination {
            name: d.name.clone(),
            street: d.street.clone(),
            city: d.city.clone(),
            postal_code: d.postal_code.clone(),
            country: d.country.clone(),
        },
        items: order
            .items()
            .iter()
            .map(|l| QuoteItem {
                sku: l.sku.clone(),
                quantity: l.quantity,
                weight_grams: l.weight_grams,
                length_mm: l.dimensions.length_mm,
                width_mm: l.dimensions.width_mm,
                height_mm: l.dimensions.height_mm,
            })
            .collect(),
    }
}

fn shipping_quote(quote: Quote) -> ShippingQuote {
    ShippingQuote {
        transport_provider: quote.transport_provider,
        packages: quote
            .packages
            .into_iter()
            .map(|p| QuotedPackage {
                transport_provider: p.transport_provider,
                weight_grams: p.weight_grams,
                units: p.units,
            })
            .collect(),
        unshippable: quote
            .unshippable
            .into_iter()
            .map(|u| UnshippableLine {
                sku: u.sku,
                quantity: u.quantity,
                reason: u.reason,
            })
            .collect(),
    }
}

/// The quote as the API shows it.
pub fn quote_view(quote: &ShippingQuote) -> dto::ShippingQuote {
    dto::ShippingQuote {
        transport_provider: quote.transport_provider.clone(),
        package_count: u32::try_from(quote.packages.len()).unwrap_or(u32::MAX),
        packages: quote
            .packages
            .iter()
            .map(|p| dto::QuotedPackage {
                transport_provider: p.transport_provider.clone(),
                weight_grams: p.weight_grams,
                units: p.units,
            })
            .collect(),
        unshippable: quote
            .unshippable
            .iter()
            .map(|u| dto::UnshippableLine {
                sku: u.sku.clone(),
                quantity: u.quantity,
                reason: u.reason.clone(),
            })
            .collect(),
    }
}

/// The quote request checked by the order's own rules: an order of these
/// lines (no customer or prices involved) — so the 422 names the same
/// fields as `POST /orders` (`items[0].quantity`, `destination.city`).
pub fn validated(request: QuoteOrderRequest) -> Result<Order, Problem> {
    let command = PlaceOrder {
        customer_id: "quote".into(),
        destination: crate::integration::destination_input(request.destination),
        items: request
            .items
            .into_iter()
            .map(|l| ItemInput {
                name: l.sku.clone(),
                sku: l.sku,
                unit_price_cents: 0,
                quantity: l.quantity,
                weight_grams: l.weight_grams,
                length_mm: l.length_mm,
                width_mm: l.width_mm,
                height_mm: l.height_mm,
            })
            .collect(),
    };
    Order::place(Uuid::nil(), command, OffsetDateTime::now_utc()).map_err(|e| {
        // The placeholder name is the SKU: report a missing SKU once.
        let fields: Vec<FieldError> = e
            .field_errors()
            .iter()
            .filter(|f| !f.field.ends_with(".name"))
            .cloned()
            .collect();
        if fields.is_empty() {
            Problem::from(e)
        } else {
            Problem::from(DomainError::validation(fields))
        }
    })
}

/// The problem answering a failed quote request.
pub fn problem(error: &RequestError) -> Problem {
    match error {
        RequestError::Timeout { waited, .. } => Problem::new(StatusCode::GATEWAY_TIMEOUT)
            .with_title("Shipping did not answer in time")
            .with_detail(format!(
                "no quote from shipping within {waited:?}; try again later"
            )),
        RequestError::Failed { reason, .. } => Problem::new(StatusCode::UNPROCESSABLE_ENTITY)
            .with_title("Shipping cannot quote this")
            .with_detail(reason.clone()),
        e if e.is_transient() || matches!(e, RequestError::ShutDown) => {
            Problem::new(StatusCode::SERVICE_UNAVAILABLE)
                .with_title("Shipping quotes unavailable")
                .with_detail(e.to_string())
        }
        other => Problem::internal(other),
    }
}

/// Quote an order's shipping.
///
/// Asks the shipping service over the bus (`shipping.quote.v1`) which
/// transport provider and how many packages the items would take to the
/// destination, by shipping's packing rules. Nothing is stored.
#[utoipa::path(
    post,
    path = "/orders/quote",
    tag = "orders",
    request_body = QuoteOrderRequest,
    responses(
        (status = 200, description = "Shipping's quote", body = dto::ShippingQuote),
        (status = 422, description = "Invalid input (`errors[].field` names each field), or \
                                      shipping refuses the destination",
         content_type = "application/problem+json"),
        (status = 503, description = "Shipping is not answering quotes (not running, broker \
                                      unreachable)", content_type = "application/problem+json"),
        (status = 504, description = "Shipping did not answer within `order.quote_timeout`",
         content_type = "application/problem+json"),
    )
)]
pub async fn quote_order(
    State(orders): State<Orders>,
    Json(request): Json<QuoteOrderRequest>,
) -> Result<Json<dto::ShippingQuote>, Problem> {
    let order = validated(request)?;
    let Some(quotes) = orders.quotes() else {
        return Err(Problem::new(StatusCode::SERVICE_UNAVAILABLE)
            .with_detail("quotes are not enabled on this instance"));
    };
    let quote = quotes
        .quote(&order, &current_message_context())
        .await
        .map_err(|e| problem(&e))?;
    Ok(Json(quote_view(&quote)))
}
