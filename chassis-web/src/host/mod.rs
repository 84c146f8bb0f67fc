//! The service host: [`ServiceHost::builder`] → [`ServiceHostBuilder::run`].
//!
//! - this module: the builder (what a service declares);
//! - `start`: bringing the concerns up, serving, the command-line flags;
//! - `context`: what routes, hooks and tasks get ([`ServiceContext`]);
//! - `running`: a started service and its graceful shutdown;
//! - `error`: why start-up or shutdown failed;
//! - `probe`: the `--healthcheck` flag.

mod context;
mod error;
pub mod probe;
mod running;
mod start;

use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};

use axum::Router;
use chassis_core::HealthCheck;
use logging_init::BoxedLayer;
use messaging_abstractions::EventBus;
use messaging_abstractions::asyncapi::{self, Catalog};
use storage_abstractions::{Migration, Store};
use tokio::task::JoinHandle;

use crate::config::{ConfigError, ConfigLoader, ConfigValue, Configuration};

pub use context::ServiceContext;
pub use error::{ShutdownIncomplete, StartupError};
pub use running::RunningService;

/// Any error a service's start-up hook or background task may return.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;
type RoutesFn = Box<dyn FnOnce(&ServiceContext) -> Router + Send>;
type StartHook = Box<dyn FnOnce(ServiceContext) -> BoxFuture<Result<(), BoxError>> + Send>;
type TaskList = Vec<(String, JoinHandle<Result<(), BoxError>>)>;

/// The command-line flag that prints the effective configuration and exits.
pub const PRINT_CONFIG_FLAG: &str = "--print-config";

/// The command-line flag that prints the service's AsyncAPI document (what
/// [`asyncapi::ASYNCAPI_PATH`](crate::asyncapi::ASYNCAPI_PATH) serves) and
/// exits; it connects to nothing.
pub const PRINT_ASYNCAPI_FLAG: &str = "--print-asyncapi";

/// The command-line flag that applies the service's migrations
/// ([`ServiceHostBuilder::migrations`]) and exits: for a Kubernetes init
/// job, so replicas start on a migrated schema.
pub const MIGRATE_ONLY_FLAG: &str = "--migrate-only";

/// Entry point of the host; see [`ServiceHost::builder`].
#[derive(Debug)]
pub struct ServiceHost;

impl ServiceHost {
    /// Starts describing the service `name` (the default `service.name`).
    pub fn builder(name: impl Into<String>) -> ServiceHostBuilder {
        ServiceHostBuilder {
            name: name.into(),
            version: None,
            loader: ConfigLoader::new(),
            args: None,
            routes: Vec::new(),
            hooks: Vec::new(),
            bus: None,
            store: None,
            migrations: &[],
            checks: Vec::new(),
            log_layers: Vec::new(),
            install_logging: true,
            catalog: Catalog::new(),
            catalog_errors: Vec::new(),
        }
    }
}

/// Describes a service: its routes, start-up hooks, and optionally injected
/// concerns and configuration overrides. Build it with [`ServiceHost::builder`].
#[must_use = "a builder does nothing until `run` or `start` is called"]
pub struct ServiceHostBuilder {
    name: String,
    version: Option<String>,
    loader: ConfigLoader,
    args: Option<Vec<String>>,
    routes: Vec<RoutesFn>,
    hooks: Vec<StartHook>,
    bus: Option<Arc<dyn EventBus>>,
    store: Option<Arc<dyn Store>>,
    migrations: &'static [Migration],
    checks: Vec<Arc<dyn HealthCheck>>,
    log_layers: Vec<BoxedLayer>,
    install_logging: bool,
    catalog: Catalog,
    catalog_errors: Vec<crate::asyncapi::SchemaError>,
}

impl std::fmt::Debug for ServiceHostBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceHostBuilder")
            .field("name", &self.name)
            .field("loader", &self.loader)
            .field("injected_bus", &self.bus.is_some())
            .field("injected_store", &self.store.is_some())
            .finish_non_exhaustive()
    }
}

impl ServiceHostBuilder {
    /// The service's own schema migrations (its tables; `docs/storage.md`),
    /// embedded in its binary. They are applied at start-up, once the store
    /// is up and before any start-up hook subscribes a consumer, under the
    /// lock the chassis's migrations take; a failure stops start-up naming
    /// the migration and the database's error, and a provider without SQL
    /// (`inmemory`) stops it naming the fix.
    pub fn migrations(mut self, migrations: &'static [Migration]) -> Self {
        self.migrations = migrations;
        self
    }

