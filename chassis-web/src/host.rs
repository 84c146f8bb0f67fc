//! The service host: [`ServiceHost::builder`] → [`ServiceHostBuilder::run`].

use std::net::SocketAddr;
use std::pin::Pin;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use chassis_core::HealthCheck;
use chassis_storage::{OutboxBacklogCheck, Storage};
use logging_init::{BoxedLayer, LoggingInitError};
use messaging_abstractions::EventBus;
use messaging_init::MessagingInitError;
use serde::de::DeserializeOwned;
use storage_abstractions::Store;
use storage_init::StorageInitError;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use traces_init::{TracingInitError, TracingProvider};
use tracing::Instrument;

use crate::config::{ChassisConfig, ConfigError, ConfigLoader, Configuration};
use crate::health::Health;
use crate::middleware::{ConnectPeers, standard_stack};
use crate::shutdown::{ShutdownHandle, ShutdownSignal, os_signal};
use crate::telemetry::{HostTelemetry, MetricsError};

/// Any error a service's start-up hook or background task may return.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;
type RoutesFn = Box<dyn FnOnce(&ServiceContext) -> Router + Send>;
type StartHook = Box<dyn FnOnce(ServiceContext) -> BoxFuture<Result<(), BoxError>> + Send>;
type TaskList = Vec<(String, JoinHandle<Result<(), BoxError>>)>;

