//! Layered configuration.
//!
//! Layers, lowest first:
//! 1. built-in defaults — the `Default` impls of the section types;
//! 2. `config/default.toml`;
//! 3. `config/{environment}.toml`, environment from `CHASSIS_ENV` (default
//!    `development`);
//! 4. environment variables `CHASSIS__SECTION__KEY` (double underscore for
//!    nesting), and `CHASSIS__SECTION__KEY_FILE=/path` to read a value (a
//!    secret, typically) from a mounted file;
//! 5. overrides set in code ([`ConfigLoader::set`], used by tests and embedded
//!    demos).
//!
//! The directory is `config` in the working directory, or `CHASSIS_CONFIG_DIR`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Duration;

use chassis_core::config::{ConfigSource, DEFAULT_LAYER, InvalidValue};
use config::{Config, FileFormat, Map, Source, Value, ValueKind};
use logging_abstractions::LoggingConfig;
use messaging_abstractions::MessagingConfig;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use storage_abstractions::StorageConfig;
use traces_abstractions::TracingConfig;

/// Prefix of the environment variables read as configuration.
pub const ENV_PREFIX: &str = "CHASSIS__";
/// Variable naming the environment (`development`, `production`, ...).
pub const ENV_NAME_VAR: &str = "CHASSIS_ENV";
/// Variable naming the configuration directory.
pub const CONFIG_DIR_VAR: &str = "CHASSIS_CONFIG_DIR";
/// Environment used when [`ENV_NAME_VAR`] is not set.
pub const DEFAULT_ENVIRONMENT: &str = "development";
/// Suffix of variables whose value is the path of a file holding the value.
pub const FILE_SUFFIX: &str = "_FILE";

/// The whole typed configuration of a service's chassis.
///
/// A service's own sections (say `[shipping]`) live next to these and are read
/// with [`Configuration::section`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ChassisConfig {
    /// Who the service is.
    pub service: ServiceConfig,
    /// The HTTP edge.
    pub http: HttpConfig,
    /// Logging provider and format.
    pub logging: LoggingConfig,
    /// Event bus provider.
    pub messaging: MessagingConfig,
    /// Store provider.
    pub storage: StorageConfig,
    /// Trace export.
    pub tracing: TracingConfig,
    /// Authentication, limits, CORS and headers.
    pub security: crate::security::SecurityConfig,
}

impl ChassisConfig {
    /// Checks ranges of every section; the error names the key path and what
    /// was expected (the loader adds the layer).
    pub fn validate(&self) -> Result<(), InvalidValue> {
        self.service.validate()?;
        self.http.validate()?;
        self.logging.validate()?;
        self.messaging.validate()?;
        self.storage.validate()?;
        Ok(())
    }
}

/// The `service` section.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServiceConfig {
    /// Name of the service (the builder's name unless configured); the
    /// consumer group on the bus and the `service` field of logs.
    pub name: String,
    /// Version of the service.
    pub version: String,
}

impl ServiceConfig {
    fn validate(&self) -> Result<(), InvalidValue> {
        if self.name.trim().is_empty() {
            return Err(InvalidValue::new("service.name", "a non-empty name"));
        }
        Ok(())
    }
}

/// The `http` section.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    /// Interface to bind (`0.0.0.0` in containers, `127.0.0.1` for local only).
    pub host: String,
    /// Port to bind; `0` picks a free port (see `RunningService::local_addr`).
    pub port: u16,
    /// Longest time a request may take before it is answered with 503.
    #[serde(with = "chassis_core::duration")]
    pub request_timeout: Duration,
    /// Largest accepted request body, in bytes (413 above).
    pub body_limit: usize,
    /// Time between readiness turning 503 and the listener closing, so load
    /// balancers stop sending traffic first (a few seconds in Kubernetes,
    /// where endpoints are removed while the pod already has its SIGTERM).
    #[serde(with = "chassis_core::duration")]
    pub shutdown_delay: Duration,
    /// The one deadline of a graceful shutdown after `shutdown_delay`: HTTP
    /// drains, consumers drain, background tasks stop and the outbox relay
    /// flushes, all within it. `shutdown_delay + shutdown_timeout` plus a few
    /// seconds must fit the orchestrator's grace period (Kubernetes'
    /// `terminationGracePeriodSeconds`, 30 s by default), or the process is
    /// killed mid-way.
    #[serde(with = "chassis_core::duration")]
    pub shutdown_timeout: Duration,
    /// Time each readiness check may take before it counts as unhealthy.
    #[serde(with = "chassis_core::duration")]
    pub readiness_check_timeout: Duration,
    /// One line per request (`http.access_log`, off by default).
    pub access_log: crate::access_log::AccessLogConfig,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            host: "0.0.0.0".into(),
            port: 8080,
            request_timeout: Duration::from_secs(30),
            body_limit: 1024 * 1024,
            shutdown_delay: Duration::ZERO,
            shutdown_timeout: Duration::from_secs(30),
            readiness_check_timeout: Duration::from_secs(2),
            access_log: Default::default(),
        }
    }
}

