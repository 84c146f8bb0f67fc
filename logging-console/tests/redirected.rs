//! What `logging_console::layer` writes to a real stdout: this test runs its
//! own binary again as a child whose stdout is a file, or a terminal (a pty
//! from util-linux's `script`), and reads what the child logged.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;

use logging_abstractions::{LogFormat, LoggingConfig, NoLogContext};
use tracing_subscriber::Registry;
use tracing_subscriber::layer::SubscriberExt;

/// Set in the child: the format it logs in.
const CHILD: &str = "LOGGING_CONSOLE_TEST_CHILD";
const TEST: &str = "child_logs_when_asked";

/// The child's part: log one line in the format named by `CHILD`, with
/// colour allowed by the configuration (`ansi = true`, the default).
#[test]
fn child_logs_when_asked() {
    let Ok(format) = std::env::var(CHILD) else {
        return; // run as a test of its own: nothing to do
    };
    let format = match format.as_str() {
        "pretty" => LogFormat::Pretty,
        _ => LogFormat::Compact,
    };
    let config = LoggingConfig {
        format,
        ..Default::default()
    };
    assert!(config.ansi, "colour is on in the configuration");
    let layer = logging_console::layer::<Registry>(&config, Arc::new(NoLogContext)).unwrap();
    tracing::subscriber::with_default(Registry::default().with(layer), || {
        tracing::info!(order = 7, "order placed");
    });
    // Lines reach stdout through the writer thread's queue.
    assert!(logging_console::flush(std::time::Duration::from_secs(5)));
}

fn child(format: &str) -> Command {
    let mut command = Command::new(std::env::current_exe().unwrap());
    command
        .args([
            "--exact",
            TEST,
            "--nocapture",
            "--test-threads=1",
            "--color=never",
        ])
        .env(CHILD, format)
        .env_remove("NO_COLOR")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null());
    command
}

fn output_file(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("logging-console-{}-{name}.log", std::process::id()))
}

fn read(path: &Path) -> Vec<u8> {
    let bytes = std::fs::read(path).unwrap();
    let _ = std::fs::remove_file(path);
    assert!(
        String::from_utf8_lossy(&bytes).contains("order placed"),
        "the child logged nothing: {}",
        String::from_utf8_lossy(&bytes)
    );
    bytes
}

#[test]
fn pretty_and_compact_logs_redirected_to_a_file_contain_no_escape_byte() {
    for format in ["pretty", "compact"] {
        let path = output_file(format);
        let status = child(format)
            .stdout(std::fs::File::create(&path).unwrap())
            .status()
            .unwrap();
        assert!(status.success());
        let bytes = read(&path);
        assert!(
            !bytes.contains(&0x1b),
            "{format}: escape byte in a redirected log: {}",
            String::from_utf8_lossy(&bytes)
        );
    }
}

/// Runs the child with its stdout on a pseudo-terminal (`script` copies
/// what the terminal shows into `path`) and returns what it wrote.
fn on_a_terminal(no_color: Option<&str>, name: &str) -> Vec<u8> {
    let path = output_file(name);
    let child = child("pretty");
    let line = std::iter::once(child.get_program())
        .chain(child.get_args())
        .map(|arg| format!("'{}'", arg.to_str().unwrap()))
        .collect::<Vec<_>>()
        .join(" ");
    let mut script = Command::new("script");
    script
        .args(["--quiet", "--return", "--command", &line])
        .arg(&path)
        .env(CHILD, "pretty")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::null());
    match no_color {
        Some(value) => script.env("NO_COLOR", value),
        None => script.env_remove("NO_COLOR"),
    };
    let status = script
        .status()
        .expect("`script` (util-linux, in every Debian) runs the child on a pty");
    assert!(status.success());
    read(&path)
}

#[test]
fn a_terminal_gets_colour_unless_no_color_is_set() {
    assert!(
        on_a_terminal(None, "tty").contains(&0x1b),
        "a terminal gets colour"
    );
    assert!(
        !on_a_terminal(Some("1"), "tty-no-color").contains(&0x1b),
        "NO_COLOR=1 on a terminal: no escape byte"
    );
}
