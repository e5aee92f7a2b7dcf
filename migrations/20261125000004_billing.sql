-- Billing: plans as data, each user on one plan, plan changes recorded, monthly usage,
-- and processed payment events (each event id once).

CREATE TABLE plans (
    id               TEXT PRIMARY KEY,
    name             TEXT NOT NULL,
    monthly_calls    BIGINT NOT NULL CHECK (monthly_calls >= 0),
    max_connections  INTEGER NOT NULL CHECK (max_connections >= 0),
    price_cents      INTEGER NOT NULL DEFAULT 0,
    is_default       BOOLEAN NOT NULL DEFAULT FALSE
);
CREATE UNIQUE INDEX plans_one_default ON plans(is_default) WHERE is_default;

INSERT INTO plans (id, name, monthly_calls, max_connections, price_cents, is_default) VALUES
    ('free', 'Free', 1000, 3, 0, TRUE),
    ('pro', 'Pro', 100000, 50, 2000, FALSE),
    ('team', 'Team', 1000000, 500, 10000, FALSE);

ALTER TABLE users ADD COLUMN plan_id TEXT NOT NULL DEFAULT 'free' REFERENCES plans(id);

CREATE TABLE plan_changes (
    id          BIGSERIAL PRIMARY KEY,
    user_id     BIGINT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    from_plan   TEXT NOT NULL,
    to_plan     TEXT NOT NULL,
    source      TEXT NOT NULL,              -- 'webhook:<event id>', 'admin', …
    changed_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX plan_changes_user_idx ON plan_changes(user_id, changed_at DESC);

-- One row per user and calendar month (UTC); incremented in the statement that
-- finishes an execution, so the count is exact and costs no extra round trip.
CREATE TABLE usage_monthly (
    user_id  BIGINT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    month    DATE NOT NULL,
    calls    BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (user_id, month)
);

CREATE TABLE billing_events (
    event_id     TEXT PRIMARY KEY,
    event_type   TEXT NOT NULL,
    received_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);
