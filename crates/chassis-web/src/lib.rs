//! The service host of the chassis: layered configuration, start-up of every concern, the axum router with the standard middleware stack, health, metrics and graceful shutdown.