    /// The `storage.provider` that runs this service without a server
    /// (tests, embedded demos): `inmemory`, or `sqlite` (a private database
    /// unless `storage.sqlite.path` is set) for a service with tables of its
    /// own ([`migrations`](Self::migrations)), which needs SQL. Set it with
    /// `.config("storage.provider", host.embedded_storage_provider())`.
    pub fn embedded_storage_provider(&self) -> &'static str {
        if self.migrations.is_empty() {
            "inmemory"
        } else {
            "sqlite"
        }
    }

    /// The service's version (default `service.version`), usually
    /// `env!("CARGO_PKG_VERSION")`.
    pub fn version(mut self, version: impl Into<String>) -> Self {
        self.version = Some(version.into());
        self
    }

    /// The routes of the service, built once the concerns are up. Called
    /// several times, the routers are merged.
    pub fn routes<F>(mut self, routes: F) -> Self
    where
        F: FnOnce(&ServiceContext) -> Router + Send + 'static,
    {
        self.routes.push(Box::new(routes));
        self
    }

    /// An async step run after the bus and store are up and before HTTP
    /// serves: subscribe consumers, spawn background tasks
    /// ([`ServiceContext::spawn`]), register health checks. Hooks run in
    /// order; an error aborts start-up.
    pub fn on_start<F, Fut>(mut self, hook: F) -> Self
    where
        F: FnOnce(ServiceContext) -> Fut + Send + 'static,
        Fut: Future<Output = Result<(), BoxError>> + Send + 'static,
    {
        self.hooks.push(Box::new(move |ctx| Box::pin(hook(ctx))));
        self
    }

    /// Routes built from what a start-up step produced (checked settings, a
    /// client, a saga runner), so routes neither read a section again nor
    /// `.expect` what a hook has checked. `start` runs in order with the
    /// [`on_start`](Self::on_start) hooks — its error aborts start-up like
    /// theirs — and `routes` receives its value once every hook has run.
    ///
    /// ```
    /// use axum::Router;
    /// use axum::routing::get;
    /// use chassis_web::{BoxError, ServiceHost};
    ///
    /// #[derive(serde::Deserialize)]
    /// #[serde(default)]
    /// struct Greeting {
    ///     text: String,
    /// }
    /// impl Default for Greeting {
    ///     fn default() -> Self {
    ///         Self { text: "hello".into() }
    ///     }
    /// }
    ///
    /// let host = ServiceHost::builder("greeter").routes_with_state(
    ///     |ctx| async move {
    ///         let greeting: Greeting = ctx.section("greeting")?;
    ///         if greeting.text.is_empty() {
    ///             return Err(BoxError::from("greeting.text: expected a non-empty text"));
    ///         }
    ///         Ok(greeting)
    ///     },
    ///     |_ctx, greeting| Router::new().route("/", get(move || async move { greeting.text })),
    /// );
    /// # let _ = host;
    /// ```
    pub fn routes_with_state<S, F, Fut, R>(mut self, start: F, routes: R) -> Self
    where
        S: Send + 'static,
        F: FnOnce(ServiceContext) -> Fut + Send + 'static,
        Fut: Future<Output = Result<S, BoxError>> + Send + 'static,
        R: FnOnce(&ServiceContext, S) -> Router + Send + 'static,
    {
        let slot = Arc::new(Mutex::new(None));
        let filled = slot.clone();
        self.hooks.push(Box::new(move |ctx| {
            Box::pin(async move {
                let state = start(ctx).await?;
                *filled.lock().unwrap_or_else(PoisonError::into_inner) = Some(state);
                Ok(())
            })
        }));
        self.routes.push(Box::new(move |ctx| {
            // The host runs every start-up hook before it builds a route and
            // stops at the first that fails: the slot is filled by now.
            let state = slot
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .take()
                .expect("start-up hooks run before routes are built");
            routes(ctx, state)
        }));
        self
    }

    /// Uses this event bus instead of building the one `messaging.provider`
    /// names (tests, several services sharing one in-memory bus). The host
    /// neither stops an injected bus' consumers nor shuts it down at
    /// shutdown: its owner does.
    pub fn event_bus(mut self, bus: Arc<dyn EventBus>) -> Self {
        self.bus = Some(bus);
        self
    }

    /// Uses this store instead of building the one `storage.provider` names.
    /// The host does not shut an injected store down.
    pub fn store(mut self, store: Arc<dyn Store>) -> Self {
        self.store = Some(store);
        self
    }

    /// Adds a readiness check (the bus' and store's own are added anyway).
    pub fn health_check(mut self, check: Arc<dyn HealthCheck>) -> Self {
        self.checks.push(check);
        self
    }

    /// Sets a configuration value above every other layer, e.g.
    /// `.config("http.port", 0)`.
    pub fn config(mut self, key: &str, value: impl Into<ConfigValue>) -> Self {
        self.loader = self.loader.set(key, value);
        self
    }

    /// Declares a configuration section of the service's own, read as `T`
    /// (e.g. `.declare_section::<ShippingConfig>("shipping")`): start-up
    /// refuses a top-level section that is neither the chassis' nor
    /// declared, and a declared one that does not read as `T` (naming the key
    /// path and the layer); `--print-config` shows it with its defaults.
    /// Routes and hooks read it with [`ServiceContext::section`].
    pub fn declare_section<T>(mut self, key: impl Into<String>) -> Self
    where
        T: serde::de::DeserializeOwned + serde::Serialize,
    {
        self.loader = self.loader.declare_section::<T>(key);
        self
    }

    /// Reads configuration files from `dir` (default `CHASSIS_CONFIG_DIR`, or `./config`).
    pub fn config_dir(mut self, dir: impl Into<std::path::PathBuf>) -> Self {
        self.loader = self.loader.config_dir(dir);
        self
    }

    /// Picks `config/{name}.toml` (default `CHASSIS_ENV`, or `development`).
    pub fn environment(mut self, name: impl Into<String>) -> Self {
        self.loader = self.loader.environment(name);
        self
    }

    /// Reads configuration variables from this list instead of the process
    /// environment (tests); the issuer's keys (`jwks` feature) are then
    /// fetched through the proxy this list names (`HTTPS_PROXY`, `NO_PROXY`, ...).
    pub fn env_vars<K, V>(mut self, vars: impl IntoIterator<Item = (K, V)>) -> Self
    where
        K: Into<String>,
        V: Into<String>,
    {
        self.loader = self.loader.env_vars(vars);
        self
    }

    /// Command-line arguments (without the program name) instead of the
    /// process'; only [`PRINT_CONFIG_FLAG`], [`PRINT_ASYNCAPI_FLAG`], [`MIGRATE_ONLY_FLAG`] and
    /// `--healthcheck` are interpreted.
    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.args = Some(args.into_iter().map(Into::into).collect());
        self
    }

    /// Adds a layer to the global subscriber next to the logging provider's
    /// (e.g. a layer capturing events in a test).
    pub fn log_layer<L>(mut self, layer: L) -> Self
    where
        L: tracing_subscriber::Layer<tracing_subscriber::Registry> + Send + Sync + 'static,
    {
        self.log_layers.push(Box::new(layer));
        self
    }

    /// Whether to install the global `tracing` subscriber (default `true`).
    /// When one is installed already (another host in the process, a test
    /// harness), the host keeps it and says so at DEBUG.
    pub fn install_logging(mut self, install: bool) -> Self {
        self.install_logging = install;
        self
    }

    /// Declares that the service publishes `E` (directly or through its
    /// outbox): a `send` operation of its AsyncAPI document, with the
    /// payload schema of `E`'s `utoipa::ToSchema`.
    ///
    /// Once a service declares any message, the host holds it to its
    /// declarations: subscribing a handler for an event type not declared
    /// received (`subscribes`, `answers`, the reply of `requests`) fails,
    /// naming the type and the call to add; publishing an undeclared type is
    /// logged at WARN, once per type.
    #[cfg(feature = "openapi")]
    pub fn publishes<E>(self) -> Self
    where
        E: messaging_abstractions::IntegrationEvent + utoipa::ToSchema,
    {
        self.declare(|catalog| Ok(catalog.publishes(crate::asyncapi::message_schema::<E>()?)))
    }

    /// Declares that the service's consumer group receives `E` (the
    /// handlers it subscribes): a `receive` operation.
    #[cfg(feature = "openapi")]
    pub fn subscribes<E>(self) -> Self
    where
        E: messaging_abstractions::IntegrationEvent + utoipa::ToSchema,
    {
        self.declare(|catalog| Ok(catalog.subscribes(crate::asyncapi::message_schema::<E>()?)))
    }

    /// Declares that the service asks `R` (a `RequestClient<R>`) and awaits
    /// `R::Response`: a `send` operation with its `reply`.
    #[cfg(feature = "openapi")]
    pub fn requests<R>(self) -> Self
    where
        R: messaging_abstractions::Request + utoipa::ToSchema,
        R::Response: utoipa::ToSchema,
    {
        self.declare(|catalog| {
            Ok(catalog.requests(
                crate::asyncapi::message_schema::<R>()?,
                crate::asyncapi::message_schema::<R::Response>()?,
            ))
        })
    }

    /// Declares that the service answers `R` (its `Responders`) with
    /// `R::Response`: a `receive` operation with its `reply`.
    #[cfg(feature = "openapi")]
    pub fn answers<R>(self) -> Self
    where
        R: messaging_abstractions::Request + utoipa::ToSchema,
        R::Response: utoipa::ToSchema,
    {
        self.declare(|catalog| {
            Ok(catalog.answers(
                crate::asyncapi::message_schema::<R>()?,
                crate::asyncapi::message_schema::<R::Response>()?,
            ))
        })
    }

    /// Adds to the catalog; a schema error is kept for `asyncapi_document`
    /// and `start` to report (the builder itself cannot fail).
    #[cfg(feature = "openapi")]
    fn declare(
        mut self,
        add: impl FnOnce(Catalog) -> Result<Catalog, crate::asyncapi::SchemaError>,
    ) -> Self {
        let before = self.catalog.clone();
        match add(std::mem::take(&mut self.catalog)) {
            Ok(catalog) => self.catalog = catalog,
            Err(error) => {
                self.catalog = before;
                self.catalog_errors.push(error);
            }
        }
        self
    }

    /// Declares messages of the service's AsyncAPI document by hand
    /// (messages whose types have no `utoipa::ToSchema`, or a service
    /// without the `openapi` feature): `declare` gets the catalog declared
    /// so far and returns it with more.
    pub fn messages(mut self, declare: impl FnOnce(Catalog) -> Catalog) -> Self {
        self.catalog = declare(std::mem::take(&mut self.catalog));
        self
    }

    /// The service's AsyncAPI 3.0 document, as [`PRINT_ASYNCAPI_FLAG`]
    /// prints and [`ASYNCAPI_PATH`](crate::asyncapi::ASYNCAPI_PATH) serves:
    /// the declared messages on the configured provider's broker. Connects
    /// to nothing.
    pub fn asyncapi_document(&self) -> Result<serde_json::Value, StartupError> {
        self.asyncapi_document_for(&self.load_config()?)
    }

    fn asyncapi_document_for(
        &self,
        config: &Configuration,
    ) -> Result<serde_json::Value, StartupError> {
        let chassis = config.chassis();
        let binding = messaging_init::broker_binding(&chassis.messaging, config)?;
        self.asyncapi_document_on(config, binding.as_ref())
    }

    fn asyncapi_document_on(
        &self,
        config: &Configuration,
        binding: &dyn asyncapi::BrokerBinding,
    ) -> Result<serde_json::Value, StartupError> {
        if let Some(error) = self.catalog_errors.first() {
            return Err(StartupError::AsyncApi(error.clone()));
        }
        let service = &config.chassis().service;
        let version = Some(service.version.clone())
            .filter(|v| !v.is_empty())
            .unwrap_or_else(|| "0.0.0".to_owned());
        let info = asyncapi::Info::new(service.name.clone(), version);
        Ok(asyncapi::document(&info, &self.catalog, binding))
    }

    fn loader(&self) -> ConfigLoader {
        let version = self.version.clone().unwrap_or_default();
        self.loader
            .clone()
            .default_value("service.name", self.name.clone())
            .default_value("service.version", version)
    }

    /// Loads the layered configuration as `start` would.
    pub fn load_config(&self) -> Result<Configuration, ConfigError> {
        self.loader().load()
    }
}
