-- Records: one row per aggregate; `position` (the rowid) is the insertion
-- order queries return, kept by updates. Index entries are kept twice: as
-- JSON in the row (returned with the record, in their order) and one row
-- each in record_index, which the (collection, key, value) index answers
-- equality and range filters from.
CREATE TABLE records (
    position      INTEGER PRIMARY KEY AUTOINCREMENT,
    collection    TEXT    NOT NULL,
    id            TEXT    NOT NULL,
    version       INTEGER NOT NULL CHECK (version >= 1),
    data          TEXT    NOT NULL,
    index_entries TEXT    NOT NULL DEFAULT '[]',
    updated_us    INTEGER NOT NULL,
    UNIQUE (collection, id)
);
CREATE TABLE record_index (
    collection TEXT NOT NULL,
    id         TEXT NOT NULL,
    key        TEXT NOT NULL,
    value      TEXT NOT NULL
);
CREATE INDEX record_index_lookup ON record_index (collection, key, value);
CREATE INDEX record_index_record ON record_index (collection, id);

-- Transactional outbox. Times are microseconds since the Unix epoch.
-- AUTOINCREMENT: a sequence is never reused, also after purging.
CREATE TABLE outbox (
    sequence     INTEGER PRIMARY KEY AUTOINCREMENT,
    message_id   BLOB    NOT NULL,
    ordering_key TEXT    NOT NULL,
    event_type   TEXT    NOT NULL,
    body         BLOB    NOT NULL,
    created_us   INTEGER NOT NULL,
    sent_us      INTEGER,
    attempts     INTEGER NOT NULL DEFAULT 0,
    last_error   TEXT,
    quarantined  INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX outbox_pending ON outbox (sequence) WHERE sent_us IS NULL AND quarantined = 0;
CREATE INDEX outbox_sent ON outbox (sent_us) WHERE sent_us IS NOT NULL;

-- Inbox: ids of messages a consumer has handled.
CREATE TABLE inbox (
    consumer     TEXT    NOT NULL,
    message_id   BLOB    NOT NULL,
    processed_us INTEGER NOT NULL,
    PRIMARY KEY (consumer, message_id)
);
CREATE INDEX inbox_processed ON inbox (processed_us);
