//! Builds the event bus provider named in the chassis configuration; each provider is a cargo feature.
