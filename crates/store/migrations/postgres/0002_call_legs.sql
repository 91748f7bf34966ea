-- One row per leg of a call (PostgreSQL; mirrors
-- migrations/sqlite/0002_call_legs.sql). Leg 0 is the caller; legs 1.. are
-- the destinations the engine tried. Times are event times from the
-- engine; they are set once and never move.

CREATE TABLE call_legs (
    call_id      TEXT COLLATE "C" NOT NULL,
    leg_no       BIGINT NOT NULL,
    party_number TEXT COLLATE "C" NOT NULL,
    agent_id     BIGINT,
    -- udp, tcp, tls, ws, wss, or trunk:<name>
    transport    TEXT COLLATE "C" NOT NULL,
    created_at   BIGINT NOT NULL,
    ringing_at   BIGINT,
    answered_at  BIGINT,
    ended_at     BIGINT,
    -- the recorder's cause vocabulary (domain::call_events::HangupCause), or
    -- the orphan cause when a restart closed the leg
    end_cause    TEXT COLLATE "C",
    -- the final SIP status the leg answered, if any
    sip_code     BIGINT,
    CONSTRAINT call_legs_pkey PRIMARY KEY (call_id, leg_no),
    CONSTRAINT call_legs_call_fkey FOREIGN KEY (call_id)
        REFERENCES calls (call_id) ON DELETE CASCADE,
    CONSTRAINT call_legs_agent_fkey FOREIGN KEY (agent_id)
        REFERENCES users (id) ON DELETE SET NULL,
    CONSTRAINT call_legs_leg_no_check CHECK (leg_no >= 0),
    CONSTRAINT call_legs_sip_code_check CHECK (sip_code IS NULL OR (sip_code >= 100 AND sip_code <= 699)),
    CONSTRAINT call_legs_ended_check CHECK (ended_at IS NULL OR ended_at >= created_at)
);
CREATE INDEX idx_call_legs_agent_created ON call_legs (agent_id, created_at);
-- Open legs, for closing orphans at start.
CREATE INDEX idx_call_legs_open ON call_legs (ended_at) WHERE ended_at IS NULL;
