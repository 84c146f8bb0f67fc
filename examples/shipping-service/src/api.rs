//! The HTTP API: routes, their OpenAPI description (`/openapi.json`) and the
//! offline docs UI (`/docs`).

use chassis_web::axum;
use chassis_web::axum::Router;
use chassis_web::axum::extract::{Path, Query, State};
use chassis_web::{ChassisConfig, Json, Problem, current_message_context};
use serde::Deserialize;
use shipping_service_client::dto::{
    Destination, PackageStatus, PackageView, RecordTrackingRequest, SendReceipt, ShipmentView,
    Tracking,
};
use utoipa::{IntoParams, OpenApi};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use utoipa_swagger_ui::SwaggerUi;
use uuid::Uuid;

use crate::app::{ChangeDestination, PackageFilter, RecordTracking, SendPackage, Shipping};
use crate::domain;
use crate::integration::{address, package_view, shipment_view, tracking_status, tracking_view};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "shipping-service",
        description = "Packs the items of completed orders (`order.completed.v1`) into packages \
                       per destination up to the transport provider's maximum weight; sends and \
                       tracks packages."
    ),
    tags(
        (name = "packages", description = "Packages, their destination, sending and tracking"),
        (name = "shipments", description = "How each order was packed")
    )
)]
struct ApiDoc;

/// The service's routes, `/openapi.json` (with the credentials and the
/// answers of the chassis's edge its configuration gives, see
/// [`chassis_web::openapi::document`]) and the docs UI at `/docs`.
pub fn router(shipping: Shipping, chassis: &ChassisConfig) -> Router {
    let (router, mut api) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(list_packages))
        .routes(routes!(get_package))
        .routes(routes!(change_destination))
        .routes(routes!(send_package))
        .routes(routes!(get_tracking, record_tracking))
        .routes(routes!(get_shipment))
        .with_state(shipping)
        .split_for_parts();
    chassis_web::openapi::document(&mut api, chassis);
    router.merge(SwaggerUi::new("/docs").url("/openapi.json", api))
}

/// Filters of `GET /packages`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct PackageQuery {
    /// Only packages holding units of this order.
    order_id: Option<Uuid>,
    /// Only packages in this state.
    status: Option<PackageStatus>,
    /// Results to skip. Read as a signed 64-bit integer — the `int64` the
    /// document states, and what a database takes as an offset.
    #[serde(default)]
    #[param(minimum = 0)]
    offset: i64,
    /// Most results (1..=1000, default 100).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<u32>,
}

/// List packages.
#[utoipa::path(
    get,
    path = "/packages",
    tag = "packages",
    params(PackageQuery),
    responses(
        (status = 200, description = "Packages, oldest first", body = Vec<PackageView>),
        (status = 422, description = "Invalid filter", content_type = "application/problem+json"),
    )
)]
async fn list_packages(
    State(shipping): State<Shipping>,
    Query(query): Query<PackageQuery>,
) -> Result<Json<Vec<PackageView>>, Problem> {
    let limit = query.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(chassis_domain::DomainError::invalid_field(
            "limit",
            "must be between 1 and 1000",
        )
        .into());
    }
    let Ok(offset) = u64::try_from(query.offset) else {
        return Err(
            chassis_domain::DomainError::invalid_field("offset", "must be at least 0").into(),
        );
    };
    let filter = PackageFilter {
        order_id: query.order_id,
        status: query.status.map(|s| match s {
            PackageStatus::Open => domain::PackageStatus::Open,
            PackageStatus::Sent => domain::PackageStatus::Sent,
        }),
    };
    let packages = shipping
        .packages(filter, offset, limit, current_message_context())
        .await?;
    Ok(Json(packages.iter().map(package_view).collect()))
}

/// Read a package.
#[utoipa::path(
    get,
    path = "/packages/{id}",
    tag = "packages",
    params(("id" = Uuid, Path, description = "Package id")),
    responses(
        (status = 200, description = "The package", body = PackageView),
        (status = 404, description = "No such package", content_type = "application/problem+json"),
    )
)]
async fn get_package(
    State(shipping): State<Shipping>,
    Path(id): Path<Uuid>,
) -> Result<Json<PackageView>, Problem> {
    let package = shipping.package(id, current_message_context()).await?;
    Ok(Json(package_view(&package)))
}

