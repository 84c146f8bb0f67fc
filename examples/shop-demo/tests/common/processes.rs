//! The two example services as processes of their own, the way an operator
//! runs them: built from this workspace, configured by environment alone,
//! killed when dropped. Shared by the two-process test and the pipeline
//! bench.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use chassis_testing::nats::StreamPrefix;
use messaging_abstractions::{EventBus, MessagingConfig};
use messaging_nats::{NatsBus, NatsConfig};
use messaging_rabbitmq::{RabbitMqBus, RabbitMqConfig};

use super::{POSTGRES_URL, Vhost};

/// How long a service may take to become ready.
pub const READY_WAIT: Duration = Duration::from_secs(60);

/// The two service binaries in `dir`, built elsewhere (another commit's,
/// to compare builds under one harness); panics naming what is missing.
pub fn binaries_in(dir: &Path) -> (PathBuf, PathBuf) {
    let binaries = (dir.join("order-service"), dir.join("shipping-service"));
    for binary in [&binaries.0, &binaries.1] {
        assert!(
            binary.is_file(),
            "expected {} (a directory holding both service binaries)",
            binary.display()
        );
    }
    binaries
}

/// Builds the two service binaries (with their default features: every
/// provider) in the profile of the running test or bench (`debug` for
/// tests, into their target directory; `release` for `cargo bench`, into
/// `target/bench-services`); their paths.
pub fn binaries() -> (PathBuf, PathBuf) {
    let demo = Path::new(env!("CARGO_BIN_EXE_shop-demo"));
    let dir = demo
        .parent()
        .expect("binaries live in a directory")
        .to_owned();
    let target_dir = dir
        .parent()
        .expect("a profile directory inside the target dir");
    let release = dir.file_name().is_some_and(|name| name == "release");
    // An optimized run (`cargo bench`) builds the services in a target
    // directory of their own: in the bench's, the services' `--release`
    // build and the bench's own build rebuilt each other's crates with
    // their differing settings (≈ 5 minutes per run).
    let (target_dir, dir) = if release {
        let own = target_dir.join("bench-services");
        let dir = own.join("release");
        (own, dir)
    } else {
        (target_dir.to_owned(), dir)
    };
    let mut build = Command::new(env!("CARGO"));
    build.args([
        "build",
        "--bins",
        "-p",
        "order-service",
        "-p",
        "shipping-service",
    ]);
    if release {
        build.arg("--release");
    }
    let status = build
        .env("CARGO_TARGET_DIR", &target_dir)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .status()
        .expect("cargo runs");
    assert!(status.success(), "building the service binaries failed");
    (dir.join("order-service"), dir.join("shipping-service"))
}

/// How to start the order service and the shipping service (in that
/// order): the binaries of [`binaries`], the schemas of `schemas`, on
/// `broker`, each on a free port.
pub fn launches<'a>(
    binaries: &'a (PathBuf, PathBuf),
    schemas: &'a super::Schemas,
    broker: &'a Broker,
) -> [Launch<'a>; 2] {
    [
        Launch::example("order-service", &binaries.0, &schemas.0[0], broker),
        Launch::example("shipping-service", &binaries.1, &schemas.0[1], broker),
    ]
}

/// A port nobody listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The broker of one run, isolated for it and cleaned up on drop.
pub enum Broker {
    /// A vhost of its own on the local RabbitMQ.
    RabbitMq(Vhost),
    /// A subject prefix (so streams and consumers) of its own on the local
    /// NATS server.
    Nats(StreamPrefix),
}

