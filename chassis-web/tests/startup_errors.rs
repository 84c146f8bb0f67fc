//! Start-up fails with one clear message naming the key and what was
//! expected, and `run` exits non-zero without a panic.

mod common;

use std::process::Command;

use chassis_web::{ServiceHost, StartupError};
use common::{TempDir, isolated};

async fn start_error(vars: &[(&str, &str)]) -> String {
    let dir = TempDir::new();
    let err = isolated("startup-test", &dir)
        .env_vars(vars.iter().map(|(k, v)| (k.to_string(), v.to_string())))
        .start()
        .await
        .expect_err("start-up must fail");
    err.to_string()
}

#[tokio::test]
async fn unknown_providers_are_named() {
    let err = start_error(&[("CHASSIS__MESSAGING__PROVIDER", "kafka")]).await;
    assert!(
        err.starts_with("messaging.provider: unknown provider `kafka`"),
        "{err}"
    );
    assert!(
        err.contains("inmemory") && err.contains("rabbitmq"),
        "{err}"
    );

    let err = start_error(&[("CHASSIS__LOGGING__PROVIDER", "syslog")]).await;
    assert_eq!(
        err,
        "logging.provider: unknown provider `syslog`; expected one of: console"
    );

    let err = start_error(&[("CHASSIS__STORAGE__PROVIDER", "mongodb")]).await;
    assert!(
        err.starts_with("storage.provider: unknown provider `mongodb`"),
        "{err}"
    );

    let err = start_error(&[("CHASSIS__TRACING__PROVIDER", "jaeger")]).await;
    assert!(
        err.starts_with("tracing.provider: unknown provider `jaeger`"),
        "{err}"
    );
}

#[tokio::test]
async fn wrong_type_and_out_of_range_name_key_and_expectation() {
    let err = start_error(&[("CHASSIS__HTTP__BODY_LIMIT", "1MB")]).await;
    assert_eq!(
        err,
        "http.body_limit: expected an integer, found string \"1MB\" (from env CHASSIS__HTTP__BODY_LIMIT)"
    );
    let err = start_error(&[("CHASSIS__MESSAGING__RETRY__MULTIPLIER", "0.5")]).await;
    assert!(err.starts_with("messaging.retry.multiplier"), "{err}");
    assert!(err.contains(">= 1.0"), "{err}");
    let err = start_error(&[("CHASSIS__STORAGE__OUTBOX__BATCH_SIZE", "0")]).await;
    assert!(
        err.starts_with("storage.outbox.batch_size: expected an integer >= 1"),
        "{err}"
    );
}

#[tokio::test]
async fn occupied_port_is_reported() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let dir = TempDir::new();
    let err = isolated("bind-test", &dir)
        .config("http.port", i64::from(port))
        .start()
        .await
        .unwrap_err();
    assert!(matches!(err, StartupError::Bind { .. }));
    assert!(
        err.to_string()
            .starts_with(&format!("http: cannot listen on 127.0.0.1:{port}")),
        "{err}"
    );
}

#[tokio::test]
async fn failing_start_hook_aborts_start_up() {
    let dir = TempDir::new();
    let err = isolated("hook-test", &dir)
        .on_start(|_| async { Err("queue declaration refused".into()) })
        .start()
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "start-up hook failed: queue declaration refused"
    );
}

/// Set in the child process this test binary re-runs itself as.
const CHILD: &str = "CHASSIS_WEB_TEST_CHILD";

/// The child: a real `main`, configured by the variables the parent set.
fn child_main() -> std::process::ExitCode {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(
        ServiceHost::builder("exit-test")
            .args(std::env::var("CHILD_ARGS").ok())
            .run(),
    )
}

fn run_child(test: &str, vars: &[(&str, &str)]) -> std::process::Output {
    let dir = TempDir::new();
    let mut command = Command::new(std::env::current_exe().unwrap());
    command
        .args(["--exact", test, "--nocapture", "--test-threads=1"])
        .env(CHILD, "1")
        .env("CHASSIS_CONFIG_DIR", dir.path())
        .env("CHASSIS__HTTP__HOST", "127.0.0.1")
        .env("CHASSIS__HTTP__PORT", "0")
        .env("CHASSIS__LOGGING__ANSI", "false")
        .env("CHASSIS__SECURITY__AUTH__ENABLED", "false");
    for (k, v) in vars {
        command.env(k, v);
    }
    command.output().unwrap()
}

