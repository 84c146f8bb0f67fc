//! Checks of the workspace's shape: the one direction of dependencies.
//!
//! Crates are classified by name and place:
//!
//! | kind | recognised by |
//! |---|---|
//! | abstractions | name ends in `-abstractions` |
//! | init | name ends in `-init` |
//! | provider | `<concern>-<name>` for a concern of [`CONCERNS`], not abstractions / init / conformance / `storage-sql` (the relational layer the SQL providers and services share) |
//! | example | manifest under an `examples/` or `template/` directory |
//!
//! Rules (normal and build dependencies; dev-dependencies are exempt):
//! - abstractions depend on no provider, no init crate, no [`CLIENT_LIBRARIES`] entry;
//! - a provider depends on no other provider;
//! - an example or the template depends on no provider and no init crate.
//!
//! ```
//! use workspace_checks::{Dependency, Package, check};
//!
//! let bad = Package::new("messaging-abstractions", "messaging-abstractions/Cargo.toml")
//!     .with_dependency(Dependency::normal("lapin"))
//!     .with_dependency(Dependency::normal("tracing-subscriber-like-but-unknown"));
//! let violations = check(&[bad]);
//! assert_eq!(violations.len(), 1);
//! assert!(violations[0].to_string().contains("client library `lapin`"));
//! ```

use std::fmt;
use std::path::Path;

pub mod provider_names;

/// The cross-cutting concerns that have abstractions / providers / init crates.
pub const CONCERNS: &[&str] = &["messaging", "storage", "logging", "traces"];

/// Client and I/O libraries that only providers (and hosts) may use.
pub const CLIENT_LIBRARIES: &[&str] = &[
    "lapin",
    "amqprs",
    "sqlx",
    "tokio-postgres",
    "postgres",
    "opentelemetry-otlp",
    "opentelemetry_sdk",
    "opentelemetry-proto",
    "tracing-opentelemetry",
    "tracing-subscriber",
    "tonic",
    "reqwest",
    "hyper",
    "axum",
    "metrics-exporter-prometheus",
];

/// What a workspace crate is, for the rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `<concern>-abstractions`.
    Abstractions,
    /// `<concern>-<provider>`.
    Provider,
    /// `<concern>-init`.
    Init,
    /// An example service or the service template.
    Example,
    /// Anything else (chassis crates, conformance suites, tools).
    Other,
}

/// Classifies a crate by its name and manifest path.
pub fn classify(name: &str, manifest_path: &str) -> Kind {
    let in_dir = |dir: &str| {
        Path::new(manifest_path)
            .components()
            .any(|c| c.as_os_str() == dir)
    };
    if in_dir("examples") || in_dir("template") {
        return Kind::Example;
    }
    if name.ends_with("-abstractions") {
        return Kind::Abstractions;
    }
    if name.ends_with("-init") {
        return Kind::Init;
    }
    match name.split_once('-') {
        Some((concern, rest))
            if CONCERNS.contains(&concern)
                && !rest.is_empty()
                && !matches!(rest, "conformance" | "abstractions" | "init" | "sql") =>
        {
            Kind::Provider
        }
        _ => Kind::Other,
    }
}

/// One dependency of a package.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dependency {
    /// The depended-on package's name (not a rename).
    pub name: String,
    /// `None` for normal, `Some("dev")`, `Some("build")`.
    pub kind: Option<String>,
}

impl Dependency {
    /// A normal dependency.
    pub fn normal(name: &str) -> Self {
        Self {
            name: name.to_owned(),
            kind: None,
        }
    }

    /// A dev-dependency.
    pub fn dev(name: &str) -> Self {
        Self {
            name: name.to_owned(),
            kind: Some("dev".to_owned()),
        }
    }

    fn is_dev(&self) -> bool {
        self.kind.as_deref() == Some("dev")
    }
}