impl Broker {
    /// What selects and points the services at this broker: environment
    /// only, as an operator would.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        match self {
            Broker::RabbitMq(vhost) => vec![
                ("CHASSIS__MESSAGING__PROVIDER", "rabbitmq".into()),
                ("CHASSIS__MESSAGING__RABBITMQ__URL", vhost.amqp_url()),
            ],
            Broker::Nats(prefix) => vec![
                ("CHASSIS__MESSAGING__PROVIDER", "nats".into()),
                ("CHASSIS__MESSAGING__NATS__URL", prefix.url().into()),
                (
                    "CHASSIS__MESSAGING__NATS__SUBJECT_PREFIX",
                    prefix.name.clone(),
                ),
                // Messages a killed shipping process held come back after
                // this (default 30 s) instead of late in a test's wait.
                ("CHASSIS__MESSAGING__NATS__ACK_WAIT", "5s".into()),
            ],
        }
    }

    /// A bus of the caller's own on the same broker, to publish events the
    /// order service would not (duplicates).
    pub async fn bus(&self) -> Arc<dyn EventBus> {
        let shared = MessagingConfig::default();
        match self {
            Broker::RabbitMq(vhost) => {
                let settings = RabbitMqConfig {
                    url: vhost.amqp_url().into(),
                    ..RabbitMqConfig::default()
                };
                Arc::new(
                    RabbitMqBus::connect(&shared, &settings, "two-process-test")
                        .await
                        .unwrap(),
                )
            }
            Broker::Nats(prefix) => {
                let settings = NatsConfig {
                    url: prefix.url().into(),
                    subject_prefix: prefix.name.clone(),
                    ..NatsConfig::default()
                };
                Arc::new(
                    NatsBus::connect(&shared, &settings, "two-process-test")
                        .await
                        .unwrap(),
                )
            }
        }
    }
}

/// One service process, killed on drop.
pub struct Service {
    /// The process.
    pub child: Child,
    /// Its base URL.
    pub url: String,
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// How one service process is started: on PostgreSQL in `schema`, on
/// `broker`, listening on `port`.
pub struct Launch<'a> {
    /// The binary.
    pub binary: &'a Path,
    /// Its `config/` folder.
    pub config_dir: String,
    /// Its PostgreSQL schema.
    pub schema: &'a str,
    /// The broker.
    pub broker: &'a Broker,
    /// Its HTTP port.
    pub port: u16,
}

impl<'a> Launch<'a> {
    /// The example service `name` (`order-service`, `shipping-service`)
    /// with its own `config/` folder, on a free port.
    pub fn example(name: &str, binary: &'a Path, schema: &'a str, broker: &'a Broker) -> Self {
        Self {
            binary,
            config_dir: format!("{}/../{name}/config", env!("CARGO_MANIFEST_DIR")),
            schema,
            broker,
            port: free_port(),
        }
    }

    /// The command with the environment every run shares: logs at `warn`
    /// (override with `CHASSIS__LOGGING__LEVEL`), stdout discarded.
    pub fn command(&self) -> Command {
        let mut command = Command::new(self.binary);
        command
            .env("CHASSIS_CONFIG_DIR", &self.config_dir)
            .env("CHASSIS__HTTP__HOST", "127.0.0.1")
            .env("CHASSIS__HTTP__PORT", self.port.to_string())
            .env("CHASSIS__LOGGING__LEVEL", "warn")
            .envs(self.broker.env())
            .env("CHASSIS__STORAGE__PROVIDER", "postgres")
            .env("CHASSIS__STORAGE__POSTGRES__URL", POSTGRES_URL)
            .env("CHASSIS__STORAGE__POSTGRES__SCHEMA", self.schema)
            // Tests and the bench send from one address faster than the
            // default per-client rate limit (100/s) allows for long.
            .env("CHASSIS__SECURITY__RATE_LIMIT__PER_SECOND", "100000")
            .env("CHASSIS__SECURITY__RATE_LIMIT__BURST", "100000")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        command
    }

    /// Starts `command` (from [`Launch::command`], maybe changed) and waits
    /// until the service is ready.
    pub async fn start(&self, mut command: Command) -> Service {
        let child = command
            .spawn()
            .unwrap_or_else(|e| panic!("{} did not start: {e}", self.binary.display()));
        let service = Service {
            child,
            url: format!("http://127.0.0.1:{}", self.port),
        };
        wait_ready(&service).await;
        service
    }

    /// Starts the service with the shared environment only.
    pub async fn spawn(&self) -> Service {
        self.start(self.command()).await
    }
}

/// Polls `/health/ready` (another process: nothing to be woken by).
pub async fn wait_ready(service: &Service) {
    let http = reqwest::Client::new();
    let deadline = tokio::time::Instant::now() + READY_WAIT;
    loop {
        let ready = http
            .get(format!("{}/health/ready", service.url))
            .send()
            .await
            .is_ok_and(|r| r.status() == 200);
        if ready {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} did not become ready within {READY_WAIT:?}",
            service.url
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