#[test]
fn run_exits_non_zero_with_one_clear_line() {
    if std::env::var_os(CHILD).is_some() {
        std::process::exit(if child_main() == std::process::ExitCode::SUCCESS {
            0
        } else {
            1
        });
    }
    let out = run_child(
        "run_exits_non_zero_with_one_clear_line",
        &[("CHASSIS__MESSAGING__PROVIDER", "kafka")],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "stderr: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "{stderr}");
    assert!(
        lines[0].starts_with("error: messaging.provider: unknown provider `kafka`"),
        "{stderr}"
    );
}

#[test]
fn print_config_flag_prints_and_exits_zero() {
    if std::env::var_os(CHILD).is_some() {
        std::process::exit(if child_main() == std::process::ExitCode::SUCCESS {
            0
        } else {
            1
        });
    }
    let out = run_child(
        "print_config_flag_prints_and_exits_zero",
        &[
            ("CHILD_ARGS", "--print-config"),
            ("CHASSIS__MESSAGING__PROVIDER", "rabbitmq"),
            (
                "CHASSIS__MESSAGING__RABBITMQ__URL",
                "amqp://app:topsecret@mq:5672/%2f",
            ),
        ],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("messaging.provider = \"rabbitmq\""),
        "{stdout}"
    );
    assert!(
        stdout.contains("# env CHASSIS__MESSAGING__PROVIDER"),
        "{stdout}"
    );
    assert!(!stdout.contains("topsecret"), "{stdout}");
}

/// Only meaningful in a build without the `rabbitmq` feature; `scripts/test`
/// runs this file once that way (`--no-default-features --features inmemory`).
#[cfg(not(feature = "rabbitmq"))]
#[tokio::test]
async fn bus_provider_not_compiled_in_names_the_feature() {
    let err = start_error(&[("CHASSIS__MESSAGING__PROVIDER", "rabbitmq")]).await;
    assert!(err.starts_with("messaging.provider"), "{err}");
    assert!(
        err.contains("enable feature `rabbitmq` of messaging-init (or chassis-web)"),
        "{err}"
    );
}

/// As above, for trace export (`otlp` feature).
#[cfg(not(feature = "otlp"))]
#[tokio::test]
async fn trace_provider_not_compiled_in_names_the_feature() {
    let err = start_error(&[("CHASSIS__TRACING__PROVIDER", "otlp")]).await;
    assert!(err.starts_with("tracing.provider"), "{err}");
    assert!(err.contains("enable feature `otlp`"), "{err}");
}

/// As above, for the store (`postgres` feature).
#[cfg(not(feature = "postgres"))]
#[tokio::test]
async fn store_provider_not_compiled_in_names_the_feature() {
    let err = start_error(&[("CHASSIS__STORAGE__PROVIDER", "postgres")]).await;
    assert!(err.starts_with("storage.provider"), "{err}");
    assert!(
        err.contains("enable feature `postgres` of storage-init (or chassis-web)"),
        "{err}"
    );
}

/// The real providers, picked by configuration only (CI runs with every
/// feature; the servers are the local RabbitMQ and PostgreSQL).
#[cfg(all(feature = "rabbitmq", feature = "postgres"))]
#[tokio::test]
async fn real_providers_are_picked_by_config_and_report_readiness() {
    let dir = TempDir::new();
    let schema = format!("chassis_web_{}", uuid::Uuid::new_v4().simple());
    let service = isolated("chassis-web-providers-test", &dir)
        .env_vars([
            ("CHASSIS__MESSAGING__PROVIDER", "rabbitmq"),
            (
                "CHASSIS__MESSAGING__RABBITMQ__URL",
                "amqp://guest:guest@127.0.0.1:5672/%2f",
            ),
            ("CHASSIS__STORAGE__PROVIDER", "postgres"),
            (
                "CHASSIS__STORAGE__POSTGRES__URL",
                "postgres://postgres@127.0.0.1:5432/test",
            ),
            ("CHASSIS__STORAGE__POSTGRES__SCHEMA", schema.as_str()),
        ])
        .start()
        .await
        .expect("starts on RabbitMQ and PostgreSQL");
    assert_eq!(service.context().bus().provider(), "rabbitmq");
    assert_eq!(service.context().store().provider(), "postgres");
    let ready: serde_json::Value = common::client()
        .get(format!("{}/health/ready", service.base_url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ready["status"], "ready", "{ready}");
    assert!(ready["checks"].as_array().unwrap().len() >= 2, "{ready}");
    service.shutdown().await.unwrap();

    // Leave nothing behind.
    let dropped = Command::new("psql")
        .args(["-h", "127.0.0.1", "-U", "postgres", "-d", "test", "-qc"])
        .arg(format!("drop schema {schema} cascade"))
        .status()
        .expect("psql runs");
    assert!(dropped.success());
}

#[tokio::test]
async fn unknown_tracing_keys_name_their_layer() {
    let err = start_error(&[("CHASSIS__TRACING__SAMPLING", "0.5")]).await;
    assert!(
        err.starts_with("tracing.sampling: expected a key of [tracing]"),
        "{err}"
    );
    assert!(
        err.ends_with("found an unknown key (from env CHASSIS__TRACING__SAMPLING)"),
        "{err}"
    );
}

/// The `[tracing.otlp]` section is read from the host's configuration by
/// traces-init, and its errors name the layer.
#[cfg(feature = "otlp")]
#[tokio::test]
async fn otlp_section_errors_name_their_layer() {
    let err = start_error(&[
        ("CHASSIS__TRACING__PROVIDER", "otlp"),
        ("CHASSIS__TRACING__OTLP__ENDPOINT", "collector:4317"),
    ])
    .await;
    assert_eq!(
        err,
        "tracing.otlp.endpoint: expected an http:// or https:// URL with a host, \
         e.g. http://localhost:4317, found `collector:4317` (from env CHASSIS__TRACING__OTLP__ENDPOINT)"
    );
}

#[cfg(not(feature = "jwks"))]
#[tokio::test]
async fn jwks_over_http_needs_its_feature() {
    let dir = TempDir::new();
    let err = isolated("startup-test", &dir)
        .config("security.auth.enabled", true)
        .config("security.auth.jwt.algorithm", "RS256")
        .config("security.auth.jwt.jwks_url", "http://issuer.test/keys")
        .start()
        .await
        .expect_err("start-up must fail")
        .to_string();
    assert!(
        err.contains("security.auth.jwt.jwks_url")
            && err.contains("enable the `jwks` feature of chassis-web"),
        "{err}"
    );
}
