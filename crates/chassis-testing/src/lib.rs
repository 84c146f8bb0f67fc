//! Test harness for services built on the chassis: in-process start-up on in-memory providers, deterministic waits for handled messages, dead-letter inspection.
