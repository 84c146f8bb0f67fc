//! Rolling updates drop nothing: every deployable service's production
//! configuration keeps its listener open for a while after SIGTERM
//! (`http.shutdown_delay`, so endpoints and ingresses stop routing to it
//! first), and its Kubernetes manifest leaves time for the whole graceful
//! shutdown (`shutdown_delay + shutdown_timeout` plus slack for the trace
//! export and the last log lines) before the kubelet's SIGKILL.

use std::path::{Path, PathBuf};
use std::time::Duration;

/// The least delay that covers endpoint removal reaching kube-proxy and
/// ingress controllers.
const MIN_DELAY: Duration = Duration::from_secs(3);
/// Trace export and log flush after the shutdown deadline.
const SLACK: Duration = Duration::from_secs(5);
/// The chassis' default `http.shutdown_timeout`.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// (production config, manifest) of each service deployed to Kubernetes.
const SERVICES: &[(&str, &str)] = &[
    (
        "examples/order-service/config/production.toml",
        "deploy/k8s/order-service.yaml",
    ),
    (
        "examples/shipping-service/config/production.toml",
        "deploy/k8s/shipping-service.yaml",
    ),
    (
        "template/config/production.toml",
        "template/k8s/deployment.yaml",
    ),
];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// `"5s"`, `"500ms"`, `"1m"` — the forms the chassis' configs use.
fn duration(text: &str) -> Option<Duration> {
    let split = text.find(|c: char| !c.is_ascii_digit())?;
    let (number, unit) = text.split_at(split);
    let n: u64 = number.parse().ok()?;
    match unit {
        "ms" => Some(Duration::from_millis(n)),
        "s" => Some(Duration::from_secs(n)),
        "m" => Some(Duration::from_secs(n * 60)),
        _ => None,
    }
}

/// `http.<key>` of a production config, `None` when absent.
fn http_duration(config: &toml::Table, key: &str, file: &str) -> Option<Duration> {
    let value = config.get("http")?.as_table()?.get(key)?;
    let text = value
        .as_str()
        .unwrap_or_else(|| panic!("{file}: http.{key} should be a duration string"));
    Some(duration(text).unwrap_or_else(|| panic!("{file}: http.{key} = {text:?} is no duration")))
}

/// `terminationGracePeriodSeconds` of the manifest's Deployment.
fn grace_period(manifest: &str, file: &str) -> Duration {
    let seconds = manifest
        .lines()
        .find_map(|line| line.trim().strip_prefix("terminationGracePeriodSeconds:"))
        .unwrap_or_else(|| panic!("{file}: no terminationGracePeriodSeconds (default 30s)"));
    Duration::from_secs(
        seconds
            .trim()
            .parse()
            .unwrap_or_else(|e| panic!("{file}: terminationGracePeriodSeconds: {e}")),
    )
}

#[test]
fn production_configs_delay_the_listener_close_within_the_grace_period() {
    let mut problems = Vec::new();
    for (config_file, manifest_file) in SERVICES {
        let config: toml::Table = read(&root().join(config_file))
            .replace("{{crate_name}}", "template")
            .parse()
            .unwrap_or_else(|e| panic!("{config_file}: {e}"));
        let delay = http_duration(&config, "shutdown_delay", config_file).unwrap_or_default();
        let timeout =
            http_duration(&config, "shutdown_timeout", config_file).unwrap_or(DEFAULT_TIMEOUT);
        if delay < MIN_DELAY {
            problems.push(format!(
                "{config_file}: http.shutdown_delay is {delay:?}; at least {MIN_DELAY:?} so the \
                 listener stays open until endpoints and ingresses stop routing to the pod"
            ));
        }
        let grace = grace_period(&read(&root().join(manifest_file)), manifest_file);
        if delay + timeout + SLACK > grace {
            problems.push(format!(
                "{manifest_file}: terminationGracePeriodSeconds is {grace:?}, less than \
                 http.shutdown_delay ({delay:?}) + http.shutdown_timeout ({timeout:?}) + \
                 {SLACK:?} of {config_file}: the kubelet kills the process mid-shutdown"
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn durations_parse_as_the_configs_write_them() {
    assert_eq!(duration("5s"), Some(Duration::from_secs(5)));
    assert_eq!(duration("250ms"), Some(Duration::from_millis(250)));
    assert_eq!(duration("2m"), Some(Duration::from_secs(120)));
    assert_eq!(duration("5"), None);
    assert_eq!(duration("fast"), None);
}
