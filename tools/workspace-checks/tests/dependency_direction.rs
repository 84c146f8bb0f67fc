//! The real workspace keeps the one direction of dependencies.

use std::path::PathBuf;
use std::process::Command;

use workspace_checks::{check, package_from_manifest, packages_from_metadata};

fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

#[test]
fn dependencies_point_one_way() {
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
    let mut packages = packages_from_metadata(&metadata).unwrap();
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
