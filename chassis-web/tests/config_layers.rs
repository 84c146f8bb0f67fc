//! Configuration layering, secrets from files, service sections, print-config.

mod common;

use chassis_web::{ConfigError, ConfigLoader};
use common::TempDir;
use serde::{Deserialize, Serialize};

fn loader(dir: &TempDir, vars: &[(&str, &str)]) -> ConfigLoader {
    ConfigLoader::new()
        .config_dir(dir.path())
        .env_vars(vars.iter().map(|(k, v)| (k.to_string(), v.to_string())))
        .default_value("service.name", "layers")
}

#[test]
fn each_layer_overrides_the_one_below() {
    let dir = TempDir::new();
    dir.write(
        "default.toml",
        "[http]\nport = 7001\nbody_limit = 1000\nrequest_timeout = \"10s\"\n",
    );
    dir.write(
        "test.toml",
        "[http]\nbody_limit = 2000\nrequest_timeout = \"20s\"\n",
    );
    let vars = [
        ("CHASSIS_ENV", "test"),
        ("CHASSIS__HTTP__REQUEST_TIMEOUT", "40s"),
    ];
    let config = loader(&dir, &vars).load().unwrap();
    let http = &config.chassis().http;

    // built-in default (no layer sets it)
    assert_eq!(http.shutdown_timeout.as_secs(), 30);
    assert_eq!(config.origin("http.shutdown_timeout"), "built-in default");
    // default.toml beats the built-in default
    assert_eq!(http.port, 7001);
    assert!(config.origin("http.port").ends_with("default.toml"));
    // test.toml (CHASSIS_ENV=test) beats default.toml
    assert_eq!(http.body_limit, 2000);
    assert!(config.origin("http.body_limit").ends_with("test.toml"));
    // the variable beats both files
    assert_eq!(http.request_timeout.as_secs(), 40);
    assert_eq!(
        config.origin("http.request_timeout"),
        "env CHASSIS__HTTP__REQUEST_TIMEOUT"
    );
    assert_eq!(config.environment(), "test");
    assert_eq!(config.files().len(), 2);

    // An override in code beats the variable.
    let config = loader(&dir, &vars)
        .set("http.request_timeout", "50s")
        .load()
        .unwrap();
    assert_eq!(config.chassis().http.request_timeout.as_secs(), 50);
}

#[test]
fn environment_defaults_to_development() {
    let dir = TempDir::new();
    dir.write("development.toml", "[http]\nport = 7002\n");
    let config = loader(&dir, &[]).load().unwrap();
    assert_eq!(config.environment(), "development");
    assert_eq!(config.chassis().http.port, 7002);
}

#[test]
fn provider_keys_and_nested_sections_from_variables() {
    let dir = TempDir::new();
    let vars = [
        ("CHASSIS__MESSAGING__PROVIDER", "rabbitmq"),
        (
            "CHASSIS__STORAGE__POSTGRES__URL",
            "postgres://app@db:5432/orders",
        ),
        ("CHASSIS__LOGGING__FORMAT", "json"),
        ("CHASSIS__MESSAGING__RETRY__MAX_ATTEMPTS", "9"),
    ];
    let config = loader(&dir, &vars).load().unwrap();
    let c = config.chassis();
    assert_eq!(c.messaging.provider, "rabbitmq");
    // A provider's section is read through the configuration as the
    // provider's own type (here as `storage_postgres::PostgresConfig`).
    let postgres: storage_postgres::PostgresConfig = config.section("storage.postgres").unwrap();
    assert_eq!(postgres.url.expose(), "postgres://app@db:5432/orders");
    assert_eq!(c.logging.format, logging_abstractions::LogFormat::Json);
    assert_eq!(c.messaging.retry.max_attempts, 9);
}

#[test]
fn secrets_come_from_mounted_files() {
    let dir = TempDir::new();
    let secret = dir.write("pg-password", "s3cr3t\n");
    let var = secret.to_str().unwrap();
    let config = loader(&dir, &[("CHASSIS__STORAGE__POSTGRES__PASSWORD_FILE", var)])
        .load()
        .unwrap();
    let password: chassis_core::Secret = config.section("storage.postgres.password").unwrap();
    assert_eq!(password.expose(), "s3cr3t");
    assert!(
        config
            .origin("storage.postgres.password")
            .contains("CHASSIS__STORAGE__POSTGRES__PASSWORD_FILE")
    );

    let missing = dir.path().join("nope");
    let err = loader(
        &dir,
        &[(
            "CHASSIS__STORAGE__POSTGRES__PASSWORD_FILE",
            missing.to_str().unwrap(),
        )],
    )
    .load()
    .unwrap_err();
    assert!(matches!(err, ConfigError::SecretFile { .. }));
    assert!(
        err.to_string()
            .starts_with("CHASSIS__STORAGE__POSTGRES__PASSWORD_FILE: cannot read")
    );
}

