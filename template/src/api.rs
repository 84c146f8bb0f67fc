//! The HTTP API. Handlers translate between JSON and the use cases; every
//! error is an RFC 9457 problem (`DomainError` converts into [`Problem`]).

use chassis_domain::Entity;
use chassis_web::axum::Router;
use chassis_web::axum::extract::{Path, State};
use chassis_web::axum::http::{StatusCode, header};
use chassis_web::axum::response::IntoResponse;
use chassis_web::axum::routing::{get, post};
use chassis_web::{Json, Problem};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::app::Items;
use crate::domain::{CreateItem, Item, ItemStats};

/// Body of `POST /items`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CreateItemRequest {
    /// The item's name.
    pub name: String,
}

/// An item as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ItemView {
    /// Its id.
    pub id: Uuid,
    /// Its name.
    pub name: String,
}

/// Item statistics as the API shows them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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

/// The service's routes (the host adds `/health/live` and `/health/ready`).
pub fn router(items: Items) -> Router {
    Router::new()
        .route("/items", post(create_item))
        .route("/items/{id}", get(get_item))
        .route("/stats", get(get_stats))
        .with_state(items)
}

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

async fn get_item(
    State(items): State<Items>,
    Path(id): Path<Uuid>,
) -> Result<Json<ItemView>, Problem> {
    let item = items.get(id).await?;
    Ok(Json(ItemView::from(&item)))
}

async fn get_stats(State(items): State<Items>) -> Result<Json<StatsView>, Problem> {
    let stats = items.stats().await?;
    Ok(Json(StatsView::from(&stats)))
}