/// The command-line flag that prints the effective configuration and exits.
pub const PRINT_CONFIG_FLAG: &str = "--print-config";

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
            checks: Vec::new(),
            log_layers: Vec::new(),
            install_logging: true,
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
    checks: Vec<Arc<dyn HealthCheck>>,
    log_layers: Vec<BoxedLayer>,
    install_logging: bool,
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

    /// Uses this event bus instead of building the one `messaging.provider`
    /// names (tests, several services sharing one in-memory bus). The host
    /// does not shut an injected bus down: its owner does.
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
    pub fn config(mut self, key: &str, value: impl Into<config::ValueKind>) -> Self {
        self.loader = self.loader.set(key, value);
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
    /// environment (tests).
    pub fn env_vars<K, V>(mut self, vars: impl IntoIterator<Item = (K, V)>) -> Self
    where
        K: Into<String>,
        V: Into<String>,
    {
        self.loader = self.loader.env_vars(vars);
        self
    }

    /// Command-line arguments (without the program name) instead of the
    /// process'; only [`PRINT_CONFIG_FLAG`] and `--healthcheck` are interpreted.
    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.args = Some(args.into_iter().map(Into::into).collect());
        self
    }

    /// Adds a layer to the global subscriber next to the logging provider's
    /// (e.g. an OpenTelemetry layer).
    pub fn log_layer(mut self, layer: BoxedLayer) -> Self {
        self.log_layers.push(layer);
        self
    }

    /// Whether to install the global `tracing` subscriber (default `true`).
    /// When one is installed already (another host in the process, a test
    /// harness), the host keeps it and says so at DEBUG.
    pub fn install_logging(mut self, install: bool) -> Self {
        self.install_logging = install;
        self
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

    /// Runs the service until SIGINT/SIGTERM, then shuts down gracefully.
    ///
    /// With `--print-config` it prints the effective configuration instead
    /// and exits; with `--healthcheck` it probes `/health/ready` of the
    /// service this configuration describes (for container HEALTHCHECKs in
    /// images without curl) and exits 0 when it answers 200. A start-up error prints one line to stderr and returns a
    /// failure exit code.
    pub async fn run(self) -> ExitCode {
        let args = self
            .args
            .clone()
            .unwrap_or_else(|| std::env::args().skip(1).collect());
        if args
            .iter()
            .any(|a| a == crate::healthcheck::HEALTHCHECK_FLAG)
        {
            return crate::healthcheck::run(&self);
        }
        if args.iter().any(|a| a == PRINT_CONFIG_FLAG) {
            return match self.load_config() {
                Ok(config) => {
                    print!("{}", config.render());
                    ExitCode::SUCCESS
                }
                Err(error) => fail(&StartupError::Config(error)),
            };
        }
        let running = match self.start().await {
            Ok(running) => running,
            Err(error) => return fail(&error),
        };
        let handle = running.shutdown_handle();
        let signals = tokio::spawn(async move {
            os_signal().await;
            handle.trigger();
        });
        let result = running.wait().await;
        signals.abort();
        if let Err(error) = &result {
            tracing::error!(%error, "shutdown incomplete");
            eprintln!("error: {error}");
        }
        // Log lines are written by a background thread: the last ones must
        // be out before the process exits.
        let _ = tokio::task::spawn_blocking(|| logging_init::flush(Duration::from_secs(2))).await;
        match result {
            Ok(()) => ExitCode::SUCCESS,
            Err(_) => ExitCode::FAILURE,
        }
    }

    /// Starts the service and returns once it serves HTTP. Tests use this
    /// with `.config("http.port", 0)` and [`RunningService::local_addr`].
    pub async fn start(self) -> Result<RunningService, StartupError> {
        let config = Arc::new(self.load_config()?);
        let chassis = config.chassis().clone();
        let service = chassis.service.name.clone();
        let version = Some(chassis.service.version.clone()).filter(|v| !v.is_empty());
        let tracing = traces_init::build(
            &chassis
                .tracing
                .clone()
                .with_host_service(service.clone(), version),
        )?;
        // One subscriber: the logging provider, the tracing layer, extra layers.
        let mut layers = self.log_layers;
        layers.extend(tracing.layer());
        // Whether the global subscriber will be this host's (with its tracing layer).
        let installs = self.install_logging && !tracing::dispatcher::has_been_set();
        init_logging(&chassis, self.install_logging, layers)?;
        let telemetry = HostTelemetry::start(&config, &tracing, installs)?;
        let span = tracing::info_span!("service", service = %service);
        let security = crate::security::Security::build(&chassis.security)?;
        async move {
            let mut concerns = Concerns::default();
            let store = match self.store {
                Some(store) => store,
                None => {
                    let store = storage_init::build(&chassis.storage).await?;
                    concerns.owned_store = Some(store.clone());
                    store
                }
            };
            let bus = match self.bus {
                Some(bus) => bus,
                None => match messaging_init::build(&chassis.messaging, config.as_ref(), &service)
                    .await
                {
                    Ok(bus) => {
                        concerns.owned_bus = Some(bus.clone());
                        bus
                    }
                    Err(error) => {
                        concerns.stop(chassis.http.shutdown_timeout).await;
                        return Err(error.into());
                    }
                },
            };
            let bus = telemetry.wrap_bus(bus);
            let store = telemetry.wrap_store(store);
            let health = Health::new(chassis.http.readiness_check_timeout);
            for check in bus
                .health_checks()
                .into_iter()
                .chain(store.health_checks())
                .chain(self.checks)
            {
                health.register(check);
            }
            let context = ServiceContext {
                inner: Arc::new(ContextInner {
                    config: config.clone(),
                    bus,
                    store,
                    health: health.clone(),
                    signal: ShutdownSignal::new(),
                    tasks: Mutex::new(Vec::new()),
                }),
            };
            concerns.context = Some(context.clone());
            telemetry.on_context(&context);
            for hook in self.hooks {
                if let Err(error) = hook(context.clone()).await {
                    concerns.stop(chassis.http.shutdown_timeout).await;
                    return Err(StartupError::Hook(error));
                }
            }
            let mut router = Router::new();
            for routes in self.routes {
                router = router.merge(routes(&context));
            }
            let router = telemetry.router(router.merge(health.routes()));
            let router = standard_stack(router, &chassis.http)
                .propagate_trace_context(tracing.is_enabled())
                .security(security)
                .count_answers(telemetry.http_series())
                .access_log_probe(telemetry.metrics_path());
            let router = telemetry.in_dispatch(router);

            let bind = format!("{}:{}", chassis.http.host, chassis.http.port);
            let listener = match tokio::net::TcpListener::bind(&bind).await {
                Ok(listener) => listener,
                Err(source) => {
                    concerns.stop(chassis.http.shutdown_timeout).await;
                    return Err(StartupError::Bind { addr: bind, source });
                }
            };
            let addr = listener.local_addr().map_err(|source| StartupError::Bind {
                addr: bind.clone(),
                source,
            })?;
            let stop_accepting = CancellationToken::new();
            let metrics_port = telemetry.serve_port(&chassis.http.host, stop_accepting.clone());
            if let Err(error) = metrics_port.await {
                concerns.stop(chassis.http.shutdown_timeout).await;
                return Err(error.into());
            }
            let server = tokio::spawn(
                // Each connection's service knows the client's address (the
                // rate limit of anonymous clients).
                axum::serve(listener, ConnectPeers(router))
                    .with_graceful_shutdown(stop_accepting.clone().cancelled_owned())
                    .into_future()
                    .in_current_span(),
            );
            tracing::info!(
                %addr,
                environment = config.environment(),
                messaging = context.bus().provider(),
                storage = context.store().provider(),
                tracing = tracing.provider_name(),
                "service started"
            );
            Ok(RunningService {
                addr,
                context,
                handle: ShutdownHandle::new(),
                server,
                stop_accepting,
                concerns,
                tracing,
                http: chassis.http.clone(),
            })
        }
        .instrument(span)
        .await
    }
}