/// A package as `cargo metadata` describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Package {
    /// Its name.
    pub name: String,
    /// Path of its `Cargo.toml`.
    pub manifest_path: String,
    /// Its declared dependencies.
    pub dependencies: Vec<Dependency>,
}

impl Package {
    /// A package without dependencies.
    pub fn new(name: &str, manifest_path: &str) -> Self {
        Self {
            name: name.to_owned(),
            manifest_path: manifest_path.to_owned(),
            dependencies: Vec::new(),
        }
    }

    /// Adds a dependency.
    pub fn with_dependency(mut self, dependency: Dependency) -> Self {
        self.dependencies.push(dependency);
        self
    }
}

/// A dependency pointing the wrong way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// The depending crate.
    pub from: String,
    /// The dependency.
    pub to: String,
    /// Which rule it breaks.
    pub rule: &'static str,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "`{}` depends on {}: {}", self.from, self.to, self.rule)
    }
}

/// Why metadata could not be read.
#[derive(Debug)]
pub struct MetadataError(pub String);

impl fmt::Display for MetadataError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "unreadable cargo metadata: {}", self.0)
    }
}

impl std::error::Error for MetadataError {}

/// The workspace members of `cargo metadata --format-version 1` output.
pub fn packages_from_metadata(metadata: &serde_json::Value) -> Result<Vec<Package>, MetadataError> {
    let members: Vec<&str> = metadata["workspace_members"]
        .as_array()
        .ok_or_else(|| MetadataError("no `workspace_members`".into()))?
        .iter()
        .filter_map(|v| v.as_str())
        .collect();
    let packages = metadata["packages"]
        .as_array()
        .ok_or_else(|| MetadataError("no `packages`".into()))?;
    let mut out = Vec::new();
    for p in packages {
        let id = p["id"].as_str().unwrap_or_default();
        if !members.contains(&id) {
            continue;
        }
        let text = |v: &serde_json::Value, what: &str| {
            v.as_str()
                .map(str::to_owned)
                .ok_or_else(|| MetadataError(format!("package without {what}")))
        };
        let mut package = Package::new(
            &text(&p["name"], "name")?,
            &text(&p["manifest_path"], "manifest_path")?,
        );
        for d in p["dependencies"].as_array().into_iter().flatten() {
            package.dependencies.push(Dependency {
                name: text(&d["name"], "dependency name")?,
                kind: d["kind"].as_str().map(str::to_owned),
            });
        }
        out.push(package);
    }
    Ok(out)
}

/// The package a service template's `Cargo.toml` describes (its
/// `[dependencies]` and `[build-dependencies]`; placeholders in values are
/// fine, the file only has to be TOML).
pub fn package_from_manifest(path: &str, manifest: &str) -> Result<Package, MetadataError> {
    let value: toml::Table = manifest
        .parse()
        .map_err(|e| MetadataError(format!("{path}: {e}")))?;
    let mut package = Package::new("template", path);
    for (section, kind) in [
        ("dependencies", None),
        ("build-dependencies", Some("build")),
    ] {
        if let Some(deps) = value.get(section).and_then(toml::Value::as_table) {
            for (key, spec) in deps {
                // `alias = { package = "real-name", ... }`
                let name = spec
                    .get("package")
                    .and_then(toml::Value::as_str)
                    .unwrap_or(key);
                package.dependencies.push(Dependency {
                    name: name.to_owned(),
                    kind: kind.map(str::to_owned),
                });
            }
        }
    }
    Ok(package)
}

