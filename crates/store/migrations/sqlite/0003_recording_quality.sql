-- Recording and call quality (issue 10), written by the domain's CDR
-- recorder from the media plane's `Recording` and `Quality` call events.
--
-- Quality lives in its own table, one row per (call, leg, direction),
-- rather than in `call_legs` columns:
-- - two directions per leg would mean two copies of every figure on the leg row;
-- - the figures arrive after the leg (often the call) has ended, and an
--   ended `call_legs` row is final: the recorder's upsert never touches it.
--   The quality row has its own rule instead (the latest figures win);
-- - later media legs (a mixer, a supervisor listening) report figures
--   without changing the CDR.
CREATE TABLE call_quality (
    call_id    TEXT    NOT NULL,
    leg_no     INTEGER NOT NULL,
    -- inbound: what centralita received from the leg; outbound: what it
    -- sent to it (as the leg's RTCP receiver reports say)
    direction  TEXT    NOT NULL,
    -- event time of the figures: a later row replaces an earlier one only
    at_ms      BIGINT  NOT NULL,
    packets    BIGINT  NOT NULL,
    lost       BIGINT  NOT NULL,
    -- RFC 3550 interarrival jitter and RTCP round-trip time, ms
    jitter_ms  REAL    NOT NULL,
    rtt_ms     REAL,
    -- ITU-T G.107 E-model estimate
    mos        REAL    NOT NULL,
    codec      TEXT    NOT NULL,
    CONSTRAINT call_quality_pkey PRIMARY KEY (call_id, leg_no, direction),
    CONSTRAINT call_quality_leg_fkey FOREIGN KEY (call_id, leg_no)
        REFERENCES call_legs (call_id, leg_no) ON DELETE CASCADE,
    CONSTRAINT call_quality_direction_check CHECK (direction IN ('inbound', 'outbound')),
    CONSTRAINT call_quality_counts_check CHECK (packets >= 0 AND lost >= 0),
    CONSTRAINT call_quality_mos_check CHECK (mos >= 1 AND mos <= 4.5)
);

-- The finished recording of a call: a WAV file relative to the recording
-- directory (media.recording_dir); NULL path = no recording.
ALTER TABLE calls ADD COLUMN recording_path TEXT;
ALTER TABLE calls ADD COLUMN recording_bytes BIGINT;
ALTER TABLE calls ADD COLUMN recording_duration_ms BIGINT;
ALTER TABLE calls ADD COLUMN recording_dropped_frames BIGINT;
-- event time of the recording figures: a replayed older event never
-- replaces a newer one
ALTER TABLE calls ADD COLUMN recording_at BIGINT;

-- Per-agent recording override: NULL follows the system default
-- (media.recording), 1 always records this agent's calls, 0 never does
-- (unless the other agent party records; domain::recording::should_record).
ALTER TABLE users ADD COLUMN record_calls INTEGER;
