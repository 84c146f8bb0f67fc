//! The HTTP API. Handlers translate between JSON and the use cases; every
//! error is an RFC 9457 problem (`DomainError` converts into [`Problem`]).
//! `/openapi.json` describes it: the handlers' `#[utoipa::path]` attributes,
//! plus what the chassis's edge answers ([`chassis_web::openapi::document`]).

use chassis_domain::Entity;
// `routes!` names `axum`: the chassis's re-export.
use chassis_web::axum;
use chassis_web::axum::Router;
use chassis_web::axum::extract::{Path, State};
use chassis_web::axum::http::{StatusCode, header};
use chassis_web::axum::response::IntoResponse;
use chassis_web::{ChassisConfig, Json, Problem};
use serde::{Deserialize, Serialize};
use utoipa::{OpenApi, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::app::Items;
use crate::domain::{CreateItem, Item, ItemStats};

/// Body of `POST /items`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CreateItemRequest {
    /// The item's name. The schema states the rule of
    /// `chassis_domain::text::required` with `domain::MAX_NAME_CHARS`
    /// (a test checks they agree).
    #[schema(min_length = 1, max_length = 200, pattern = "[^\\t\\n\\v\\f\\r ]")]
    pub name: String,
}

/// An item as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ItemView {
    /// Its id.
    pub id: Uuid,
    /// Its name.
    pub name: String,
}

/// Item statistics as the API shows them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct StatsView {
    /// Items created so far (eventually consistent).
    pub items_created: u64,
}

impl From<&Item> for ItemView {
    fn from(item: &Item) -> Self {
        Self {
            id: *item.id(),
            name: item.name().to_owned(),
        }
    }
}

impl From<&ItemStats> for StatsView {
    fn from(stats: &ItemStats) -> Self {
        Self {
            items_created: stats.items_created(),
        }
    }
}

#[derive(OpenApi)]
#[openapi(info(title = "{{project-name}}"))]
struct ApiDoc;

/// The service's routes and `/openapi.json` (the host adds `/health/live`
/// and `/health/ready`).
pub fn router(items: Items, chassis: &ChassisConfig) -> Router {
    let (router, mut api) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(create_item))
        .routes(routes!(get_item))
        .routes(routes!(get_stats))
        .with_state(items)
        .split_for_parts();
    chassis_web::openapi::document(&mut api, chassis);
    let api = std::sync::Arc::new(api);
    router.route(
        "/openapi.json",
        chassis_web::axum::routing::get(move || {
            let api = api.clone();
            async move { Json(api.as_ref().clone()) }
        }),
    )
}

/// Create an item.
#[utoipa::path(
    post,
    path = "/items",
    request_body = CreateItemRequest,
    responses(
        (status = 201, description = "Created", body = ItemView,
         headers(("location" = String, description = "URL of the new item"))),
        (status = 422, description = "Invalid name; `errors[].field` names it",
         content_type = "application/problem+json"),
    )
)]
async fn create_item(
    State(items): State<Items>,
    Json(request): Json<CreateItemRequest>,
) -> Result<impl IntoResponse, Problem> {
    let item = items
        .create(CreateItem { name: request.name })
        .await?;
    let location = format!("/items/{}", item.id());
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        Json(ItemView::from(&item)),
    ))
}

/// Read an item.
#[utoipa::path(
    get,
    path = "/items/{id}",
    params(("id" = Uuid, Path, description = "Item id")),
    responses(
        (status = 200, description = "The item", body = ItemView),
        (status = 404, description = "No such item", content_type = "application/problem+json"),
    )
)]
async fn get_item(
    State(items): State<Items>,
    Path(id): Path<Uuid>,
) -> Result<Json<ItemView>, Problem> {
    let item = items.get(id).await?;
    Ok(Json(ItemView::from(&item)))
}

/// How many items were created (eventually consistent).
#[utoipa::path(
    get,
    path = "/stats",
    responses((status = 200, description = "Item statistics", body = StatsView))
)]
async fn get_stats(State(items): State<Items>) -> Result<Json<StatsView>, Problem> {
    let stats = items.stats().await?;
    Ok(Json(StatsView::from(&stats)))
}
