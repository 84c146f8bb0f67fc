//! Development tracing provider of the service chassis: spans printed to stdout.
