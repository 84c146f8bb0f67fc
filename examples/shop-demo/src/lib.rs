//! The embedded demo: the order and shipping services in one process, on the
//! embedded defaults (in-memory bus, the order service's documents in
//! memory, the shipping service's tables in SQLite — no server needed), each
//! on its own port and with its own store, sharing one in-memory bus.
//!
//! The order service's host builds the bus named by its configuration; the
//! shipping service's host is given that same bus. Everything else goes
//! through the services' HTTP APIs with their service access crates.
//!
//! ```no_run
//! # async fn demo() -> Result<(), shop_demo::DemoError> {
//! use std::time::Duration;
//! let options = shop_demo::DemoOptions { order_port: 0, shipping_port: 0, log_level: None };
//! let demo = shop_demo::Demo::start(&options).await?;
//! let orders = demo.place_sample_orders().await?;
//! let report = demo.await_packed(&orders, Duration::from_secs(10)).await?;
//! assert!(report.missing.is_empty());
//! demo.shutdown().await;
//! # Ok(()) }
//! ```

pub mod samples;

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use chassis_web::{RunningService, StartupError};
use order_service_client::dto::OrderView;
use order_service_client::{ClientConfig, ClientError, OrderServiceClient};
use shipping_service_client::ShippingServiceClient;
use shipping_service_client::dto::{PackageView, UnshippableItem};
use uuid::Uuid;

/// Why the demo could not run.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    /// A service did not start.
    #[error("{service} did not start: {source}")]
    Startup {
        /// Which service.
        service: &'static str,
        /// Why.
        #[source]
        source: StartupError,
    },
    /// A call to a service failed.
    #[error(transparent)]
    Client(#[from] ClientError),
    /// A client could not be built.
    #[error(transparent)]
    ClientBuild(#[from] order_service_client::ClientBuildError),
}

/// Ordered units of one line not (yet) in any package.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Missing {
    /// The order.
    pub order_id: Uuid,
    /// The line's SKU.
    pub sku: String,
    /// Units ordered.
    pub ordered: u64,
    /// Units found in packages.
    pub packed: u64,
}

impl fmt::Display for Missing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "order {} {}: {} of {} units packed",
            self.order_id, self.sku, self.packed, self.ordered
        )
    }
}

/// What shipping made of the orders.
#[derive(Debug, Clone, Default)]
pub struct PackingReport {
    /// Every package holding units of the orders (each once).
    pub packages: Vec<PackageView>,
    /// Lines not completely packed.
    pub missing: Vec<Missing>,
    /// Items recorded as unshippable, per order.
    pub unshippable: Vec<(Uuid, UnshippableItem)>,
}

/// How to run the demo.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DemoOptions {
    /// Port of the order service (0: any free port).
    pub order_port: u16,
    /// Port of the shipping service (0: any free port).
    pub shipping_port: u16,
    /// `logging.level` of both services (their configuration's when `None`).
    pub log_level: Option<String>,
}

impl Default for DemoOptions {
    fn default() -> Self {
        Self {
            order_port: 8081,
            shipping_port: 8082,
            log_level: None,
        }
    }
}

/// Both services, running.
pub struct Demo {
    order: RunningService,
    shipping: RunningService,
    /// Client of the order service.
    pub orders: OrderServiceClient,
    /// Client of the shipping service.
    pub shipping_client: ShippingServiceClient,
}

impl fmt::Debug for Demo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Demo")
            .field("order_service", &self.order.base_url())
            .field("shipping_service", &self.shipping.base_url())
            .finish()
    }
}