#[derive(Debug, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
struct Shipping {
    max_package_weight_kg: u32,
    carrier: String,
}

impl Default for Shipping {
    fn default() -> Self {
        Self {
            max_package_weight_kg: 30,
            carrier: "dhl".into(),
        }
    }
}

#[test]
fn services_read_their_own_sections() {
    let dir = TempDir::new();
    dir.write("default.toml", "[shipping]\ncarrier = \"ups\"\n");
    let config = loader(&dir, &[("CHASSIS__SHIPPING__MAX_PACKAGE_WEIGHT_KG", "40")])
        .declare_section::<Shipping>("shipping")
        .load()
        .unwrap();
    let shipping: Shipping = config.section("shipping").unwrap();
    assert_eq!(
        shipping,
        Shipping {
            max_package_weight_kg: 40,
            carrier: "ups".into()
        }
    );
    // An absent section gets its defaults.
    let absent: Shipping = config.section("billing").unwrap();
    assert_eq!(absent, Shipping::default());

    // A declared section is checked at load time, naming key and layer.
    let err = loader(
        &dir,
        &[("CHASSIS__SHIPPING__MAX_PACKAGE_WEIGHT_KG", "heavy")],
    )
    .declare_section::<Shipping>("shipping")
    .load()
    .unwrap_err()
    .to_string();
    assert_eq!(
        err,
        "shipping.max_package_weight_kg: expected an integer, found string \"heavy\" (from env CHASSIS__SHIPPING__MAX_PACKAGE_WEIGHT_KG)"
    );
}