impl HttpConfig {
    fn validate(&self) -> Result<(), InvalidValue> {
        if self.host.parse::<std::net::IpAddr>().is_err() && self.host != "localhost" {
            return Err(InvalidValue::new(
                "http.host",
                "an IP address (e.g. 0.0.0.0 or 127.0.0.1) or localhost",
            )
            .found(format!("`{}`", self.host)));
        }
        let positive = [
            ("request_timeout", self.request_timeout),
            ("shutdown_timeout", self.shutdown_timeout),
            ("readiness_check_timeout", self.readiness_check_timeout),
        ];
        for (key, value) in positive {
            if value.is_zero() {
                return Err(InvalidValue::new(format!("http.{key}"), "a duration > 0"));
            }
        }
        if self.body_limit == 0 {
            return Err(InvalidValue::new(
                "http.body_limit",
                "a number of bytes >= 1",
            ));
        }
        self.access_log.validate()
    }
}

/// Why the configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// `CHASSIS_CONFIG_DIR` names a directory that does not exist.
    #[error("{CONFIG_DIR_VAR}: directory `{0}` does not exist")]
    MissingDirectory(PathBuf),
    /// A `*_FILE` variable names a file that cannot be read.
    #[error("{var}: cannot read `{path}`: {source}")]
    SecretFile {
        /// The variable.
        var: String,
        /// The file it names.
        path: PathBuf,
        /// Why reading failed.
        source: std::io::Error,
    },
    /// A file is not valid TOML, or layers could not be merged.
    #[error("{0}")]
    Source(String),
    /// A value has the wrong type, is out of range or is not a known key:
    /// its key path, what was expected and the layer it came from.
    #[error(transparent)]
    Invalid(#[from] InvalidValue),
}

/// A value set in code ([`ConfigLoader::set`], the host builder's `.config`):
/// text, a number, a boolean or a list of them.
#[derive(Debug, Clone, PartialEq)]
pub enum ConfigValue {
    /// Text (also durations such as `"250ms"`).
    Text(String),
    /// An integer.
    Integer(i64),
    /// A floating-point number.
    Float(f64),
    /// A boolean.
    Bool(bool),
    /// A list.
    List(Vec<ConfigValue>),
}

impl From<ConfigValue> for ValueKind {
    fn from(value: ConfigValue) -> Self {
        match value {
            ConfigValue::Text(text) => ValueKind::String(text),
            ConfigValue::Integer(n) => ValueKind::I64(n),
            ConfigValue::Float(x) => ValueKind::Float(x),
            ConfigValue::Bool(b) => ValueKind::Boolean(b),
            ConfigValue::List(items) => ValueKind::Array(
                items
                    .into_iter()
                    .map(|item| Value::new(None, ValueKind::from(item)))
                    .collect(),
            ),
        }
    }
}

impl From<&str> for ConfigValue {
    fn from(text: &str) -> Self {
        Self::Text(text.to_owned())
    }
}

impl From<String> for ConfigValue {
    fn from(text: String) -> Self {
        Self::Text(text)
    }
}

impl From<&String> for ConfigValue {
    fn from(text: &String) -> Self {
        Self::Text(text.clone())
    }
}

impl From<bool> for ConfigValue {
    fn from(b: bool) -> Self {
        Self::Bool(b)
    }
}

