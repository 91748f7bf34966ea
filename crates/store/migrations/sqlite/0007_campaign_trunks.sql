-- Campaign trunk lists (seeds/001 3.4, issue 11): a call that belongs to a
-- campaign goes out through the campaign's own trunks, in the campaign's
-- `priority` order (lower first), instead of the route's. Campaigns have
-- no table yet, so `campaign_id` is a plain number without a foreign key.
-- Deleting a trunk takes it off every campaign's list.
CREATE TABLE campaign_trunks (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    campaign_id INTEGER NOT NULL,
    trunk_id    INTEGER NOT NULL REFERENCES trunks(id) ON DELETE CASCADE,
    priority    INTEGER NOT NULL DEFAULT 10,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL,
    UNIQUE (campaign_id, trunk_id)
);
CREATE INDEX campaign_trunks_trunk_idx ON campaign_trunks (trunk_id);
