-- Per-agent dial permission (the toll-fraud gate of outbound calls):
-- NULL follows the system default (dialplan.agent_permission).
ALTER TABLE users ADD COLUMN dial_permission TEXT
    CHECK (dial_permission IN ('internal', 'national', 'international'));
