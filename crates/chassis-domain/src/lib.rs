//! Domain building blocks of the service chassis: entities, aggregates, domain and integration events, commands and their pipeline.
