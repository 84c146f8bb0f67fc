-- Records: one row per aggregate. Index entries live in a jsonb array of
-- {"key": .., "value": ..} objects; a GIN index answers "has all these
-- entries" with one containment test (`@>`), which is exactly the AND of
-- equality filters a Query carries.
CREATE TABLE records (
    collection    text        NOT NULL,
    id            text        NOT NULL,
    version       bigint      NOT NULL CHECK (version >= 1),
    data          jsonb       NOT NULL,
    index_entries jsonb       NOT NULL DEFAULT '[]',
    -- insertion order, which queries return; an update keeps it
    position      bigint      GENERATED ALWAYS AS IDENTITY,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (collection, id)
);
CREATE INDEX records_collection_position ON records (collection, position);
CREATE INDEX records_index_entries ON records USING gin (index_entries jsonb_path_ops);

-- Transactional outbox. `sequence` is assigned at insert, so rows may become
-- visible out of sequence order (commit order differs): the relay always
-- selects every unsent row ordered by sequence, never "after the last seen".
CREATE TABLE outbox (
    sequence     bigserial   PRIMARY KEY,
    message_id   uuid        NOT NULL,
    ordering_key text        NOT NULL,
    event_type   text        NOT NULL,
    body         bytea       NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT clock_timestamp(),
    sent_at      timestamptz,
    attempts     integer     NOT NULL DEFAULT 0,
    last_error   text,
    quarantined  boolean     NOT NULL DEFAULT false
);
CREATE INDEX outbox_pending ON outbox (sequence) WHERE sent_at IS NULL AND NOT quarantined;
CREATE INDEX outbox_sent ON outbox (sent_at) WHERE sent_at IS NOT NULL;
CREATE INDEX outbox_quarantined ON outbox (sequence) WHERE quarantined;

-- Relays are woken by NOTIFY from the store after commit (outside the
-- transaction, coalesced), not by a trigger: NOTIFY inside a transaction
-- holds a database-wide lock through commit and serializes all writers.

-- Inbox: ids of messages a consumer has handled, written in the handler's
-- transaction. The primary key makes a concurrent second delivery wait for
-- the first and then find the row.
CREATE TABLE inbox (
    consumer     text        NOT NULL,
    message_id   uuid        NOT NULL,
    processed_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer, message_id)
);
CREATE INDEX inbox_processed_at ON inbox (processed_at);
