//! The conformance suite every storage provider of the service chassis must pass.
