-- Browser sessions and agent pairing.

-- A signed-in browser. The cookie holds a random token; only its SHA-256 is stored.
CREATE TABLE web_sessions (
    token_hash  BYTEA PRIMARY KEY,
    user_id     BIGINT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    csrf_token  TEXT NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    expires_at  TIMESTAMPTZ NOT NULL
);
CREATE INDEX web_sessions_user_idx ON web_sessions(user_id);
CREATE INDEX web_sessions_expiry_idx ON web_sessions(expires_at);

-- One browser-approval pairing attempt (CONTRACT.md "Pairing"). The verifier is stored
-- as a hash. Between exchange and finalize the new credential is kept sealed (AES-GCM,
-- credential keyring) so a plugin that crashed before saving can exchange again; finalize
-- erases it, leaving only the device's hash.
CREATE TABLE pairing_sessions (
    id                   BIGSERIAL PRIMARY KEY,
    token                TEXT NOT NULL UNIQUE,
    verifier_hash        BYTEA NOT NULL,
    display_code         TEXT NOT NULL,
    device_label         TEXT NOT NULL,
    status               TEXT NOT NULL DEFAULT 'awaiting_browser'
                         CHECK (status IN ('awaiting_browser', 'ready_for_device', 'awaiting_local_save',
                                           'paired', 'expired', 'failed')),
    approved_user_id     BIGINT REFERENCES users(id) ON DELETE CASCADE,
    device_id            BIGINT REFERENCES devices(id) ON DELETE SET NULL,
    pending_key_id       TEXT,
    pending_nonce        BYTEA,
    pending_ciphertext   BYTEA,
    created_at           TIMESTAMPTZ NOT NULL DEFAULT now(),
    expires_at           TIMESTAMPTZ NOT NULL,
    approved_at          TIMESTAMPTZ,
    paired_at            TIMESTAMPTZ
);
CREATE INDEX pairing_sessions_expiry_idx ON pairing_sessions(expires_at) WHERE status NOT IN ('paired', 'expired', 'failed');