impl Demo {
    /// Starts both services, sharing one bus.
    pub async fn start(options: &DemoOptions) -> Result<Self, DemoError> {
        let local = |host: chassis_web::ServiceHostBuilder, port: u16| {
            // Each on its embedded store: the order service's documents in
            // memory, the shipping service's tables in a private SQLite
            // database.
            let storage = host.embedded_storage_provider();
            let host = host
                .config("storage.provider", storage)
                .config("http.port", i64::from(port))
                .config("http.host", "127.0.0.1")
                // The embedded demo is the development set-up: no credentials
                // (the services' production config turns authentication on).
                .config("security.auth.enabled", false)
                .args(Vec::<String>::new());
            match &options.log_level {
                Some(level) => host.config("logging.level", level.as_str()),
                None => host,
            }
        };
        let order = local(order_service::host(), options.order_port)
            .start()
            .await
            .map_err(|source| DemoError::Startup {
                service: order_service::SERVICE_NAME,
                source,
            })?;
        let shipping = local(shipping_service::host(), options.shipping_port)
            .event_bus(order.context().bus().clone())
            .start()
            .await;
        let shipping = match shipping {
            Ok(shipping) => shipping,
            Err(source) => {
                let _ = order.shutdown().await;
                return Err(DemoError::Startup {
                    service: shipping_service::SERVICE_NAME,
                    source,
                });
            }
        };
        Ok(Self {
            orders: OrderServiceClient::new(&ClientConfig::new(order.base_url()))?,
            shipping_client: ShippingServiceClient::new(&ClientConfig::new(shipping.base_url()))?,
            order,
            shipping,
        })
    }

    /// Base URL of the order service.
    pub fn order_url(&self) -> String {
        self.order.base_url()
    }

    /// Base URL of the shipping service.
    pub fn shipping_url(&self) -> String {
        self.shipping.base_url()
    }

    /// Places the [`samples::orders`] through the order service's API.
    pub async fn place_sample_orders(&self) -> Result<Vec<OrderView>, DemoError> {
        let mut placed = Vec::new();
        for request in samples::orders() {
            placed.push(self.orders.place_order(&request).await?);
        }
        Ok(placed)
    }

    /// What shipping has packed of `orders` right now.
    pub async fn packing_report(&self, orders: &[OrderView]) -> Result<PackingReport, DemoError> {
        packing_report(&self.shipping_client, orders).await
    }

    /// Waits until every item of `orders` is packed, at most `wait`.
    pub async fn await_packed(
        &self,
        orders: &[OrderView],
        wait: Duration,
    ) -> Result<PackingReport, DemoError> {
        await_packed(&self.shipping_client, orders, wait).await
    }

    /// Stops the shipping service, then the order service (which owns the
    /// shared bus). Returns what did not stop cleanly.
    pub async fn shutdown(self) -> Vec<String> {
        let mut problems = Vec::new();
        if let Err(e) = self.shipping.shutdown().await {
            problems.push(format!("shipping-service: {e}"));
        }
        if let Err(e) = self.order.shutdown().await {
            problems.push(format!("order-service: {e}"));
        }
        problems
    }
}

/// What the shipping service has packed of `orders` right now.
pub async fn packing_report(
    shipping: &ShippingServiceClient,
    orders: &[OrderView],
) -> Result<PackingReport, DemoError> {
    let mut report = PackingReport::default();
    let mut seen = BTreeMap::new();
    for order in orders {
        let packages = shipping.packages_for_order(order.id).await?;
        for item in &order.items {
            let packed: u64 = packages
                .iter()
                .flat_map(|p| &p.items)
                .filter(|i| i.order_id == order.id && i.sku == item.sku)
                .map(|i| u64::from(i.quantity))
                .sum();
            let ordered = u64::try_from(item.quantity).unwrap_or_default();
            if packed != ordered {
                report.missing.push(Missing {
                    order_id: order.id,
                    sku: item.sku.clone(),
                    ordered,
                    packed,
                });
            }
        }
        if let Some(shipment) = shipping.shipment(order.id).await? {
            report
                .unshippable
                .extend(shipment.unshippable.into_iter().map(|u| (order.id, u)));
        }
        for package in packages {
            seen.insert(package.id, package);
        }
    }
    report.packages = seen.into_values().collect();
    Ok(report)
}

/// Asks the shipping service every 50 ms until every item of `orders` is
/// packed, at most `wait`; the last report (with what is missing) either
/// way. (Across processes there is nothing to be woken by; in-process tests
/// use `chassis-testing` instead.)
pub async fn await_packed(
    shipping: &ShippingServiceClient,
    orders: &[OrderView],
    wait: Duration,
) -> Result<PackingReport, DemoError> {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let report = packing_report(shipping, orders).await?;
        if report.missing.is_empty() || tokio::time::Instant::now() >= deadline {
            return Ok(report);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
