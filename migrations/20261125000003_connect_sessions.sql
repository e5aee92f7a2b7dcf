-- Hosted connect flows (OAuth and API key), one row per attempt.
CREATE TABLE connect_sessions (
    id                BIGSERIAL PRIMARY KEY,
    token             TEXT NOT NULL UNIQUE,          -- in connectUrl and statusUrl
    user_id           BIGINT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    integration       TEXT NOT NULL,
    -- On reconnect: the row to update. Once connected: the row that was made or updated.
    connection_id     BIGINT REFERENCES user_integrations(id) ON DELETE SET NULL,
    reconnect         BOOLEAN NOT NULL DEFAULT FALSE,
    display_code      TEXT NOT NULL,
    status            TEXT NOT NULL DEFAULT 'awaiting_user_action'
                      CHECK (status IN ('awaiting_user_action', 'connected', 'failed', 'expired')),
    -- OAuth: SHA-256 of the `state` sent to the provider, and the PKCE verifier (RFC 7636),
    -- both cleared when the session is used.
    oauth_state_hash  BYTEA UNIQUE,
    pkce_verifier     TEXT,
    error_message     TEXT,
    created_at        TIMESTAMPTZ NOT NULL DEFAULT now(),
    expires_at        TIMESTAMPTZ NOT NULL,
    completed_at      TIMESTAMPTZ
);
CREATE INDEX connect_sessions_user_idx ON connect_sessions(user_id, created_at DESC);
CREATE INDEX connect_sessions_expiry_idx ON connect_sessions(expires_at) WHERE status = 'awaiting_user_action';
