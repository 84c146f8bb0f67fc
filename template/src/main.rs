//! {{project-name}}. Configuration: `config/default.toml`,
//! `config/{CHASSIS_ENV}.toml` and `CHASSIS__…` environment variables;
//! `--print-config` prints the effective values, `--healthcheck` probes a
//! running instance (the container's HEALTHCHECK); both are handled by the
//! chassis host.

use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    {{crate_name}}::host().run().await
}
