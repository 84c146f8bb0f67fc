//! Start-up fails with one clear message naming the key and what was
//! expected, and `run` exits non-zero without a panic.

mod common;

use std::process::Command;

use chassis_web::{ServiceHost, StartupError};
use common::{TempDir, isolated};
use storage_abstractions::Migration;

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
    // The host's `[metrics]` section names the layer as well.
    let err = start_error(&[("CHASSIS__METRICS__PATH", "metrics")]).await;
    assert_eq!(
        err,
        "metrics.path: expected an absolute path such as `/metrics`, found `metrics` \
         (from env CHASSIS__METRICS__PATH)"
    );
    let err = start_error(&[("CHASSIS__METRICS__REFRESH_INTERVAL", "0s")]).await;
    assert_eq!(
        err,
        "metrics.refresh_interval: expected a duration > 0 \
         (from env CHASSIS__METRICS__REFRESH_INTERVAL)"
    );
}

#[tokio::test]
async fn misspelled_provider_keys_fail_before_any_connection_naming_the_layer() {
    // The bus is configured for a RabbitMQ server that does not exist (or
    // is not compiled in): the host checks every provider section before it
    // builds anything, so the misspelled storage key is what start-up names.
    let unreachable = [
        ("CHASSIS__MESSAGING__PROVIDER", "rabbitmq"),
        (
            "CHASSIS__MESSAGING__RABBITMQ__URL",
            "amqp://guest:guest@127.0.0.1:1/%2f",
        ),
    ];
    let err = start_error(&[
        unreachable[0],
        unreachable[1],
        ("CHASSIS__STORAGE__SQLLITE__PATH", "x.db"),
    ])
    .await;
    assert!(
        err.starts_with("storage.sqllite: expected a key of [storage] (provider, outbox, inbox) or a provider's section"),
        "{err}"
    );
    assert!(
        err.ends_with("found an unknown key (from env CHASSIS__STORAGE__SQLLITE__PATH)"),
        "{err}"
    );

    let err = start_error(&[("CHASSIS__MESSAGING__RABBIT__URL", "amqp://x")]).await;
    assert!(
        err.starts_with("messaging.rabbit: expected a key of [messaging]"),
        "{err}"
    );
    assert!(
        err.ends_with("(from env CHASSIS__MESSAGING__RABBIT__URL)"),
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

/// The child's own migrations, by name (`CHILD_MIGRATIONS`).
fn child_migrations() -> &'static [Migration] {
    const NOTES: &[Migration] = &[Migration::new(
        1,
        "notes",
        "CREATE TABLE notes (id bigint PRIMARY KEY, body text NOT NULL)",
    )];
    // 2 writes a row and creates a table before its last statement fails.
    const BROKEN: &[Migration] = &[
        NOTES[0],
        Migration::new(
            2,
            "tags",
            "INSERT INTO notes (id, body) VALUES (1, 'half'); CREATE TABLE tags (id bigint); \
             ALTER TABLE no_such_table ADD COLUMN x text;",
        ),
    ];
    const NOT_SQL: &[Migration] = &[Migration::new(
        1,
        "notes",
        "CREATE TABLE notes (id bigint PRIMARY KEY,, body text NOT NULL)",
    )];
    const OUT_OF_ORDER: &[Migration] = &[
        Migration::new(2, "tags", "CREATE TABLE tags (id bigint)"),
        NOTES[0],
    ];
    match std::env::var("CHILD_MIGRATIONS").as_deref() {
        Ok("notes") => NOTES,
        Ok("broken") => BROKEN,
        Ok("not-sql") => NOT_SQL,
        Ok("out-of-order") => OUT_OF_ORDER,
        _ => &[],
    }
}

/// The child: a real `main`, configured by the variables the parent set.
fn child_main() -> std::process::ExitCode {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(
        ServiceHost::builder("exit-test")
            .args(std::env::var("CHILD_ARGS").ok())
            .migrations(child_migrations())
            .run(),
    )
}

/// Runs the child when this process is one; returns otherwise.
fn as_child() {
    if std::env::var_os(CHILD).is_some() {
        std::process::exit(if child_main() == std::process::ExitCode::SUCCESS {
            0
        } else {
            1
        });
    }
}

fn run_child(test: &str, vars: &[(&str, &str)]) -> std::process::Output {
    let dir = TempDir::new();
    child_command(test, &dir, vars).output().unwrap()
}

/// The command that runs this binary's `test` as a child service, its
/// configuration directory `dir` (empty) and `vars` in its environment.
fn child_command(test: &str, dir: &TempDir, vars: &[(&str, &str)]) -> Command {
    let mut command = common::child_command(test, CHILD, dir);
    for (k, v) in vars {
        command.env(k, v);
    }
    command
}

/// The child's stderr, asserting it failed with exit code 1 and one line
/// (no panic); returns that line.
fn one_line_failure(out: &std::process::Output) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "stderr: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "{stderr}");
    lines[0].to_owned()
}

