-- The directory: who has signed in, and who is blocked. Times are unix seconds.
CREATE TABLE users (
    subject       TEXT PRIMARY KEY,
    email         TEXT,
    name          TEXT,
    -- NULL for a user blocked before their first sign-in.
    first_seen_at BIGINT,
    last_seen_at  BIGINT,
    signin_count  BIGINT NOT NULL DEFAULT 0,
    blocked       BOOLEAN NOT NULL DEFAULT FALSE,
    blocked_at    BIGINT
);

-- The audit trail: one row per event, never a token, code, cookie or session id.
CREATE TABLE audit_events (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    occurred_at BIGINT NOT NULL,
    event       TEXT NOT NULL,
    subject     TEXT,
    reason      TEXT,
    ip          TEXT,
    request_id  TEXT
);

CREATE INDEX audit_events_by_time ON audit_events (occurred_at, id);
CREATE INDEX audit_events_by_subject ON audit_events (subject, occurred_at, id);
