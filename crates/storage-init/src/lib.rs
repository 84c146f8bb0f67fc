//! Builds the storage provider named in the chassis configuration; each provider is a cargo feature.
