//! Never built: only its dependency graph is read (scripts/deny).