impl From<f64> for ConfigValue {
    fn from(x: f64) -> Self {
        Self::Float(x)
    }
}

macro_rules! integer_config_values {
    ($($t:ty),*) => {$(
        impl From<$t> for ConfigValue {
            fn from(n: $t) -> Self {
                Self::Integer(i64::from(n))
            }
        }
    )*};
}
integer_config_values!(i8, i16, i32, i64, u8, u16, u32);

impl From<usize> for ConfigValue {
    fn from(n: usize) -> Self {
        Self::Integer(i64::try_from(n).unwrap_or(i64::MAX))
    }
}

impl From<u64> for ConfigValue {
    fn from(n: u64) -> Self {
        Self::Integer(i64::try_from(n).unwrap_or(i64::MAX))
    }
}

impl<T: Into<ConfigValue>> From<Vec<T>> for ConfigValue {
    fn from(items: Vec<T>) -> Self {
        Self::List(items.into_iter().map(Into::into).collect())
    }
}

/// Loads the layered configuration. The host uses one; tests build their own
/// to load from a temporary directory and a fabricated environment.
#[derive(Debug, Clone, Default)]
pub struct ConfigLoader {
    dir: Option<PathBuf>,
    environment: Option<String>,
    env: Option<BTreeMap<String, String>>,
    defaults: Vec<(String, ValueKind)>,
    overrides: Vec<(String, ValueKind)>,
    declared: Vec<DeclaredSection>,
}

/// A section the service declares as its own ([`ConfigLoader::declare_section`]).
#[derive(Debug, Clone)]
struct DeclaredSection {
    key: String,
    /// The section as its type reads it from `raw` (its defaults filled in),
    /// or the error naming the key path and layer.
    read: fn(&Config, &str) -> Result<serde_json::Value, ConfigError>,
}

fn read_declared<T: DeserializeOwned + Serialize>(
    raw: &Config,
    key: &str,
) -> Result<serde_json::Value, ConfigError> {
    let section: T = deserialize_at(raw, key)?;
    serde_json::to_value(section).map_err(|e| ConfigError::Source(format!("{key}: {e}")))
}

/// The chassis' sections besides [`ChassisConfig`]'s: `metrics`, read by
/// the host, and `clients`, where each typed client's settings live
/// (`[clients.<name>]`, read and checked by the service as a
/// `chassis_client::ClientConfig` when it makes the client).
const HOST_SECTIONS: &[&str] = &["metrics", "clients"];

impl ConfigLoader {
    /// A loader reading the process environment and `./config` (or
    /// `CHASSIS_CONFIG_DIR`).
    pub fn new() -> Self {
        Self::default()
    }

