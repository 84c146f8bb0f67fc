use chassis_client::{CallContext, ClientBuildError, ClientConfig, ClientError, HttpClient, found};
use uuid::Uuid;

use crate::dto::{OrderView, PlaceOrderRequest};
use crate::quote::{QuoteOrderRequest, ShippingQuote};

/// Typed client of the order service. Cheap to clone; clones share one
/// connection pool.
#[derive(Debug, Clone)]
pub struct OrderServiceClient {
    http: HttpClient,
}

impl OrderServiceClient {
    /// A client for the service at `config.base_url`.
    pub fn new(config: &ClientConfig) -> Result<Self, ClientBuildError> {
        Ok(Self::from_http(HttpClient::new(config)?))
    }

    /// A client over an existing transport.
    pub fn from_http(http: HttpClient) -> Self {
        Self { http }
    }

    /// The same client sending the caller's correlation id and trace context.
    pub fn with_context(&self, context: CallContext) -> Self {
        Self::from_http(self.http.with_context(context))
    }

    /// `POST /orders`: places (and completes) an order. A
    /// [`ClientError::Problem`] with status 422 names each invalid field.
    pub async fn place_order(&self, request: &PlaceOrderRequest) -> Result<OrderView, ClientError> {
        Ok(self.http.post("orders", request).await?.body)
    }

    /// `POST /orders/{id}/cancel`: starts the cancellation (202, the order
    /// `cancelling`). 404 unknown order, 409 when it cannot be cancelled
    /// (already cancelled, refused or being cancelled).
    pub async fn cancel_order(&self, id: Uuid) -> Result<OrderView, ClientError> {
        Ok(self
            .http
            .post_empty(&format!("orders/{id}/cancel"))
            .await?
            .body)
    }

    /// `POST /orders/quote`: shipping's quote for the items. 422 names each
    /// invalid field; 503 when shipping is not answering quotes, 504 when it
    /// did not answer in time.
    pub async fn quote(&self, request: &QuoteOrderRequest) -> Result<ShippingQuote, ClientError> {
        Ok(self.http.post("orders/quote", request).await?.body)
    }

    /// `GET /orders/{id}`; `None` when there is no such order.
    pub async fn get_order(&self, id: Uuid) -> Result<Option<OrderView>, ClientError> {
        found(self.http.get(&format!("orders/{id}"), &[]).await)
    }
}
