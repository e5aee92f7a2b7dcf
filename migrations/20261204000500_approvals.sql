-- Approvals bound to the call (issue 18, part 2).
--
-- Who must approve a tool call that changes data: the account's policy, or the device's
-- own when it has one. `agent_confirmation` (the agent sends `confirmed: true`, what the
-- published OpenClaw plugin does) is the default, so existing accounts behave as before.
ALTER TABLE users ADD COLUMN approval_policy TEXT NOT NULL DEFAULT 'agent_confirmation'
    CHECK (approval_policy IN ('allow', 'agent_confirmation', 'approval_token', 'person'));
-- NULL: the device follows its account.
ALTER TABLE devices ADD COLUMN approval_policy TEXT
    CHECK (approval_policy IN ('allow', 'agent_confirmation', 'approval_token', 'person'));

-- A call waiting for a person is `awaiting_approval` until they approve it (it becomes
-- `queued` and its job goes through the outbox) or deny it, or it expires (both `failed`,
-- with the reason in error_code / error_message).
ALTER TABLE executions DROP CONSTRAINT executions_status_check;
ALTER TABLE executions ADD CONSTRAINT executions_status_check
    CHECK (status IN ('awaiting_approval', 'queued', 'running', 'succeeded', 'failed'));
-- When a person's approval stops being possible; NULL for a call that never waited.
ALTER TABLE executions ADD COLUMN approval_expires_at TIMESTAMPTZ;
-- Who decided, and when (the inbox and the execution page show it).
ALTER TABLE executions ADD COLUMN approval_decided_at TIMESTAMPTZ;
-- The expiry sweep and the inbox read waiting calls by expiry. Keyed on columns a
-- worker's claim never writes, so claims stay HOT updates (see 20261125000009).
CREATE INDEX executions_awaiting_idx ON executions(approval_expires_at)
    WHERE approval_expires_at IS NOT NULL AND finished_at IS NULL;

-- Approval tokens are single-use: the nonce of each token presented is recorded here
-- until the token's own expiry, so a replay is refused. No secret: the nonce alone
-- signs nothing.
CREATE TABLE approval_nonces (
    nonce       BYTEA PRIMARY KEY CHECK (octet_length(nonce) = 16),
    device_id   BIGINT NOT NULL REFERENCES devices(id) ON DELETE CASCADE,
    expires_at  TIMESTAMPTZ NOT NULL,
    used_at     TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX approval_nonces_expiry_idx ON approval_nonces(expires_at);