    /// Reads files from `dir` instead of `CHASSIS_CONFIG_DIR` / `./config`.
    pub fn config_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.dir = Some(dir.into());
        self
    }

    /// Uses `name` instead of `CHASSIS_ENV` to pick `config/{name}.toml`.
    pub fn environment(mut self, name: impl Into<String>) -> Self {
        self.environment = Some(name.into());
        self
    }

    /// Reads these variables instead of the process environment (tests).
    pub fn env_vars<K, V>(mut self, vars: impl IntoIterator<Item = (K, V)>) -> Self
    where
        K: Into<String>,
        V: Into<String>,
    {
        self.env = Some(
            vars.into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        );
        self
    }

    /// The variables given with [`env_vars`](Self::env_vars), if any (the
    /// host reads the JWKS fetch's proxy variables from the same place).
    pub(crate) fn env_list(&self) -> Option<&BTreeMap<String, String>> {
        self.env.as_ref()
    }

    /// A default set in code, just above the built-in defaults (the host
    /// sets `service.name` and `service.version` this way).
    pub fn default_value(mut self, key: impl Into<String>, value: impl Into<ConfigValue>) -> Self {
        self.defaults.push((key.into(), value.into().into()));
        self
    }

    /// An override above every other layer, e.g. `set("http.port", 0)`.
    pub fn set(mut self, key: impl Into<String>, value: impl Into<ConfigValue>) -> Self {
        self.overrides.push((key.into(), value.into().into()));
        self
    }

    /// Declares a section of the service's own (`shipping`, `order.quotes`)
    /// read as `T`. Loading then refuses a top-level section that is neither
    /// the chassis' nor declared (a misspelled `[shiping]` would otherwise be
    /// ignored without a word), checks the declared section against `T`
    /// (errors name the key path and the layer), shows it with its defaults
    /// in `--print-config`, and knows its keys when a variable ends in
    /// `_FILE`.
    pub fn declare_section<T>(mut self, key: impl Into<String>) -> Self
    where
        T: DeserializeOwned + Serialize,
    {
        self.declared.push(DeclaredSection {
            key: key.into(),
            read: read_declared::<T>,
        });
        self
    }

    /// Every key the loader knows, with its default: the chassis' sections,
    /// the compiled-in providers' sections and the declared ones.
    fn known_keys(&self) -> serde_json::Value {
        let mut tree = serde_json::to_value(ChassisConfig::default()).unwrap_or_default();
        let metrics = serde_json::to_value(crate::telemetry::MetricsConfig::default());
        insert_at(&mut tree, "metrics", metrics.unwrap_or_default());
        let defaults = chassis_core::config::Defaults;
        for (key, value) in messaging_init::provider_sections(&defaults).unwrap_or_default() {
            insert_at(&mut tree, key, value);
        }
        for (key, value) in traces_init::provider_sections(&defaults).unwrap_or_default() {
            insert_at(&mut tree, key, value);
        }
        let empty = Config::default();
        for section in &self.declared {
            let value = (section.read)(&empty, &section.key).unwrap_or_default();
            insert_at(&mut tree, &section.key, value);
        }
        tree
    }

    /// Refuses a top-level section nobody reads, then checks the declared
    /// sections against their types.
    fn check_sections(&self, raw: &Config) -> Result<(), ConfigError> {
        let chassis = serde_json::to_value(ChassisConfig::default()).unwrap_or_default();
        let mut known: Vec<&str> = chassis
            .as_object()
            .map(|o| o.keys().map(String::as_str).collect())
            .unwrap_or_default();
        known.extend(HOST_SECTIONS);
        let declared: Vec<&str> = self
            .declared
            .iter()
            .map(|d| d.key.split('.').next().unwrap_or_default())
            .collect();
        known.extend(&declared);
        if let ValueKind::Table(top) = &raw.cache.kind {
            for section in top.keys() {
                if !known.contains(&section.as_str()) {
                    let mut names: Vec<&str> = known.clone();
                    names.sort_unstable();
                    names.dedup();
                    let error = InvalidValue::new(
                        section.as_str(),
                        format!(
                            "a known section ({}; a service declares its own with \
                             declare_section)",
                            names.join(", ")
                        ),
                    )
                    .found("an unknown section");
                    let layer = top.get(section).and_then(origin_within);
                    return Err(ConfigError::Invalid(
                        error.in_layer(layer.unwrap_or(DEFAULT_LAYER)),
                    ));
                }
            }
        }
        for section in &self.declared {
            (section.read)(raw, &section.key)?;
        }
        Ok(())
    }

    fn var(&self, name: &str) -> Option<String> {
        match &self.env {
            Some(env) => env.get(name).cloned(),
            None => std::env::var(name).ok(),
        }
        .filter(|v| !v.is_empty())
    }

    fn prefixed_vars(&self) -> Vec<(String, String)> {
        let all: Vec<(String, String)> = match &self.env {
            Some(env) => env.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            None => std::env::vars_os()
                .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
                .collect(),
        };
        all.into_iter()
            .filter(|(k, _)| k.starts_with(ENV_PREFIX) && k.len() > ENV_PREFIX.len())
            .collect()
    }

    /// The directory files are read from.
    pub fn resolved_dir(&self) -> PathBuf {
        self.dir
            .clone()
            .or_else(|| self.var(CONFIG_DIR_VAR).map(PathBuf::from))
            .unwrap_or_else(|| PathBuf::from("config"))
    }

    /// The environment name (`config/{name}.toml`).
    pub fn resolved_environment(&self) -> String {
        self.environment
            .clone()
            .or_else(|| self.var(ENV_NAME_VAR))
            .unwrap_or_else(|| DEFAULT_ENVIRONMENT.to_owned())
    }

    /// Loads, merges, deserializes and validates every layer.
    pub fn load(&self) -> Result<Configuration, ConfigError> {
        let dir = self.resolved_dir();
        let dir_given = self.dir.is_some() || self.var(CONFIG_DIR_VAR).is_some();
        if dir_given && !dir.is_dir() {
            return Err(ConfigError::MissingDirectory(dir));
        }
        let environment = self.resolved_environment();
        let mut files = Vec::new();
        let mut builder = Config::builder().add_source(Layer::new("code default", &self.defaults));
        for name in ["default".to_owned(), environment.clone()] {
            let path = dir.join(format!("{name}.toml"));
            if path.is_file() {
                builder = builder.add_source(
                    config::File::from(path.as_path())
                        .format(FileFormat::Toml)
                        .required(true),
                );
                files.push(path);
            }
        }
        builder = builder
            .add_source(self.env_layer()?)
            .add_source(Layer::new("override in code", &self.overrides));
        let raw = builder
            .build()
            .map_err(|e| ConfigError::Source(e.to_string()))?;
        let chassis: ChassisConfig = deserialize_at(&raw, "")?;
        chassis.validate().map_err(|e| locate(&raw, e))?;
        self.check_sections(&raw)?;
        Ok(Configuration {
            raw,
            chassis,
            environment,
            files,
            declared: self.declared.clone(),
        })
    }

    /// The variables layer: `CHASSIS__A__B=v` sets `a.b`; `CHASSIS__A__B_FILE=p`
    /// sets `a.b` to the content of file `p` (without its trailing newline) —
    /// unless `a.b_file` is itself a known key (`security.auth.jwt.jwks_file`),
    /// which the variable then sets to `p`. To read such a key from a file,
    /// add the suffix once more (`..._FILE_FILE`).
    fn env_layer(&self) -> Result<Layer, ConfigError> {
        let known = self.known_keys();
        let mut entries = Vec::new();
        for (var, value) in self.prefixed_vars() {
            let rest = &var[ENV_PREFIX.len()..];
            let from_file = rest
                .strip_suffix(FILE_SUFFIX)
                .filter(|_| !has_key(&known, &key_of(rest)));
            let (key, value, origin) = match from_file {
                Some(stem) => {
                    let path = PathBuf::from(&value);
                    let content = std::fs::read_to_string(&path).map_err(|source| {
                        ConfigError::SecretFile {
                            var: var.clone(),
                            path: path.clone(),
                            source,
                        }
                    })?;
                    let content = content.trim_end_matches(['\n', '\r']).to_owned();
                    (
                        stem,
                        content,
                        format!("file {} (via {var})", path.display()),
                    )
                }
                None => (rest, value, format!("env {var}")),
            };
            entries.push((
                key_of(key),
                Value::new(Some(&origin), ValueKind::String(value)),
            ));
        }
        Ok(Layer { entries })
    }
}

