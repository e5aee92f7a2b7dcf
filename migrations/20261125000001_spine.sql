-- The spine: accounts, devices, connections, the credential store and executions.

CREATE TABLE users (
    id            BIGSERIAL PRIMARY KEY,
    email         TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    display_name  TEXT NOT NULL DEFAULT '',
    is_admin      BOOLEAN NOT NULL DEFAULT FALSE,
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- Paired agent credentials. The plaintext token is shown once and never stored.
CREATE TABLE devices (
    id           BIGSERIAL PRIMARY KEY,
    user_id      BIGINT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    label        TEXT NOT NULL,
    token_hash   BYTEA NOT NULL UNIQUE,          -- SHA-256 of the full token
    token_prefix TEXT NOT NULL,                  -- first characters, for display only
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    last_used_at TIMESTAMPTZ,
    revoked_at   TIMESTAMPTZ
);
CREATE INDEX devices_user_idx ON devices(user_id);

-- One row per connection of a user to an app. `id` is the stable integer the agent sees.
CREATE TABLE user_integrations (
    id                  BIGSERIAL PRIMARY KEY,
    user_id             BIGINT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    integration         TEXT NOT NULL,
    connection_label    TEXT NOT NULL DEFAULT '',
    account_label       TEXT NOT NULL DEFAULT '',
    external_account_id TEXT,
    metadata            JSONB NOT NULL DEFAULT '{}'::jsonb,
    is_default          BOOLEAN NOT NULL DEFAULT FALSE,
    status              TEXT NOT NULL DEFAULT 'active'
                        CHECK (status IN ('active', 'needs_reauth', 'revoked')),
    token_expires_at    TIMESTAMPTZ,
    last_used_at        TIMESTAMPTZ,
    created_at          TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at          TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX user_integrations_user_idx ON user_integrations(user_id, integration);
-- At most one default per user and integration, enforced here rather than in code.
CREATE UNIQUE INDEX user_integrations_one_default
    ON user_integrations(user_id, integration) WHERE is_default;
CREATE UNIQUE INDEX user_integrations_external_account
    ON user_integrations(user_id, integration, external_account_id)
    WHERE external_account_id IS NOT NULL;

-- The credential store: AES-256-GCM ciphertext of the secret bundle of one connection.
-- The associated data binds (user, connection, purpose), so a ciphertext copied to
-- another row does not decrypt.
CREATE TABLE credentials (
    connection_id BIGINT PRIMARY KEY REFERENCES user_integrations(id) ON DELETE CASCADE,
    user_id       BIGINT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    key_id        TEXT NOT NULL,
    nonce         BYTEA NOT NULL CHECK (octet_length(nonce) = 12),
    ciphertext    BYTEA NOT NULL,
    version       BIGINT NOT NULL DEFAULT 1,      -- compare-and-set for refresh and rotation
    updated_at    TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX credentials_key_idx ON credentials(key_id);

-- The audit trail of tool calls. The full result lives in Redis (bounded TTL); a
-- truncated copy lives here.
CREATE TABLE executions (
    id               UUID PRIMARY KEY,
    user_id          BIGINT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    device_id        BIGINT REFERENCES devices(id) ON DELETE SET NULL,
    connection_id    BIGINT REFERENCES user_integrations(id) ON DELETE SET NULL,
    integration      TEXT NOT NULL,
    tool_name        TEXT NOT NULL,
    arguments        JSONB NOT NULL,
    lane             TEXT NOT NULL CHECK (lane IN ('interactive', 'bulk')),
    status           TEXT NOT NULL DEFAULT 'queued'
                     CHECK (status IN ('queued', 'running', 'succeeded', 'failed')),
    attempts         INTEGER NOT NULL DEFAULT 0,
    idempotency_key  TEXT,
    request_hash     BYTEA,
    created_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    started_at       TIMESTAMPTZ,
    finished_at      TIMESTAMPTZ,
    queue_wait_ms    INTEGER,
    provider_ms      INTEGER,
    provider_status  INTEGER,
    provider_request_id TEXT,
    error_code       TEXT,
    error_message    TEXT,
    result_excerpt   JSONB
);
CREATE UNIQUE INDEX executions_idempotency
    ON executions(user_id, idempotency_key) WHERE idempotency_key IS NOT NULL;
CREATE INDEX executions_user_created_idx ON executions(user_id, created_at DESC);
CREATE INDEX executions_unfinished_idx ON executions(status, created_at)
    WHERE status IN ('queued', 'running');
