//! Builds the logging provider named in the chassis configuration.