/// The key path a variable name (after the prefix) sets: `A__B_C` → `a.b_c`.
fn key_of(var: &str) -> String {
    var.to_lowercase().replace("__", ".")
}

/// Whether the dotted `path` names a key of `tree`.
fn has_key(tree: &serde_json::Value, path: &str) -> bool {
    let mut current = tree;
    for segment in path.split('.') {
        match current.get(segment) {
            Some(next) => current = next,
            None => return false,
        }
    }
    true
}

/// A configuration layer whose values remember where they came from.
#[derive(Debug, Clone)]
struct Layer {
    entries: Vec<(String, Value)>,
}

impl Layer {
    fn new(origin: &str, values: &[(String, ValueKind)]) -> Self {
        let origin = origin.to_owned();
        Self {
            entries: values
                .iter()
                .map(|(k, v)| (k.clone(), Value::new(Some(&origin), v.clone())))
                .collect(),
        }
    }
}

impl Source for Layer {
    fn clone_into_box(&self) -> Box<dyn Source + Send + Sync> {
        Box::new(self.clone())
    }

    fn collect(&self) -> Result<Map<String, Value>, config::ConfigError> {
        // Keys are paths (`http.port`); `collect_to` expands them into tables.
        Ok(self.entries.iter().cloned().collect())
    }
}