#[test]
fn run_exits_non_zero_with_one_clear_line() {
    as_child();
    let out = run_child(
        "run_exits_non_zero_with_one_clear_line",
        &[("CHASSIS__MESSAGING__PROVIDER", "kafka")],
    );
    let line = one_line_failure(&out);
    assert!(
        line.starts_with("error: messaging.provider: unknown provider `kafka`"),
        "{line}"
    );
}

#[test]
fn tables_on_a_provider_without_sql_exit_non_zero_naming_the_fix() {
    as_child();
    let out = run_child(
        "tables_on_a_provider_without_sql_exit_non_zero_naming_the_fix",
        &[
            ("CHASSIS__STORAGE__PROVIDER", "inmemory"),
            ("CHILD_MIGRATIONS", "notes"),
        ],
    );
    assert_eq!(
        one_line_failure(&out),
        "error: storage: this service uses relational tables, which storage.provider = \
         `inmemory` does not have: set storage.provider = \"sqlite\" (embedded, the default for \
         tables) or \"postgres\""
    );
}

/// Bad storage input at start-up, each in a real process: one line on
/// stderr, exit code 1, nothing half-applied.
#[cfg(feature = "sqlite")]
mod sqlite_startup {
    use super::*;

    const PROVIDER: (&str, &str) = ("CHASSIS__STORAGE__PROVIDER", "sqlite");

    fn path_var(db: &std::path::Path) -> (&'static str, String) {
        ("CHASSIS__STORAGE__SQLITE__PATH", db.display().to_string())
    }

    /// `sql` (one number) on the database file `db`, through the provider.
    async fn count(db: &std::path::Path, sql: &'static str) -> i64 {
        use chassis_core::config::{ConfigSource, JsonSource};
        let source = JsonSource::new(serde_json::json!({
            "storage": {"provider": "sqlite", "sqlite": {"path": db}}
        }));
        let config: storage_abstractions::StorageConfig = source.read("storage").unwrap();
        let store = storage_init::build(&config, &source).await.unwrap();
        let mut tx = store.begin().await.unwrap();
        let n = chassis_storage::Sql::of(tx.as_mut())
            .unwrap()
            .query(sql)
            .fetch_scalar::<i64>()
            .await
            .unwrap();
        tx.rollback().await.unwrap();
        store.shutdown().await;
        n
    }

    #[test]
    fn a_failing_migration_exits_non_zero_and_leaves_nothing_of_itself() {
        as_child();
        let dir = TempDir::new();
        let db = dir.path().join("service.db");
        let (key, path) = path_var(&db);
        let out = run_child(
            "sqlite_startup::a_failing_migration_exits_non_zero_and_leaves_nothing_of_itself",
            &[PROVIDER, (key, &path), ("CHILD_MIGRATIONS", "broken")],
        );
        let line = one_line_failure(&out);
        assert!(
            line.starts_with("error: storage: migration 2 (tags) failed:")
                && line.contains("no_such_table"),
            "{line}"
        );
        let runtime = tokio::runtime::Runtime::new().unwrap();
        runtime.block_on(async {
            // Migration 1 stays; of 2 neither the row nor the table exists.
            assert_eq!(count(&db, "SELECT count(*) FROM notes").await, 0);
            assert_eq!(
                count(
                    &db,
                    "SELECT count(*) FROM sqlite_master WHERE name = 'tags'"
                )
                .await,
                0
            );
        });
    }

