//! Start-up: the command-line flags, every concern through its init crate,
//! the router under the standard stack, the listener.

use std::process::ExitCode;
use std::sync::Arc;

use axum::Router;
use logging_init::{BoxedLayer, LoggingInitError};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::running::Concerns;
use super::{
    MIGRATE_ONLY_FLAG, PRINT_ASYNCAPI_FLAG, PRINT_CONFIG_FLAG, RunningService, ServiceContext,
    ServiceHostBuilder, StartupError,
};
use crate::config::ChassisConfig;
use crate::middleware::{ConnectPeers, standard_stack};
use crate::readiness::Health;
use crate::shutdown::{OsSignals, ShutdownHandle};
use crate::telemetry::HostTelemetry;

impl ServiceHostBuilder {
    /// Runs the service until SIGINT/SIGTERM, then shuts down gracefully.
    ///
    /// With `--print-config` it prints the effective configuration instead
    /// and exits; with `--print-asyncapi` it prints the AsyncAPI document
    /// (see [`ServiceHostBuilder::asyncapi_document`]) and exits; with `--healthcheck` it probes `/health/ready` of the
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
            .any(|a| a == crate::host::probe::HEALTHCHECK_FLAG)
        {
            return crate::host::probe::run(&self);
        }
        if args.iter().any(|a| a == MIGRATE_ONLY_FLAG) {
            return match self.migrate_only().await {
                Ok(applied) => {
                    println!("migrations applied: {applied:?}");
                    ExitCode::SUCCESS
                }
                Err(error) => fail(&error),
            };
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
        if args.iter().any(|a| a == PRINT_ASYNCAPI_FLAG) {
            return match self.asyncapi_document() {
                Ok(document) => {
                    println!("{document:#}");
                    ExitCode::SUCCESS
                }
                Err(error) => fail(&error),
            };
        }
        // Caught from here on: a signal during start-up shuts the service
        // down gracefully as soon as it is up.
        let signals = OsSignals::listen();
        let running = match self.start().await {
            Ok(running) => running,
            Err(error) => return fail(&error),
        };
        let handle = running.shutdown_handle();
        let signals = tokio::spawn(async move {
            signals.recv().await;
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
        let _ =
            tokio::task::spawn_blocking(|| logging_init::flush(std::time::Duration::from_secs(2)))
                .await;
        match result {
            Ok(()) => ExitCode::SUCCESS,
            Err(_) => ExitCode::FAILURE,
        }
    }

    /// Builds the store, applies the service's migrations and closes it
    /// again (what `--migrate-only` does); returns the versions applied.
    pub async fn migrate_only(self) -> Result<Vec<i64>, StartupError> {
        let config = self.load_config()?;
        let store = match self.store {
            Some(store) => store,
            None => storage_init::build(&config.chassis().storage, &config).await?,
        };
        let applied = store.apply_migrations(self.migrations).await;
        store.shutdown().await;
        Ok(applied?)
    }

    /// Starts the service and returns once it serves HTTP. Tests use this
    /// with `.config("http.port", 0)` and [`RunningService::local_addr`].
    pub async fn start(self) -> Result<RunningService, StartupError> {
        let config = Arc::new(self.load_config()?);
        let chassis = config.chassis().clone();
        // Every provider section of the concerns the host builds, before it
        // connects to anything: a misspelled key fails here, naming its layer.
        if self.store.is_none() {
            storage_init::check(&chassis.storage, config.as_ref())?;
        }
        if self.bus.is_none() {
            messaging_init::check(&chassis.messaging, config.as_ref())?;
        }
        let asyncapi = match self.asyncapi_document_for(&config) {
            Ok(document) => document,
            // An injected bus needs no configured provider: the document
            // then describes messages without a broker.
            Err(StartupError::Messaging(_)) if self.bus.is_some() => {
                self.asyncapi_document_on(&config, &messaging_abstractions::asyncapi::NoBroker)?
            }
            Err(error) => return Err(error),
        };
        let service = chassis.service.name.clone();
        let version = Some(chassis.service.version.clone()).filter(|v| !v.is_empty());
        let traces = traces_init::build(
            &chassis
                .tracing
                .clone()
                .with_host_service(service.clone(), version),
            config.as_ref(),
        )?;
        // One subscriber: the logging provider, the tracing layer, extra layers.
        let mut layers = self.log_layers;
        layers.extend(traces.layer());
        // Whether the global subscriber will be this host's (with its tracing layer).
        let installs = self.install_logging && !tracing::dispatcher::has_been_set();
        init_logging(&chassis, self.install_logging, layers)?;
        let telemetry = HostTelemetry::start(&config, &traces, installs)?;
        let span = tracing::info_span!("service", service = %service);
        // The JWKS fetch's proxy variables come from where the configuration's do.
        let security =
            crate::security::Security::build_in(&chassis.security, self.loader.env_list())
                .map_err(|e| e.locate(config.as_ref()))?;
        async move {
            security.prefetch_keys().await;
            let mut concerns = Concerns::default();
            let store = match self.store {
                Some(store) => store,
                None => {
                    let store = storage_init::build(&chassis.storage, config.as_ref()).await?;
                    concerns.owned_store = Some(store.clone());
                    store
                }
            };
            if !self.migrations.is_empty() {
                match store.apply_migrations(self.migrations).await {
                    Ok(applied) if !applied.is_empty() => {
                        tracing::info!(?applied, "applied the service's migrations");
                    }
                    Ok(_) => {}
                    Err(error) => {
                        concerns.stop_within(chassis.http.shutdown_timeout).await;
                        return Err(error.into());
                    }
                }
            }
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
                        concerns.stop_within(chassis.http.shutdown_timeout).await;
                        return Err(error.into());
                    }
                },
            };
            // Every subscription and publish of the service passes this
            // decorator: it holds them to the declared messages.
            let declared = crate::asyncapi::Declared::from_catalog(&self.catalog);
            let bus = telemetry.wrap_bus(bus, declared);
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
            let context = ServiceContext::new(config.clone(), bus, store, health.clone());
            concerns.context = Some(context.clone());
            telemetry.on_context(&context);
            for hook in self.hooks {
                if let Err(error) = hook(context.clone()).await {
                    concerns.stop_within(chassis.http.shutdown_timeout).await;
                    return Err(StartupError::Hook(error));
                }
            }
            let mut router = Router::new();
            for routes in self.routes {
                router = router.merge(routes(&context));
            }
            let router = telemetry.router(
                router
                    .merge(health.routes())
                    .merge(crate::asyncapi::routes(asyncapi)),
            );
            let router = standard_stack(router, &chassis.http)
                .propagate_trace_context(traces.is_enabled())
                .security(security)
                .count_answers(telemetry.http_series())
                .access_log_probe(telemetry.metrics_path());
            let router = telemetry.in_dispatch(router);

            let bind = format!("{}:{}", chassis.http.host, chassis.http.port);
            let listener = match tokio::net::TcpListener::bind(&bind).await {
                Ok(listener) => listener,
                Err(source) => {
                    concerns.stop_within(chassis.http.shutdown_timeout).await;
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
                concerns.stop_within(chassis.http.shutdown_timeout).await;
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
                tracing = traces.provider_name(),
                "service started"
            );
            Ok(RunningService {
                addr,
                context,
                handle: ShutdownHandle::new(),
                server,
                stop_accepting,
                concerns,
                traces,
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