/// Deserializes the value at `key` (`""` = the root) with errors naming the
/// full key path, what was expected and the layer the value came from.
fn deserialize_at<T: DeserializeOwned>(raw: &Config, key: &str) -> Result<T, ConfigError> {
    let value = lookup(&raw.cache, key)
        .cloned()
        .unwrap_or_else(|| Value::new(None, ValueKind::Table(Map::new())));
    serde_path_to_error::deserialize(value).map_err(|e| {
        let sub = e.path().to_string();
        let path = match (key.is_empty(), sub.as_str()) {
            (_, ".") => key.to_owned(),
            (true, _) => sub.clone(),
            (false, _) => format!("{key}.{sub}"),
        };
        describe(raw, &path, e.into_inner())
    })
}

/// The merged value at a dotted path (`http.port`; `items[0]` counts as
/// `items`), keeping its origin.
fn lookup<'a>(root: &'a Value, path: &str) -> Option<&'a Value> {
    let mut current = root;
    for segment in path.split('.').filter(|s| !s.is_empty()) {
        let name = segment.split('[').next().unwrap_or(segment);
        current = match &current.kind {
            ValueKind::Table(table) => table.get(name)?,
            _ => return None,
        };
    }
    Some(current)
}

fn describe(raw: &Config, path: &str, error: config::ConfigError) -> ConfigError {
    let value = match error {
        config::ConfigError::Type {
            unexpected,
            expected,
            ..
        } => InvalidValue::new(path, expected).found(unexpected.to_string()),
        config::ConfigError::NotFound(field) => {
            InvalidValue::new(join(path, &field), "a value").found("nothing")
        }
        config::ConfigError::At { error, .. } => return describe(raw, path, *error),
        config::ConfigError::Message(message) => from_serde_message(path, &message),
        other => InvalidValue::new(path, other.to_string()),
    };
    ConfigError::Invalid(locate(raw, value))
}

/// Splits serde's messages (`unknown field `x`, expected one of ...`,
/// `invalid value: integer `7`, expected ...`) into what was found and what
/// was expected; an unknown key becomes the key's own path, so its layer is
/// the one that set it.
fn from_serde_message(path: &str, message: &str) -> InvalidValue {
    if let Some(rest) = message.strip_prefix("unknown field `")
        && let Some((field, expected)) = rest.split_once("`, expected ")
    {
        // serde_path_to_error's path already ends at the unknown key.
        let key = if path == field || path.ends_with(&format!(".{field}")) {
            path.to_owned()
        } else {
            join(path, field)
        };
        return InvalidValue::new(key, format!("a known key: {expected}")).found("an unknown key");
    }
    if let Some(field) = message
        .strip_prefix("missing field `")
        .and_then(|rest| rest.strip_suffix('`'))
    {
        return InvalidValue::new(join(path, field), "a value").found("nothing");
    }
    let found_expected = message
        .strip_prefix("invalid value: ")
        .or_else(|| message.strip_prefix("invalid type: "))
        .or_else(|| message.strip_prefix("unknown variant "))
        .and_then(|rest| rest.split_once(", expected "));
    match found_expected {
        Some((found, expected)) => InvalidValue::new(path, expected).found(found),
        None => InvalidValue::new(path, message),
    }
}

/// Names the layer of the value an error is about.
fn locate(raw: &Config, error: InvalidValue) -> InvalidValue {
    if error.layer.is_some() {
        return error;
    }
    let layer = origin_of(raw, &error.key);
    error.in_layer(layer)
}

fn join(path: &str, field: &str) -> String {
    if path.is_empty() || path == "." {
        field.to_owned()
    } else {
        format!("{path}.{field}")
    }
}

fn origin_of(raw: &Config, path: &str) -> String {
    lookup(&raw.cache, path)
        .and_then(origin_within)
        .unwrap_or(DEFAULT_LAYER)
        .to_owned()
}

/// The layer of `value`; a table made by merging carries none, so it is the
/// layer of the first value inside it that has one (an unknown section,
/// `CHASSIS__STORAGE__SQLLITE__PATH`, then names the variable).
fn origin_within(value: &Value) -> Option<&str> {
    value.origin().or_else(|| match &value.kind {
        ValueKind::Table(table) => table.values().find_map(origin_within),
        ValueKind::Array(items) => items.iter().find_map(origin_within),
        _ => None,
    })
}