/// Change a package's destination (until it is sent).
#[utoipa::path(
    put,
    path = "/packages/{id}/destination",
    tag = "packages",
    params(("id" = Uuid, Path, description = "Package id")),
    request_body = Destination,
    responses(
        (status = 200, description = "The package with its new destination", body = PackageView),
        (status = 404, description = "No such package", content_type = "application/problem+json"),
        (status = 409, description = "The package was already sent", content_type = "application/problem+json"),
        (status = 422, description = "Invalid destination; `errors[].field` names each field", content_type = "application/problem+json"),
    )
)]
async fn change_destination(
    State(shipping): State<Shipping>,
    Path(id): Path<Uuid>,
    Json(destination): Json<Destination>,
) -> Result<Json<PackageView>, Problem> {
    let command = ChangeDestination {
        package_id: id,
        destination: address(&destination)?,
    };
    let package = shipping.execute(command, current_message_context()).await?;
    Ok(Json(package_view(&package)))
}

/// Send a package: it gets a tracking id.
#[utoipa::path(
    post,
    path = "/packages/{id}/send",
    tag = "packages",
    params(("id" = Uuid, Path, description = "Package id")),
    responses(
        (status = 200, description = "Sent; the receipt carries the tracking id", body = SendReceipt),
        (status = 404, description = "No such package", content_type = "application/problem+json"),
        (status = 409, description = "The package was already sent", content_type = "application/problem+json"),
    )
)]
async fn send_package(
    State(shipping): State<Shipping>,
    Path(id): Path<Uuid>,
) -> Result<Json<SendReceipt>, Problem> {
    let package = shipping
        .execute(SendPackage { package_id: id }, current_message_context())
        .await?;
    Ok(Json(SendReceipt {
        id,
        status: PackageStatus::Sent,
        tracking_id: package.tracking_id().unwrap_or_default().to_owned(),
    }))
}

/// A package's tracking events (empty until it is sent).
#[utoipa::path(
    get,
    path = "/packages/{id}/tracking",
    tag = "packages",
    params(("id" = Uuid, Path, description = "Package id")),
    responses(
        (status = 200, description = "Tracking id and events, oldest first", body = Tracking),
        (status = 404, description = "No such package", content_type = "application/problem+json"),
    )
)]
async fn get_tracking(
    State(shipping): State<Shipping>,
    Path(id): Path<Uuid>,
) -> Result<Json<Tracking>, Problem> {
    let package = shipping.package(id, current_message_context()).await?;
    Ok(Json(tracking_view(&package)))
}

/// Record a tracking event reported by the transport provider.
#[utoipa::path(
    post,
    path = "/packages/{id}/tracking",
    tag = "packages",
    params(("id" = Uuid, Path, description = "Package id")),
    request_body = RecordTrackingRequest,
    responses(
        (status = 200, description = "The tracking with the new event", body = Tracking),
        (status = 404, description = "No such package", content_type = "application/problem+json"),
        (status = 409, description = "Not sent yet, or already delivered", content_type = "application/problem+json"),
    )
)]
async fn record_tracking(
    State(shipping): State<Shipping>,
    Path(id): Path<Uuid>,
    Json(request): Json<RecordTrackingRequest>,
) -> Result<Json<Tracking>, Problem> {
    let command = RecordTracking {
        package_id: id,
        status: tracking_status(request.status),
        description: request.description,
    };
    let package = shipping.execute(command, current_message_context()).await?;
    Ok(Json(tracking_view(&package)))
}

/// How an order was packed: its packages and its unshippable items.
#[utoipa::path(
    get,
    path = "/shipments/{order_id}",
    tag = "shipments",
    params(("order_id" = Uuid, Path, description = "Order id")),
    responses(
        (status = 200, description = "The order's shipment", body = ShipmentView),
        (status = 404, description = "The order has not reached shipping (yet)", content_type = "application/problem+json"),
    )
)]
async fn get_shipment(
    State(shipping): State<Shipping>,
    Path(order_id): Path<Uuid>,
) -> Result<Json<ShipmentView>, Problem> {
    let shipment = shipping
        .shipment(order_id, current_message_context())
        .await?;
    Ok(Json(shipment_view(&shipment)))
}
