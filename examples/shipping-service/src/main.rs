//! The shipping service. Configuration: `config/default.toml` (transport
//! providers under `[shipping]`), `config/{CHASSIS_ENV}.toml` and
//! `CHASSIS__…` variables (see the README).

#[tokio::main]
async fn main() -> std::process::ExitCode {
    shipping_service::host().run().await
}