impl ConfigSource for Configuration {
    fn read<T: DeserializeOwned>(&self, key: &str) -> Result<T, InvalidValue> {
        deserialize_at(&self.raw, key).map_err(|e| match e {
            ConfigError::Invalid(value) => value,
            other => InvalidValue::new(key, other.to_string()),
        })
    }

    fn origin(&self, key: &str) -> String {
        Configuration::origin(self, key)
    }
}

/// The loaded configuration: the typed chassis sections plus the merged raw
/// tree (for a service's own sections and for `--print-config`).
#[derive(Debug, Clone)]
pub struct Configuration {
    raw: Config,
    chassis: ChassisConfig,
    environment: String,
    files: Vec<PathBuf>,
    declared: Vec<DeclaredSection>,
}

impl Configuration {
    /// Loads with a default [`ConfigLoader`].
    pub fn load() -> Result<Self, ConfigError> {
        ConfigLoader::new().load()
    }

    /// The typed chassis sections.
    pub fn chassis(&self) -> &ChassisConfig {
        &self.chassis
    }

    /// The environment name the files were picked for.
    pub fn environment(&self) -> &str {
        &self.environment
    }

    /// The files that were read, lowest layer first.
    pub fn files(&self) -> &[PathBuf] {
        &self.files
    }

    /// Reads a service's own section, e.g. `config.section::<ShippingConfig>("shipping")`.
    ///
    /// A missing section deserializes from an empty table, so a type with
    /// `#[serde(default)]` gets its defaults. Errors name the key path.
    pub fn section<T: DeserializeOwned>(&self, key: &str) -> Result<T, ConfigError> {
        deserialize_at(&self.raw, key)
    }

    /// The layer a value came from: a file path, `env VAR`, `file PATH (via
    /// VAR)`, `override in code`, or `built-in default`.
    pub fn origin(&self, key: &str) -> String {
        origin_of(&self.raw, key)
    }

    /// The effective configuration, one `key = value  # origin` line per
    /// value, secrets redacted. What `--print-config` prints.
    pub fn render(&self) -> String {
        let mut tree = serde_json::to_value(&self.chassis).unwrap_or_default();
        // Each compiled-in provider's section with its defaults (an invalid
        // one shows as loaded; start-up names the error).
        for (key, value) in messaging_init::provider_sections(self).unwrap_or_default() {
            insert_at(&mut tree, key, value);
        }
        for (key, value) in traces_init::provider_sections(self).unwrap_or_default() {
            insert_at(&mut tree, key, value);
        }
        for (key, value) in storage_init::provider_sections(self).unwrap_or_default() {
            insert_at(&mut tree, key, value);
        }
        // The host's own sections and the service's declared ones, with
        // their defaults.
        let metrics = self
            .section::<crate::telemetry::MetricsConfig>("metrics")
            .unwrap_or_default();
        insert_at(
            &mut tree,
            "metrics",
            serde_json::to_value(metrics).unwrap_or_default(),
        );
        for section in &self.declared {
            if let Ok(value) = (section.read)(&self.raw, &section.key) {
                insert_at(&mut tree, &section.key, value);
            }
        }
        // Then whatever else was loaded: a service's own sections, the
        // sections of providers not compiled in.
        let raw: serde_json::Value = self.raw.clone().try_deserialize().unwrap_or_default();
        fill_missing(&mut tree, raw);
        let mut lines = Vec::new();
        flatten("", &tree, &mut lines);
        let mut out = format!(
            "# effective configuration (environment `{}`; files: {})\n",
            self.environment,
            if self.files.is_empty() {
                "none".to_owned()
            } else {
                self.files
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            }
        );
        let width = lines
            .iter()
            .map(|(k, v)| k.len() + v.len())
            .max()
            .unwrap_or(0)
            + 3;
        for (key, value) in lines {
            let pad = width.saturating_sub(key.len() + value.len());
            let _ = writeln!(out, "{key} = {value}{:pad$}# {}", "", self.origin(&key));
        }
        out
    }
}

