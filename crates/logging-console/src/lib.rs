//! Console logging provider of the service chassis: pretty, compact or JSON lines via tracing-subscriber.
