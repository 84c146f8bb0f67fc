//! The conformance suite every event bus provider of the service chassis must pass, runnable with one call.