/// Sets the value at a dotted key, creating tables on the way.
fn insert_at(tree: &mut serde_json::Value, key: &str, value: serde_json::Value) {
    let mut current = tree;
    for segment in key.split('.') {
        if !current.is_object() {
            *current = serde_json::Value::Object(serde_json::Map::new());
        }
        current = current
            .as_object_mut()
            .expect("made an object above")
            .entry(segment)
            .or_insert(serde_json::Value::Null);
    }
    *current = value;
}

/// Adds what `extra` has and `tree` lacks, at every depth.
fn fill_missing(tree: &mut serde_json::Value, extra: serde_json::Value) {
    match (tree, extra) {
        (serde_json::Value::Object(tree), serde_json::Value::Object(extra)) => {
            for (key, value) in extra {
                match tree.get_mut(&key) {
                    Some(existing) => fill_missing(existing, value),
                    None => {
                        tree.insert(key, value);
                    }
                }
            }
        }
        (tree @ serde_json::Value::Null, extra) => *tree = extra,
        _ => {}
    }
}

fn flatten(prefix: &str, value: &serde_json::Value, out: &mut Vec<(String, String)>) {
    match value {
        serde_json::Value::Object(map) if !map.is_empty() => {
            for (k, v) in map {
                let key = join(prefix, k);
                if is_secret_key(k) && !v.is_object() {
                    if !v.is_null() {
                        out.push((key, format!("\"{}\"", chassis_core::REDACTED)));
                    } else {
                        out.push((key, "null".into()));
                    }
                } else {
                    flatten(&key, v, out);
                }
            }
        }
        other => out.push((prefix.to_owned(), redacted(other).to_string())),
    }
}

/// `value` with secrets hidden at every depth (inside arrays too): values of
/// secret keys, and passwords in URLs.
fn redacted(value: &serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    match value {
        Value::String(s) => Value::String(redact_url(s)),
        Value::Array(items) => Value::Array(items.iter().map(redacted).collect()),
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| {
                    let v = if is_secret_key(k) && !v.is_null() && !v.is_object() {
                        Value::String(chassis_core::REDACTED.to_owned())
                    } else {
                        redacted(v)
                    };
                    (k.clone(), v)
                })
                .collect(),
        ),
        other => other.clone(),
    }
}

/// Whether a key holds a secret by its name.
pub fn is_secret_key(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    [
        "password",
        "passwd",
        "secret",
        "token",
        "api_key",
        "apikey",
        "private_key",
        "credential",
    ]
    .iter()
    .any(|word| key.contains(word))
}

/// Replaces the password of a URL (`scheme://user:password@host`) with `***`.
pub fn redact_url(text: &str) -> String {
    let Some(scheme_end) = text.find("://") else {
        return text.to_owned();
    };
    let rest = &text[scheme_end + 3..];
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    match authority.rfind('@') {
        Some(at) => {
            let userinfo = &authority[..at];
            let user = userinfo.split(':').next().unwrap_or_default();
            format!(
                "{}{}:{}{}",
                &text[..scheme_end + 3],
                user,
                chassis_core::REDACTED,
                &rest[at..]
            )
        }
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_url_credentials_only() {
        assert_eq!(
            redact_url("amqp://guest:guest@127.0.0.1:5672/%2f"),
            "amqp://guest:***@127.0.0.1:5672/%2f"
        );
        assert_eq!(redact_url("postgres://app@db/x"), "postgres://app:***@db/x");
        assert_eq!(
            redact_url("http://host/path?a=b@c"),
            "http://host/path?a=b@c"
        );
        assert_eq!(redact_url("plain"), "plain");
    }

    #[test]
    fn secret_keys_by_name() {
        for k in [
            "password",
            "api_key",
            "clientSecret",
            "jwt_token",
            "PASSWORD",
        ] {
            assert!(is_secret_key(k), "{k}");
        }
        assert!(!is_secret_key("port"));
    }

    #[test]
    fn defaults_load_without_files_or_variables() {
        let config = ConfigLoader::new()
            .env_vars(Vec::<(String, String)>::new())
            .environment("none")
            .default_value("service.name", "t")
            .load()
            .unwrap();
        assert_eq!(config.chassis().http.port, 8080);
        assert_eq!(config.origin("http.port"), DEFAULT_LAYER);
    }
}