fn fail(error: &StartupError) -> ExitCode {
    eprintln!("error: {error}");
    ExitCode::FAILURE
}

fn init_logging(
    chassis: &ChassisConfig,
    install: bool,
    layers: Vec<BoxedLayer>,
) -> Result<(), StartupError> {
    if !install {
        // Still build it: a bad provider or level fails start-up the same way.
        logging_init::build(&chassis.logging, crate::correlation::log_context())?;
        return Ok(());
    }
    match logging_init::try_init(&chassis.logging, crate::correlation::log_context(), layers) {
        Ok(()) => Ok(()),
        Err(LoggingInitError::AlreadyInstalled) => {
            tracing::debug!("a global subscriber is installed already; keeping it");
            Ok(())
        }
        Err(error) => Err(error.into()),
    }
}

/// Why a service could not start. Each message names the key path or
/// resource at fault.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The logging provider could not be built or installed.
    #[error(transparent)]
    Logging(#[from] LoggingInitError),
    /// The event bus could not be built.
    #[error(transparent)]
    Messaging(#[from] MessagingInitError),
    /// The store could not be built.
    #[error(transparent)]
    Storage(#[from] StorageInitError),
    /// The tracing provider could not be built.
    #[error(transparent)]
    Tracing(#[from] TracingInitError),
    /// The `[security]` section cannot be used (e.g. authentication on without a key).
    #[error(transparent)]
    Security(#[from] crate::security::SecurityError),
    /// Metrics could not be set up (`[metrics]`).
    #[error(transparent)]
    Metrics(#[from] MetricsError),
    /// A start-up hook of the service failed.
    #[error("start-up hook failed: {0}")]
    Hook(#[source] BoxError),
    /// The listener could not be opened.
    #[error("http: cannot listen on {addr} (http.host / http.port): {source}")]
    Bind {
        /// The address asked for.
        addr: String,
        /// Why it failed.
        source: std::io::Error,
    },
}

/// What a graceful shutdown could not finish; everything else was stopped.
#[derive(Debug, thiserror::Error)]
#[error("graceful shutdown incomplete: {}", problems.join("; "))]
pub struct ShutdownError {
    /// One line per failure.
    pub problems: Vec<String>,
}

/// What routes, start-up hooks and background tasks get: the configuration,
/// the bus, the store, readiness and the shutdown signal. Cheap to clone.
#[derive(Clone)]
pub struct ServiceContext {
    inner: Arc<ContextInner>,
}

struct ContextInner {
    config: Arc<Configuration>,
    bus: Arc<dyn EventBus>,
    store: Arc<dyn Store>,
    health: Health,
    signal: ShutdownSignal,
    tasks: Mutex<TaskList>,
}

impl std::fmt::Debug for ServiceContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceContext")
            .field("service", &self.name())
            .field("bus", &self.inner.bus.provider())
            .field("store", &self.inner.store.provider())
            .finish_non_exhaustive()
    }
}

impl ServiceContext {
    /// The service's name (`service.name`).
    pub fn name(&self) -> &str {
        &self.inner.config.chassis().service.name
    }

    /// The loaded configuration.
    pub fn config(&self) -> &Configuration {
        &self.inner.config
    }

    /// The typed chassis sections.
    pub fn chassis(&self) -> &ChassisConfig {
        self.inner.config.chassis()
    }

    /// Reads the service's own section, e.g. `ctx.section::<Shipping>("shipping")`.
    pub fn section<T: DeserializeOwned>(&self, key: &str) -> Result<T, ConfigError> {
        self.inner.config.section(key)
    }

    /// The event bus.
    pub fn bus(&self) -> &Arc<dyn EventBus> {
        &self.inner.bus
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.inner.store
    }

    /// The store with the `[storage]` settings, which repositories, units of
    /// work, inboxes and the outbox relay are made from.
    pub fn storage(&self) -> Storage {
        Storage::new(self.store().clone(), self.chassis().storage.clone())
    }

    /// Publishes what the service writes to its outbox: starts the outbox
    /// relay on the service's bus (stopped at shutdown, after HTTP has
    /// drained) and registers the outbox backlog readiness check watching
    /// it. With `storage.outbox.relay_enabled = false` (another process
    /// relays this store's outbox) only the backlog check is registered.
    /// Call it from an `on_start` hook.
    pub fn start_outbox_relay(&self) {
        let storage = self.storage();
        let backlog = OutboxBacklogCheck::new(self.store().outbox(), &storage.config().outbox);
        if !storage.config().outbox.relay_enabled {
            self.health().register(Arc::new(backlog));
            return;
        }
        let relay = storage.start_relay(self.bus().clone());
        self.health().register(Arc::new(backlog.watching(&relay)));
        let stopping = self.shutdown_signal();
        self.spawn("outbox-relay", async move {
            stopping.stopping().await;
            relay.shutdown().await?;
            Ok(())
        });
    }

    /// Readiness: register more checks at run time.
    pub fn health(&self) -> &Health {
        &self.inner.health
    }

    /// Fires when background tasks should stop (after HTTP has drained).
    pub fn shutdown_signal(&self) -> ShutdownSignal {
        self.inner.signal.clone()
    }

    /// Runs a background task (outbox relay, poller) until it returns. It
    /// should watch [`ServiceContext::shutdown_signal`]; at shutdown the host
    /// waits for it up to `http.shutdown_timeout`, then aborts it. An error
    /// it returns is logged and reported by the shutdown.
    pub fn spawn<F>(&self, name: impl Into<String>, task: F)
    where
        F: Future<Output = Result<(), BoxError>> + Send + 'static,
    {
        let name = name.into();
        let span = tracing::info_span!("task", task = %name);
        let handle = tokio::spawn(task.instrument(span));
        self.inner
            .tasks
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
            .push((name, handle));
    }

    fn take_tasks(&self) -> TaskList {
        std::mem::take(
            &mut *self
                .inner
                .tasks
                .lock()
                .unwrap_or_else(|poison| poison.into_inner()),
        )
    }
}

/// What the host started and must stop, in reverse order.
#[derive(Default)]
struct Concerns {
    owned_store: Option<Arc<dyn Store>>,
    owned_bus: Option<Arc<dyn EventBus>>,
    context: Option<ServiceContext>,
}

impl Concerns {
    /// Background tasks, then the bus (draining its consumers), then the
    /// store. Returns what failed.
    async fn stop(&self, deadline: Duration) -> Vec<String> {
        let mut problems = Vec::new();
        if let Some(context) = &self.context {
            context.inner.signal.fire();
            for (name, mut handle) in context.take_tasks() {
                match tokio::time::timeout(deadline, &mut handle).await {
                    Ok(Ok(Ok(()))) => {}
                    Ok(Ok(Err(error))) => {
                        tracing::error!(task = %name, %error, "background task failed");
                        problems.push(format!("background task `{name}` failed: {error}"));
                    }
                    Ok(Err(join)) => {
                        problems.push(format!("background task `{name}` panicked: {join}"));
                    }
                    Err(_) => {
                        handle.abort();
                        problems.push(format!(
                            "background task `{name}` did not stop within {} and was aborted",
                            chassis_core::duration::format(deadline)
                        ));
                    }
                }
            }
        }
        if let Some(bus) = &self.owned_bus
            && let Err(error) = bus.shutdown().await
        {
            problems.push(format!("event bus shutdown: {error}"));
        }
        if let Some(store) = &self.owned_store {
            store.shutdown().await;
        }
        problems
    }
}

/// A started service. Drop does not stop it: call [`RunningService::shutdown`]
/// or trigger its [`ShutdownHandle`] and [`RunningService::wait`].
pub struct RunningService {
    addr: SocketAddr,
    context: ServiceContext,
    handle: ShutdownHandle,
    server: JoinHandle<std::io::Result<()>>,
    stop_accepting: CancellationToken,
    concerns: Concerns,
    tracing: TracingProvider,
    http: crate::config::HttpConfig,
}

impl std::fmt::Debug for RunningService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunningService")
            .field("addr", &self.addr)
            .field("context", &self.context)
            .finish_non_exhaustive()
    }
}

impl RunningService {
    /// The bound address (the real port when `http.port` is 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://IP:PORT` to reach the service from this machine (loopback
    /// when bound to all interfaces).
    pub fn base_url(&self) -> String {
        let ip = if self.addr.ip().is_unspecified() {
            match self.addr {
                SocketAddr::V4(_) => "127.0.0.1".to_owned(),
                SocketAddr::V6(_) => "[::1]".to_owned(),
            }
        } else if self.addr.is_ipv6() {
            format!("[{}]", self.addr.ip())
        } else {
            self.addr.ip().to_string()
        };
        format!("http://{ip}:{}", self.addr.port())
    }

    /// The service's context (bus, store, config).
    pub fn context(&self) -> &ServiceContext {
        &self.context
    }

    /// A handle that triggers the graceful shutdown.
    pub fn shutdown_handle(&self) -> ShutdownHandle {
        self.handle.clone()
    }

    /// Waits until the shutdown handle fires, then shuts down gracefully.
    pub async fn wait(self) -> Result<(), ShutdownError> {
        self.handle.triggered().await;
        self.stop().await
    }

    /// Shuts down gracefully now.
    pub async fn shutdown(self) -> Result<(), ShutdownError> {
        self.handle.trigger();
        self.stop().await
    }

    /// Readiness 503, wait `http.shutdown_delay`, stop accepting, let
    /// in-flight requests finish within `http.shutdown_timeout`, then stop
    /// background tasks, the bus, the store and the trace exporter.
    async fn stop(self) -> Result<(), ShutdownError> {
        let span = tracing::info_span!("service", service = %self.context.name());
        async move {
            tracing::info!("shutting down: readiness now answers 503");
            self.context.health().mark_shutting_down();
            if !self.http.shutdown_delay.is_zero() {
                tokio::time::sleep(self.http.shutdown_delay).await;
            }
            self.stop_accepting.cancel();
            let mut problems = Vec::new();
            let deadline = self.http.shutdown_timeout;
            let mut server = self.server;
            match tokio::time::timeout(deadline, &mut server).await {
                Ok(Ok(Ok(()))) => {}
                Ok(Ok(Err(error))) => problems.push(format!("http server: {error}")),
                Ok(Err(join)) => problems.push(format!("http server task: {join}")),
                Err(_) => {
                    server.abort();
                    problems.push(format!(
                        "in-flight requests did not finish within {} (http.shutdown_timeout); abandoned, they end with the process",
                        chassis_core::duration::format(deadline)
                    ));
                }
            }
            problems.extend(self.concerns.stop(deadline).await);
            // Last: spans of the shutdown itself are exported too.
            if let Err(error) = self.tracing.shutdown().await {
                problems.push(format!("trace export: {error}"));
            }
            if problems.is_empty() {
                tracing::info!("shutdown complete");
                Ok(())
            } else {
                Err(ShutdownError { problems })
            }
        }
        .instrument(span)
        .await
    }
}
