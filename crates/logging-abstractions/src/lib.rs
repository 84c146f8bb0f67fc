//! Logging ports and config section of the service chassis.
