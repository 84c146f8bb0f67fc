//! In-memory storage provider of the service chassis with real transactional semantics.
