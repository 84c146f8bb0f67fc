-- The items: one row per `Item` aggregate. One text for SQLite and
-- PostgreSQL (see the chassis's docs/storage.md for the types both take).
-- Add the next change as 0002_….sql; never edit an applied migration.
CREATE TABLE items (
    id uuid PRIMARY KEY,
    name text NOT NULL,
    created_at timestamptz NOT NULL,
    version bigint NOT NULL
);

-- Listing items newest first would use this index.
CREATE INDEX items_by_created_at ON items (created_at);
