//! RabbitMQ event bus provider of the service chassis: confirms, durable topology, retries, dead letters and reconnection.