#[test]
fn print_config_shows_origins_and_redacts_secrets() {
    let dir = TempDir::new();
    dir.write(
        "default.toml",
        "[http]\nport = 7003\n[shipping]\napi_key = \"k-123\"\nendpoint = \"https://user:hunter2@carrier.example/api\"\n\
         mirrors = [\"https://m:mirror-pw@mirror.example\"]\n\
         [[shipping.carriers]]\nname = \"dhl\"\ntoken = \"carrier-token-1\"\n",
    );
    let vars = [
        (
            "CHASSIS__STORAGE__POSTGRES__URL",
            "postgres://app:pw@db/orders",
        ),
        ("CHASSIS__MESSAGING__RABBITMQ__URL", "amqp://u:p@mq/"),
        ("CHASSIS__STORAGE__POSTGRES__PASSWORD", "pw"),
    ];
    let text = loader(&dir, &vars)
        .declare_section::<serde_json::Value>("shipping")
        .load()
        .unwrap()
        .render();
    let line = |key: &str| {
        text.lines()
            .find(|l| l.starts_with(&format!("{key} = ")))
            .unwrap_or_else(|| panic!("{key} missing in\n{text}"))
            .to_owned()
    };
    assert!(line("http.port").contains("= 7003") && line("http.port").ends_with("default.toml"));
    assert!(line("http.host").ends_with("# built-in default"));
    assert!(line("service.name").ends_with("# code default"));
    assert!(line("storage.postgres.url").contains("***"));
    assert!(line("storage.postgres.url").ends_with("# env CHASSIS__STORAGE__POSTGRES__URL"));
    assert!(line("storage.postgres.password").contains("\"***\""));
    assert!(line("shipping.api_key").contains("\"***\""));
    assert!(line("shipping.endpoint").contains("https://user:***@carrier.example/api"));
    // Inside arrays too: URLs in a list, secret keys in an array of tables.
    assert!(
        line("shipping.mirrors").contains(r#"["https://m:***@mirror.example"]"#),
        "{}",
        line("shipping.mirrors")
    );
    assert!(
        line("shipping.carriers").contains(r#"[{"name":"dhl","token":"***"}]"#),
        "{}",
        line("shipping.carriers")
    );
    for leaked in [
        "k-123",
        "hunter2",
        ":pw@",
        "u:p@",
        "mirror-pw",
        "carrier-token-1",
    ] {
        assert!(!text.contains(leaked), "{leaked} leaked:\n{text}");
    }
    // The host's `[metrics]` section, with its defaults.
    assert!(line("metrics.path").contains("\"/metrics\""), "{text}");
    assert!(
        line("metrics.enabled").ends_with("# built-in default"),
        "{text}"
    );
}

#[test]
fn an_unknown_top_level_section_is_refused_naming_the_known_ones() {
    let dir = TempDir::new();
    dir.write("default.toml", "[shiping]\ncarrier = \"ups\"\n");
    let err = loader(&dir, &[])
        .declare_section::<Shipping>("shipping")
        .load()
        .unwrap_err()
        .to_string();
    // The layer is the file that has the section (the config crate names
    // it by a relative path).
    assert!(
        err.starts_with(
            "shiping: expected a known section (clients, http, logging, messaging, metrics, security, \
             service, shipping, storage, tracing; a service declares its own with \
             declare_section), found an unknown section (from "
        ),
        "{err}"
    );
    assert!(err.ends_with("default.toml)"), "{err}");
    // From a variable: the variable is named.
    let dir = TempDir::new();
    let err = loader(&dir, &[("CHASSIS__MESAGING__PROVIDER", "rabbitmq")])
        .load()
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("mesaging: expected a known section"),
        "{err}"
    );
    assert!(
        err.ends_with("(from env CHASSIS__MESAGING__PROVIDER)"),
        "{err}"
    );
    // Declared, or the chassis' own `[metrics]`: accepted.
    dir.write(
        "default.toml",
        "[shipping]\ncarrier = \"ups\"\n[metrics]\nenabled = false\n",
    );
    loader(&dir, &[])
        .declare_section::<Shipping>("shipping")
        .load()
        .unwrap();
}

#[test]
fn a_real_key_ending_in_file_is_set_from_a_variable() {
    let dir = TempDir::new();
    // `security.auth.jwt.jwks_file` is a key: the variable sets it to the
    // path, it does not read the file into `security.auth.jwt.jwks`.
    let config = loader(
        &dir,
        &[(
            "CHASSIS__SECURITY__AUTH__JWT__JWKS_FILE",
            "/run/secrets/jwks.json",
        )],
    )
    .load()
    .unwrap();
    assert_eq!(
        config.chassis().security.auth.jwt.jwks_file.as_deref(),
        Some(std::path::Path::new("/run/secrets/jwks.json"))
    );
    assert_eq!(
        config.origin("security.auth.jwt.jwks_file"),
        "env CHASSIS__SECURITY__AUTH__JWT__JWKS_FILE"
    );
    // With the suffix once more, the key is read from a file.
    let holder = dir.write("jwks-path", "/etc/keys/jwks.json\n");
    let config = loader(
        &dir,
        &[(
            "CHASSIS__SECURITY__AUTH__JWT__JWKS_FILE_FILE",
            holder.to_str().unwrap(),
        )],
    )
    .load()
    .unwrap();
    assert_eq!(
        config.chassis().security.auth.jwt.jwks_file.as_deref(),
        Some(std::path::Path::new("/etc/keys/jwks.json"))
    );
    // A key that does not end in `_file` still reads its file.
    let secret = dir.write("pw", "s3cr3t\n");
    let config = loader(
        &dir,
        &[(
            "CHASSIS__STORAGE__POSTGRES__PASSWORD_FILE",
            secret.to_str().unwrap(),
        )],
    )
    .load()
    .unwrap();
    let password: chassis_core::Secret = config.section("storage.postgres.password").unwrap();
    assert_eq!(password.expose(), "s3cr3t");
}

#[test]
fn wrong_types_and_ranges_name_key_expectation_and_origin() {
    let dir = TempDir::new();
    dir.write("default.toml", "[http]\nport = 70000\n");
    let err = loader(&dir, &[]).load().unwrap_err().to_string();
    assert!(
        err.starts_with("http.port: expected an unsigned 16 bit integer, found"),
        "{err}"
    );
    assert!(
        err.contains("70000") && err.contains("default.toml"),
        "{err}"
    );

    let dir = TempDir::new();
    let cases = [
        (
            ("CHASSIS__HTTP__PORT", "eighty"),
            "http.port: expected an integer, found string \"eighty\" (from env CHASSIS__HTTP__PORT)",
        ),
        (
            ("CHASSIS__HTTP__REQUEST_TIMEOUT", "0s"),
            "http.request_timeout: expected a duration > 0 (from env CHASSIS__HTTP__REQUEST_TIMEOUT)",
        ),
        (
            ("CHASSIS__MESSAGING__PREFETCH", "0"),
            "messaging.prefetch: expected an integer >= 1 (from env CHASSIS__MESSAGING__PREFETCH)",
        ),
        (
            ("CHASSIS__LOGGING__LEVEL", "chatty"),
            "logging.level: expected a level filter: `LEVEL` or `TARGET=LEVEL`, comma separated, \
             with LEVEL one of trace, debug, info, warn, error, off, found `chatty` \
             (from env CHASSIS__LOGGING__LEVEL)",
        ),
        (
            ("CHASSIS__HTTP__PROT", "1"),
            "http.prot: expected a known key: one of `host`, `port`, `request_timeout`, \
             `body_limit`, `shutdown_delay`, `shutdown_timeout`, `readiness_check_timeout`, \
             `access_log`, found an unknown key (from env CHASSIS__HTTP__PROT)",
        ),
        (
            ("CHASSIS__HTTP__SHUTDOWN_TIMEOUT", "5 minutes"),
            "http.shutdown_timeout: expected a duration such as \"250ms\", \"30s\", \"5m\", \
             \"1h\" (unknown unit (use ms, s, m or h)), found string \"5 minutes\" \
             (from env CHASSIS__HTTP__SHUTDOWN_TIMEOUT)",
        ),
        (
            ("CHASSIS__STORAGE__OUTBOX__BATCH_SIZE", "0"),
            "storage.outbox.batch_size: expected an integer >= 1 (from env CHASSIS__STORAGE__OUTBOX__BATCH_SIZE)",
        ),
        (
            ("CHASSIS__STORAGE__OUTBOX__STUCK_AFTER", "10s"),
            "storage.outbox.stuck_after: expected a duration longer than \
             storage.outbox.max_backoff and poll_interval (30s), found 10s \
             (from env CHASSIS__STORAGE__OUTBOX__STUCK_AFTER)",
        ),
        (
            ("CHASSIS__MESSAGING__RETRY__MULTIPLIER", "0.5"),
            "messaging.retry.multiplier: expected a number >= 1.0 \
             (from env CHASSIS__MESSAGING__RETRY__MULTIPLIER)",
        ),
    ];
    for ((var, value), expected) in cases {
        let err = loader(&dir, &[(var, value)])
            .load()
            .unwrap_err()
            .to_string();
        assert_eq!(err, expected, "{var}={value}");
    }
}

#[test]
fn explicit_missing_directory_is_an_error() {
    let dir = TempDir::new();
    let err = ConfigLoader::new()
        .env_vars([(
            "CHASSIS_CONFIG_DIR",
            dir.path().join("absent").to_str().unwrap(),
        )])
        .load()
        .unwrap_err();
    assert!(
        err.to_string().starts_with("CHASSIS_CONFIG_DIR: directory"),
        "{err}"
    );
}

#[test]
fn malformed_file_names_the_file() {
    let dir = TempDir::new();
    dir.write("default.toml", "[http\nport = 1\n");
    let err = loader(&dir, &[]).load().unwrap_err().to_string();
    assert!(err.contains("default.toml"), "{err}");
}

/// traces-init shows the `[tracing.otlp]` section it reads, secrets redacted.
#[cfg(feature = "otlp")]
#[test]
fn print_config_shows_the_otlp_section() {
    let dir = TempDir::new();
    let vars = [
        ("CHASSIS__TRACING__OTLP__PROTOCOL", "http/protobuf"),
        (
            "CHASSIS__TRACING__OTLP__HEADERS__AUTHORIZATION",
            "Bearer s3cret",
        ),
    ];
    let text = loader(&dir, &vars).load().unwrap().render();
    let protocol = text
        .lines()
        .find(|l| l.starts_with("tracing.otlp.protocol = "))
        .unwrap_or_else(|| panic!("tracing.otlp.protocol missing in\n{text}"));
    assert!(protocol.contains("\"http/protobuf\""), "{protocol}");
    assert!(
        protocol.ends_with("# env CHASSIS__TRACING__OTLP__PROTOCOL"),
        "{protocol}"
    );
    assert!(
        text.lines()
            .any(|l| l.starts_with("tracing.otlp.timeout = ")),
        "unset keys are shown too:\n{text}"
    );
    assert!(!text.contains("s3cret"), "a header leaked:\n{text}");
}
