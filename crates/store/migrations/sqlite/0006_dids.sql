-- Inbound numbers (DIDs, issue 11): what a call from a trunk to `number`
-- reaches. `number` is an exact number (digits, optionally with a leading
-- +), an Asterisk-style pattern (`_` then X Z N . ! [1-5]) or `*`, the
-- catch-all for numbers nothing else matches. The destination is data so
-- that queues and IVRs are a new `destination_type`, not new code.
-- `trunk_id` NULL: the number answers on every trunk.
CREATE TABLE dids (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    number           TEXT NOT NULL,
    description      TEXT,
    destination_type TEXT NOT NULL DEFAULT 'agent'
        CHECK (destination_type IN ('agent', 'reject')),
    destination      TEXT NOT NULL DEFAULT '',
    trunk_id         INTEGER REFERENCES trunks(id) ON DELETE CASCADE,
    enabled          INTEGER NOT NULL DEFAULT 1 CHECK (enabled IN (0, 1)),
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL
);
-- One entry per number per trunk (and one for "every trunk").
CREATE UNIQUE INDEX dids_number_trunk_key ON dids (number, COALESCE(trunk_id, 0));

-- The number the caller dialled when the call came from a trunk.
ALTER TABLE calls ADD COLUMN did TEXT;
