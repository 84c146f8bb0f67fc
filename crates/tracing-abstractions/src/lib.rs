//! Distributed tracing config section and W3C trace-context propagation helpers of the service chassis.
