//! In-process event bus provider of the service chassis: a real embedded broker with consumer groups, retries and dead letters.