    #[test]
    fn an_invalid_schema_exits_non_zero_naming_the_migration() {
        as_child();
        let dir = TempDir::new();
        let db = dir.path().join("service.db");
        let (key, path) = path_var(&db);
        let test = "sqlite_startup::an_invalid_schema_exits_non_zero_naming_the_migration";
        let out = run_child(
            test,
            &[PROVIDER, (key, &path), ("CHILD_MIGRATIONS", "not-sql")],
        );
        let line = one_line_failure(&out);
        assert!(
            line.starts_with("error: storage: migration 1 (notes) failed:")
                && line.contains("syntax error"),
            "{line}"
        );
        let out = run_child(
            test,
            &[PROVIDER, (key, &path), ("CHILD_MIGRATIONS", "out-of-order")],
        );
        assert_eq!(
            one_line_failure(&out),
            "error: storage: invalid migrations: migration 1 (notes): versions must start at 1 \
             and increase, after 2"
        );
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let tables = runtime.block_on(count(
            &db,
            "SELECT count(*) FROM sqlite_master WHERE name IN ('notes', 'tags')",
        ));
        assert_eq!(tables, 0, "nothing applied");
    }

    #[test]
    fn a_file_that_is_not_a_database_exits_non_zero_naming_it() {
        as_child();
        let dir = TempDir::new();
        let db = dir.write("service.db", &"x".repeat(4096));
        let (key, path) = path_var(&db);
        let out = run_child(
            "sqlite_startup::a_file_that_is_not_a_database_exits_non_zero_naming_it",
            &[PROVIDER, (key, &path)],
        );
        let line = one_line_failure(&out);
        assert!(
            line.starts_with("error: storage provider `sqlite` failed to start:")
                && line.contains(&path)
                && line.contains("not a database"),
            "{line}"
        );
        assert_eq!(
            std::fs::read(&db).unwrap(),
            "x".repeat(4096).as_bytes(),
            "untouched"
        );
    }

    #[test]
    fn a_second_process_on_one_file_exits_non_zero_naming_the_holder() {
        as_child();
        let test = "sqlite_startup::a_second_process_on_one_file_exits_non_zero_naming_the_holder";
        let dir = TempDir::new();
        let db = dir.path().join("service.db");
        let lock = dir.path().join("service.db.lock");
        let (key, path) = path_var(&db);
        let vars = [
            PROVIDER,
            (key, path.as_str()),
            ("CHILD_MIGRATIONS", "notes"),
        ];
        // The first process runs the service on the file.
        let first_dir = TempDir::new();
        let mut first = child_command(test, &first_dir, &vars)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let pid = first.id().to_string();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while std::fs::read_to_string(&lock).unwrap_or_default() != pid {
            assert!(
                first.try_wait().unwrap().is_none(),
                "the first process exited"
            );
            assert!(
                std::time::Instant::now() < deadline,
                "the first process took no lock"
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        let second = run_child(test, &vars);
        first.kill().unwrap();
        first.wait().unwrap();
        assert_eq!(
            one_line_failure(&second),
            format!(
                "error: storage provider `sqlite` failed to start: the SQLite database {path} is \
                 in use by process {pid} (lock file {}): one process per database file; stop the \
                 other one or set another storage.sqlite.path",
                lock.display()
            )
        );
        // Killed, the first process left no lock behind.
        let mut migrate_vars = vars.to_vec();
        migrate_vars.push(("CHILD_ARGS", "--migrate-only"));
        let out = run_child(test, &migrate_vars);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn print_config_flag_prints_and_exits_zero() {
    as_child();
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
    // A vhost of its own, holding the broker lock (shared) like every broker
    // test: never on the broker while a test stops it.
    let vhost = chassis_testing::rabbitmq::Vhost::new("chassis-web-providers");
    let url = vhost.amqp_url();
    let service = isolated("chassis-web-providers-test", &dir)
        .env_vars([
            ("CHASSIS__MESSAGING__PROVIDER", "rabbitmq"),
            ("CHASSIS__MESSAGING__RABBITMQ__URL", url.as_str()),
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
