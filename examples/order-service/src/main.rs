//! The order service. Configuration: `config/default.toml`,
//! `config/{CHASSIS_ENV}.toml` and `CHASSIS__…` variables (see the README).

#[tokio::main]
async fn main() -> std::process::ExitCode {
    order_service::host().run().await
}