/// Every dependency that points the wrong way. Dependencies are judged as
/// providers or init crates only when they are among `packages` (so an
/// outside crate such as `tracing-subscriber` is never taken for a provider
/// of the `traces` concern); outside crates count through
/// [`CLIENT_LIBRARIES`].
pub fn check(packages: &[Package]) -> Vec<Violation> {
    let members: Vec<&str> = packages.iter().map(|p| p.name.as_str()).collect();
    let mut violations = Vec::new();
    for package in packages {
        let from = classify(&package.name, &package.manifest_path);
        for dep in package.dependencies.iter().filter(|d| !d.is_dev()) {
            let to = if members.contains(&dep.name.as_str()) {
                classify(&dep.name, "")
            } else {
                Kind::Other
            };
            let rule = match (from, to) {
                (Kind::Abstractions, Kind::Provider) => {
                    Some("abstractions must not depend on a provider")
                }
                (Kind::Abstractions, Kind::Init) => {
                    Some("abstractions must not depend on an init crate")
                }
                (Kind::Abstractions, _) if CLIENT_LIBRARIES.contains(&dep.name.as_str()) => {
                    Some("abstractions must not depend on a client library")
                }
                (Kind::Provider, Kind::Provider) => {
                    Some("a provider must not depend on another provider")
                }
                (Kind::Example, Kind::Provider) => {
                    Some("examples and the template pick providers by config, never depend on one")
                }
                (Kind::Example, Kind::Init) => {
                    Some("examples and the template depend on chassis-* crates, not init crates")
                }
                _ => None,
            };
            if let Some(rule) = rule {
                let to = if CLIENT_LIBRARIES.contains(&dep.name.as_str()) {
                    format!("client library `{}`", dep.name)
                } else {
                    format!("`{}`", dep.name)
                };
                violations.push(Violation {
                    from: package.name.clone(),
                    to,
                    rule,
                });
            }
        }
    }
    violations
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_by_name_and_place() {
        assert_eq!(classify("messaging-abstractions", ""), Kind::Abstractions);
        assert_eq!(classify("messaging-rabbitmq", ""), Kind::Provider);
        assert_eq!(classify("storage-postgres", ""), Kind::Provider);
        assert_eq!(classify("logging-console", ""), Kind::Provider);
        assert_eq!(classify("traces-otlp", ""), Kind::Provider);
        assert_eq!(classify("storage-init", ""), Kind::Init);
        assert_eq!(classify("messaging-conformance", ""), Kind::Other);
        assert_eq!(classify("chassis-web", ""), Kind::Other);
        assert_eq!(classify("tracing", ""), Kind::Other);
        assert_eq!(
            classify("order-service", "/r/examples/order-service/Cargo.toml"),
            Kind::Example
        );
        assert_eq!(classify("x", "/r/template/Cargo.toml"), Kind::Example);
    }

    /// A fabricated workspace breaking every rule once, plus allowed edges.
    fn bad_workspace() -> Vec<Package> {
        vec![
            Package::new(
                "messaging-abstractions",
                "/r/messaging-abstractions/Cargo.toml",
            )
            .with_dependency(Dependency::normal("serde"))
            .with_dependency(Dependency::normal("chassis-core"))
            .with_dependency(Dependency::normal("lapin"))
            .with_dependency(Dependency::normal("messaging-inmemory"))
            .with_dependency(Dependency::normal("messaging-init"))
            .with_dependency(Dependency::dev("messaging-inmemory")),
            Package::new("logging-abstractions", "/r/logging-abstractions/Cargo.toml")
                .with_dependency(Dependency::normal("tracing-subscriber")),
            Package::new("storage-postgres", "/r/storage-postgres/Cargo.toml")
                .with_dependency(Dependency::normal("storage-abstractions"))
                .with_dependency(Dependency::normal("sqlx"))
                .with_dependency(Dependency::normal("storage-inmemory"))
                .with_dependency(Dependency::dev("storage-conformance")),
            Package::new("messaging-init", "/r/messaging-init/Cargo.toml")
                .with_dependency(Dependency::normal("messaging-rabbitmq"))
                .with_dependency(Dependency::normal("messaging-inmemory")),
            Package::new("order-service", "/r/examples/order-service/Cargo.toml")
                .with_dependency(Dependency::normal("chassis-web"))
                .with_dependency(Dependency::normal("messaging-rabbitmq"))
                .with_dependency(Dependency::normal("storage-init"))
                .with_dependency(Dependency::dev("messaging-inmemory")),
            // A provider may use its client library, even one named like a concern.
            Package::new("logging-console", "/r/logging-console/Cargo.toml")
                .with_dependency(Dependency::normal("logging-abstractions"))
                .with_dependency(Dependency::normal("tracing-subscriber")),
            Package::new("messaging-inmemory", "/r/messaging-inmemory/Cargo.toml"),
            Package::new("messaging-rabbitmq", "/r/messaging-rabbitmq/Cargo.toml"),
            Package::new("storage-inmemory", "/r/storage-inmemory/Cargo.toml"),
            Package::new("storage-init", "/r/storage-init/Cargo.toml"),
            Package::new("chassis-web", "/r/chassis-web/Cargo.toml"),
        ]
    }

    #[test]
    fn finds_every_wrong_edge_and_only_those() {
        let found: Vec<(String, String)> = check(&bad_workspace())
            .into_iter()
            .map(|v| (v.from, v.to))
            .collect();
        let expected = [
            ("messaging-abstractions", "client library `lapin`"),
            ("messaging-abstractions", "`messaging-inmemory`"),
            ("messaging-abstractions", "`messaging-init`"),
            (
                "logging-abstractions",
                "client library `tracing-subscriber`",
            ),
            ("storage-postgres", "`storage-inmemory`"),
            ("order-service", "`messaging-rabbitmq`"),
            ("order-service", "`storage-init`"),
        ];
        let expected: Vec<(String, String)> = expected
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect();
        assert_eq!(found, expected);
    }

    #[test]
    fn reads_metadata_json_of_members_only() {
        let metadata = serde_json::json!({
            "workspace_members": ["path+file:///r/traces-abstractions#0.1.0"],
            "packages": [
                {
                    "id": "path+file:///r/traces-abstractions#0.1.0",
                    "name": "traces-abstractions",
                    "manifest_path": "/r/traces-abstractions/Cargo.toml",
                    "dependencies": [
                        { "name": "opentelemetry-otlp", "kind": null },
                        { "name": "traces-otlp", "kind": "dev" }
                    ]
                },
                {
                    "id": "registry+https://github.com/rust-lang/crates.io-index#lapin@4.0.0",
                    "name": "lapin-abstractions",
                    "manifest_path": "/home/.cargo/registry/lapin/Cargo.toml",
                    "dependencies": [{ "name": "lapin", "kind": null }]
                }
            ]
        });
        let packages = packages_from_metadata(&metadata).unwrap();
        assert_eq!(packages.len(), 1);
        let violations = check(&packages);
        assert_eq!(violations.len(), 1);
        assert_eq!(
            violations[0].to_string(),
            "`traces-abstractions` depends on client library `opentelemetry-otlp`: abstractions must not depend on a client library"
        );
        assert!(packages_from_metadata(&serde_json::json!({})).is_err());
    }

    #[test]
    fn reads_template_manifest() {
        let manifest = r#"
            [package]
            name = "{{project-name}}"
            [dependencies]
            chassis-web = { version = "0.1", registry = "chassis" }
            bus = { package = "messaging-rabbitmq", version = "0.1" }
            [dev-dependencies]
            messaging-inmemory = "0.1"
        "#;
        let package = package_from_manifest("/r/template/Cargo.toml", manifest).unwrap();
        let violations = check(&[
            package,
            Package::new("messaging-rabbitmq", "/r/messaging-rabbitmq/Cargo.toml"),
            Package::new("messaging-inmemory", "/r/messaging-inmemory/Cargo.toml"),
        ]);
        assert_eq!(violations.len(), 1);
        assert_eq!(violations[0].to, "`messaging-rabbitmq`");
        assert!(package_from_manifest("/r/template/Cargo.toml", "[dependencies").is_err());
    }
}
