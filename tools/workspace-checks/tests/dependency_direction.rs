//! The real workspace keeps the one direction of dependencies, and its
//! abstraction crates name no provider.

use std::path::PathBuf;
use std::process::Command;

use workspace_checks::provider_names::{check_abstractions, provider_names};
use workspace_checks::{Package, check, package_from_manifest, packages_from_metadata};

fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("the workspace root exists")
}

fn workspace_packages() -> Vec<Package> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let output = Command::new(cargo)
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
        ])
        .current_dir(workspace_root())
        .output()
        .expect("cargo metadata runs");
    assert!(
        output.status.success(),
        "cargo metadata failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let metadata: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    packages_from_metadata(&metadata).unwrap()
}

#[test]
fn dependencies_point_one_way() {
    let mut packages = workspace_packages();
    // The service template lives outside the workspace (its manifest holds
    // placeholders); check its manifest directly when it exists.
    let template = workspace_root().join("template/Cargo.toml");
    if let Ok(manifest) = std::fs::read_to_string(&template) {
        packages.push(package_from_manifest(&template.display().to_string(), &manifest).unwrap());
    }
    let names: Vec<&str> = packages.iter().map(|p| p.name.as_str()).collect();
    for expected in [
        "messaging-abstractions",
        "storage-abstractions",
        "chassis-web",
    ] {
        assert!(names.contains(&expected), "{expected} not in {names:?}");
    }
    let violations = check(&packages);
    assert!(
        violations.is_empty(),
        "dependencies pointing the wrong way:\n{}",
        violations
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n")
    );
}

#[test]
fn abstractions_name_no_provider() {
    let packages = workspace_packages();
    let names = provider_names(&packages);
    for expected in ["rabbitmq", "postgres", "otlp", "inmemory", "stdout", "nats"] {
        assert!(
            names.iter().any(|n| n == expected),
            "{expected} not in {names:?}"
        );
    }
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let findings: Vec<String> = check_abstractions(&workspace_root(), &packages, &names)
        .unwrap()
        .iter()
        .map(ToString::to_string)
        .collect();
    assert!(
        findings.is_empty(),
        "abstraction crates naming a provider (its config type and keys belong in the provider crate):\n{}",
        findings.join("\n")
    );
}
