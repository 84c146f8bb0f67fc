use std::time::Duration;

use chassis_core::config::InvalidValue;
use thiserror::Error;

/// [`NatsBus::connect`](crate::NatsBus::connect) failed.
#[derive(Debug, Error)]
pub enum NatsError {
    /// A value of `messaging` or `messaging.nats` cannot work.
    #[error("invalid messaging configuration: {0}")]
    InvalidConfig(#[from] InvalidValue),
    /// The server refused or dropped the connection (unreachable, wrong
    /// credentials, ...).
    #[error("cannot connect to NATS at {endpoint}: {reason}")]
    Connect {
        /// The server addresses, without credentials.
        endpoint: String,
        /// The client's error.
        reason: String,
    },
    /// The server did not complete the connection in time.
    #[error("no connection to NATS at {endpoint} within {waited:?}")]
    ConnectTimeout {
        /// The server addresses, without credentials.
        endpoint: String,
        /// How long the attempt waited.
        waited: Duration,
    },
    /// The server answers but has no JetStream (`nats-server -js`).
    #[error("NATS at {endpoint} has no JetStream (start the server with `-js`): {reason}")]
    NoJetStream {
        /// The server addresses, without credentials.
        endpoint: String,
        /// The server's answer.
        reason: String,
    },
}
