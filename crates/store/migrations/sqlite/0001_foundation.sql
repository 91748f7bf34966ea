-- centralita foundation schema (SQLite).
-- Timestamps are INTEGER milliseconds since the Unix epoch (UTC): fixed-width,
-- cheap to compare and to subtract for CDR durations.

CREATE TABLE users (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    name          TEXT NOT NULL,
    login         TEXT COLLATE NOCASE UNIQUE,
    email         TEXT COLLATE NOCASE UNIQUE,
    phone         TEXT,
    role          TEXT NOT NULL CHECK (role IN ('admin', 'supervisor', 'agent')),
    password_hash TEXT NOT NULL,
    active        INTEGER NOT NULL DEFAULT 1,
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL,
    last_login_at INTEGER,
    CHECK (login IS NOT NULL OR email IS NOT NULL)
);
CREATE INDEX idx_users_role ON users(role);

CREATE TABLE sessions (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    token_hash   TEXT NOT NULL UNIQUE,
    user_id      INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    created_at   INTEGER NOT NULL,
    expires_at   INTEGER NOT NULL,
    ip           TEXT
);
CREATE INDEX idx_sessions_user ON sessions(user_id);

CREATE TABLE api_tokens (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    name         TEXT NOT NULL,
    user_id      INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    token_hash   TEXT NOT NULL UNIQUE,
    created_at   INTEGER NOT NULL,
    last_used_at INTEGER,
    revoked_at   INTEGER
);

CREATE TABLE sip_accounts (
    id                 INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id            INTEGER NOT NULL UNIQUE REFERENCES users(id) ON DELETE CASCADE,
    username           TEXT NOT NULL UNIQUE,
    extension          TEXT NOT NULL UNIQUE,
    ha1_md5            TEXT NOT NULL,
    ha1_sha256         TEXT NOT NULL,
    status             TEXT NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'inactive', 'disabled')),
    registered         INTEGER NOT NULL DEFAULT 0,
    last_registered_at INTEGER,
    user_agent         TEXT,
    ip_address         TEXT,
    credential_version INTEGER NOT NULL DEFAULT 1,
    created_at         INTEGER NOT NULL,
    updated_at         INTEGER NOT NULL
);
CREATE INDEX idx_sip_accounts_status_registered ON sip_accounts(status, registered);

CREATE TABLE sip_ephemeral_credentials (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    sip_account_id INTEGER NOT NULL REFERENCES sip_accounts(id) ON DELETE CASCADE,
    ha1_md5        TEXT NOT NULL,
    ha1_sha256     TEXT NOT NULL,
    created_at     INTEGER NOT NULL,
    expires_at     INTEGER NOT NULL
);
CREATE INDEX idx_sip_ephemeral_account ON sip_ephemeral_credentials(sip_account_id, expires_at);

CREATE TABLE registrations (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    username      TEXT NOT NULL REFERENCES sip_accounts(username) ON DELETE CASCADE,
    contact       TEXT NOT NULL,
    transport     TEXT NOT NULL,
    source        TEXT NOT NULL,
    user_agent    TEXT,
    instance_id   TEXT,
    reg_id        INTEGER,
    call_id       TEXT NOT NULL,
    cseq          INTEGER NOT NULL,
    expires_at    INTEGER NOT NULL,
    registered_at INTEGER NOT NULL,
    UNIQUE (username, contact)
);
CREATE INDEX idx_registrations_expires ON registrations(expires_at);

CREATE TABLE calls (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    call_id         TEXT NOT NULL UNIQUE,
    direction       TEXT NOT NULL CHECK (direction IN ('inbound', 'outbound', 'internal')),
    caller_number   TEXT NOT NULL,
    callee_number   TEXT NOT NULL,
    agent_id        INTEGER REFERENCES users(id) ON DELETE SET NULL,
    callee_agent_id INTEGER REFERENCES users(id) ON DELETE SET NULL,
    campaign_id     INTEGER,
    lead_id         INTEGER,
    trunk_id        INTEGER,
    start_time      INTEGER NOT NULL,
    answer_time     INTEGER,
    end_time        INTEGER,
    duration        INTEGER NOT NULL DEFAULT 0,
    billsec         INTEGER NOT NULL DEFAULT 0,
    disposition     TEXT CHECK (disposition IN ('ANSWERED', 'NO ANSWER', 'BUSY', 'FAILED', 'CANCELLED')),
    hangup_cause    TEXT,
    recording_url   TEXT,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL
);
CREATE INDEX idx_calls_agent_start ON calls(agent_id, start_time);
CREATE INDEX idx_calls_callee_agent_start ON calls(callee_agent_id, start_time);
CREATE INDEX idx_calls_start ON calls(start_time);
CREATE INDEX idx_calls_open ON calls(end_time) WHERE end_time IS NULL;

CREATE TABLE webrtc_settings (
    id            INTEGER PRIMARY KEY CHECK (id = 1),
    stun_server   TEXT,
    turn_server   TEXT,
    turn_username TEXT,
    turn_password TEXT,
    ws_url        TEXT,
    updated_at    INTEGER NOT NULL
);

CREATE TABLE audit_log (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    at          INTEGER NOT NULL,
    actor_id    INTEGER,
    actor_login TEXT,
    action      TEXT NOT NULL,
    target_type TEXT,
    target_id   TEXT,
    details     TEXT NOT NULL DEFAULT '{}',
    ip          TEXT
);
CREATE INDEX idx_audit_at ON audit_log(at);
CREATE INDEX idx_audit_action ON audit_log(action);

CREATE TABLE settings (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
