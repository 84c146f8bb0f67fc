//! Builds the tracing provider named in the chassis configuration (none, stdout, otlp).
