//! The HTTP API: routes, their OpenAPI description (`/openapi.json`) and the
//! offline docs UI (`/docs`).

use chassis_domain::Entity;
use chassis_web::axum;
use chassis_web::axum::Router;
use chassis_web::axum::extract::{Path, State};
use chassis_web::axum::http::{StatusCode, header};
use chassis_web::axum::response::IntoResponse;
use chassis_web::{ChassisConfig, Json, Problem, current_message_context};
use order_service_client::dto::{OrderView, PlaceOrderRequest};
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use utoipa_swagger_ui::SwaggerUi;
use uuid::Uuid;

use crate::app::Orders;
use crate::integration::{order_view, place_order_command};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "order-service",
        description = "Customers place orders of items for a destination; a completed order \
                       raises `order.completed.v1` for shipping."
    ),
    tags((name = "orders", description = "Placing and reading orders"))
)]
struct ApiDoc;

/// The service's routes, `/openapi.json` (with the credentials and the
/// answers of the chassis's edge its configuration gives, see
/// [`chassis_web::openapi::document`]) and the docs UI at `/docs`.
pub fn router(orders: Orders, chassis: &ChassisConfig) -> Router {
    let (router, mut api) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(place_order))
        .routes(routes!(get_order))
        .routes(routes!(crate::cancellation::cancel_order))
        .routes(routes!(crate::quote::quote_order))
        .with_state(orders)
        .split_for_parts();
    chassis_web::openapi::document(&mut api, chassis);
    router.merge(SwaggerUi::new("/docs").url("/openapi.json", api))
}

/// Place an order.
///
/// The order is validated (every invalid field is named), completed and
/// stored; `order.completed.v1` is written to the outbox in the same
/// transaction. Shipping is asked for a quote first, waiting at most
/// `order.placement_quote_timeout`: the answer is kept as `shipping_quote`;
/// without an answer in time the order is placed all the same, without
/// `shipping_quote` (a warning is logged), never refused or delayed further.
#[utoipa::path(
    post,
    path = "/orders",
    tag = "orders",
    request_body = PlaceOrderRequest,
    responses(
        (status = 201, description = "Order placed and completed", body = OrderView,
         headers(("location" = String, description = "URL of the new order"))),
        (status = 422, description = "Invalid input; `errors[].field` names each field \
                                      (`items[2].quantity`)",
         content_type = "application/problem+json"),
    )
)]
async fn place_order(
    State(orders): State<Orders>,
    Json(request): Json<PlaceOrderRequest>,
) -> Result<impl IntoResponse, Problem> {
    let order = orders
        .place(place_order_command(request), current_message_context())
        .await?;
    let location = format!("/orders/{}", order.id());
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        Json(order_view(&order)),
    ))
}

/// Read an order.
#[utoipa::path(
    get,
    path = "/orders/{id}",
    tag = "orders",
    params(("id" = Uuid, Path, description = "Order id")),
    responses(
        (status = 200, description = "The order", body = OrderView),
        (status = 404, description = "No such order", content_type = "application/problem+json"),
    )
)]
async fn get_order(
    State(orders): State<Orders>,
    Path(id): Path<Uuid>,
) -> Result<Json<OrderView>, Problem> {
    let order = orders.get(id, current_message_context()).await?;
    Ok(Json(order_view(&order)))
}
