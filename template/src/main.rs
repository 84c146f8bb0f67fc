//! {{project-name}}. Configuration: `config/default.toml`,
//! `config/{CHASSIS_ENV}.toml` and `CHASSIS__…` environment variables;
//! `--print-config` prints the effective values, `--healthcheck` probes a
//! running instance (the container's HEALTHCHECK).

use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    if std::env::args()
        .skip(1)
        .any(|a| a == {{crate_name}}::healthcheck::FLAG)
    {
        return {{crate_name}}::healthcheck::run(&{{crate_name}}::host());
    }
    {{crate_name}}::host().run().await
}
