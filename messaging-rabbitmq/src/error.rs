use std::time::Duration;

use thiserror::Error;

/// [`RabbitMqBus::connect`](crate::RabbitMqBus::connect) failed.
#[derive(Debug, Error)]
pub enum RabbitMqError {
    /// The configuration cannot work; the message names the key path and what
    /// was expected.
    #[error(transparent)]
    InvalidConfig(chassis_core::config::InvalidValue),
    /// The broker refused or dropped the connection (unreachable, wrong
    /// credentials, unknown vhost, ...).
    #[error("cannot connect to RabbitMQ at {endpoint}: {source}")]
    Connect {
        /// `host:port/vhost` (never the password).
        endpoint: String,
        /// The client's error.
        #[source]
        source: lapin::Error,
    },
    /// The broker did not complete the connection in time.
    #[error("no connection to RabbitMQ at {endpoint} within {waited:?}")]
    ConnectTimeout {
        /// `host:port/vhost` (never the password).
        endpoint: String,
        /// How long the attempt waited.
        waited: Duration,
    },
    /// An exchange could not be declared (e.g. it exists with another type).
    #[error("cannot declare exchange `{name}` on RabbitMQ: {source}")]
    Topology {
        /// The exchange.
        name: String,
        /// The broker's answer.
        #[source]
        source: lapin::Error,
    },
}
