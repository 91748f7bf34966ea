-- SIP trunks (issue 11): carriers (ITSPs) and other PBXs centralita sends
-- calls to and takes calls from. One row per trunk with every setting the
-- trunk form edits (seeds/001 `trunks`, seeds/003's PJSIP-level fields),
-- the live registration state the SIP side reports, and per-trunk call
-- counters. PostgreSQL: migrations/postgres/0004_trunks.sql, kept in step.
--
-- Secrets (outbound_secret, inbound_secret) are stored as given: a digest
-- client must compute the response from the password (or its HA1 for the
-- carrier's realm, which is not known before the first challenge), so they
-- cannot be one-way hashed. They are never returned by the API nor logged.
--
-- Not here yet: `campaign_trunks` (seeds/001) needs the campaigns table,
-- which does not exist; calls.trunk_id gets its foreign key then too.
CREATE TABLE trunks (
    id                            INTEGER PRIMARY KEY AUTOINCREMENT,
    name                          TEXT COLLATE NOCASE NOT NULL UNIQUE,
    description                   TEXT,
    provider                      TEXT NOT NULL DEFAULT 'custom'
        CHECK (provider IN ('twilio', 'vonage', 'bandwidth', 'custom')),
    kind                          TEXT NOT NULL DEFAULT 'custom'
        CHECK (kind IN ('nat_provider', 'no_nat', 'pbx_lan', 'corporate', 'custom')),
    host                          TEXT NOT NULL,
    port                          INTEGER NOT NULL DEFAULT 5060 CHECK (port BETWEEN 1 AND 65535),
    transport                     TEXT NOT NULL DEFAULT 'udp' CHECK (transport IN ('udp', 'tcp', 'tls')),
    -- outbound authentication: centralita answers the carrier's challenges
    sends_auth                    INTEGER NOT NULL DEFAULT 0,
    outbound_username             TEXT,
    outbound_secret               TEXT,
    outbound_realm                TEXT,
    -- inbound: requests from the trunk are recognised by source address
    -- (comma-separated IPs, CIDRs or host names) and/or digest credentials
    accepts_auth                  INTEGER NOT NULL DEFAULT 0,
    inbound_username              TEXT,
    inbound_secret                TEXT,
    inbound_match                 TEXT NOT NULL DEFAULT '',
    -- outbound registration (seconds; max_retries 0 = no retry,
    -- forbidden_retry 0 = a 403 is final)
    sends_registration            INTEGER NOT NULL DEFAULT 0,
    accepts_registrations         INTEGER NOT NULL DEFAULT 0,
    registration_server_uri       TEXT,
    registration_client_uri       TEXT,
    registration_expiry           INTEGER NOT NULL DEFAULT 3600,
    registration_retry_interval   INTEGER NOT NULL DEFAULT 60,
    registration_max_retries      INTEGER NOT NULL DEFAULT 10,
    registration_forbidden_retry  INTEGER NOT NULL DEFAULT 0,
    -- media and NAT: codecs in order of preference, comma-separated
    codecs                        TEXT NOT NULL DEFAULT 'pcmu,pcma',
    dtmf_mode                     TEXT NOT NULL DEFAULT 'rfc4733'
        CHECK (dtmf_mode IN ('rfc4733', 'info', 'inband', 'auto')),
    rtp_symmetric                 INTEGER NOT NULL DEFAULT 0,
    force_rport                   INTEGER NOT NULL DEFAULT 1,
    rewrite_contact               INTEGER NOT NULL DEFAULT 0,
    qualify_frequency             INTEGER NOT NULL DEFAULT 0,
    media_address                 TEXT,
    -- session timers (RFC 4028)
    session_timers                TEXT NOT NULL DEFAULT 'yes'
        CHECK (session_timers IN ('no', 'yes', 'required', 'always')),
    session_expires               INTEGER NOT NULL DEFAULT 1800,
    session_min_se                INTEGER NOT NULL DEFAULT 90,
    -- caller ID
    from_user                     TEXT,
    from_domain                   TEXT,
    pai                           TEXT,
    send_pai                      INTEGER NOT NULL DEFAULT 0,
    trust_remote_party_id         INTEGER NOT NULL DEFAULT 0,
    -- routing: max_channels 0 = no limit; the lowest priority goes first
    max_channels                  INTEGER NOT NULL DEFAULT 10 CHECK (max_channels >= 0),
    priority                      INTEGER NOT NULL DEFAULT 10 CHECK (priority >= 0),
    status                        TEXT NOT NULL DEFAULT 'active'
        CHECK (status IN ('active', 'inactive', 'maintenance', 'error')),
    -- live state, written by the SIP side
    registered                    INTEGER NOT NULL DEFAULT 0,
    last_registered_at            INTEGER,
    last_error                    TEXT,
    last_error_at                 INTEGER,
    -- counters
    total_calls                   INTEGER NOT NULL DEFAULT 0,
    successful_calls              INTEGER NOT NULL DEFAULT 0,
    failed_calls                  INTEGER NOT NULL DEFAULT 0,
    -- a JSON object for settings without a column of their own
    advanced_settings             TEXT NOT NULL DEFAULT '{}',
    created_at                    INTEGER NOT NULL,
    updated_at                    INTEGER NOT NULL
);
CREATE INDEX idx_trunks_status_priority ON trunks(status, priority);
CREATE INDEX idx_trunks_provider ON trunks(provider);
