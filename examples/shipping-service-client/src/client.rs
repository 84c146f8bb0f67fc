use chassis_client::{CallContext, ClientBuildError, ClientConfig, ClientError, HttpClient, found};
use uuid::Uuid;

use crate::dto::{
    Destination, PackageView, RecordTrackingRequest, SendReceipt, ShipmentView, Tracking,
};

/// Typed client of the shipping service. Cheap to clone; clones share one
/// connection pool.
#[derive(Debug, Clone)]
pub struct ShippingServiceClient {
    http: HttpClient,
}

impl ShippingServiceClient {
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

    /// `GET /packages?order_id={id}`: the packages holding units of the order.
    pub async fn packages_for_order(
        &self,
        order_id: Uuid,
    ) -> Result<Vec<PackageView>, ClientError> {
        let id = order_id.to_string();
        Ok(self.http.get("packages", &[("order_id", &id)]).await?.body)
    }

    /// `GET /packages`: all packages, oldest first (first `limit`).
    pub async fn list_packages(&self, limit: u32) -> Result<Vec<PackageView>, ClientError> {
        let limit = limit.to_string();
        Ok(self.http.get("packages", &[("limit", &limit)]).await?.body)
    }

    /// `GET /packages/{id}`; `None` when there is no such package.
    pub async fn get_package(&self, id: Uuid) -> Result<Option<PackageView>, ClientError> {
        found(self.http.get(&format!("packages/{id}"), &[]).await)
    }

    /// `PUT /packages/{id}/destination`; a 409 [`ClientError::Problem`] once
    /// the package was sent.
    pub async fn change_destination(
        &self,
        id: Uuid,
        destination: &Destination,
    ) -> Result<PackageView, ClientError> {
        Ok(self
            .http
            .put(&format!("packages/{id}/destination"), destination)
            .await?
            .body)
    }

    /// `POST /packages/{id}/send`: hands the package over; the receipt
    /// carries the tracking id.
    pub async fn send_package(&self, id: Uuid) -> Result<SendReceipt, ClientError> {
        Ok(self
            .http
            .post_empty(&format!("packages/{id}/send"))
            .await?
            .body)
    }

    /// `GET /packages/{id}/tracking`.
    pub async fn tracking(&self, id: Uuid) -> Result<Tracking, ClientError> {
        Ok(self
            .http
            .get(&format!("packages/{id}/tracking"), &[])
            .await?
            .body)
    }

    /// `POST /packages/{id}/tracking`: records a step reported by the provider.
    pub async fn record_tracking(
        &self,
        id: Uuid,
        request: &RecordTrackingRequest,
    ) -> Result<Tracking, ClientError> {
        Ok(self
            .http
            .post(&format!("packages/{id}/tracking"), request)
            .await?
            .body)
    }

    /// `GET /shipments/{order_id}`: how an order was packed; `None` while
    /// the order has not reached shipping.
    pub async fn shipment(&self, order_id: Uuid) -> Result<Option<ShipmentView>, ClientError> {
        found(self.http.get(&format!("shipments/{order_id}"), &[]).await)
    }
}
