-- The audit trail (issue 18, part 3): every credential decrypt, connection change,
-- pairing, grant change, approval and admin action, append-only and hash-chained.
--
-- One chain per account (`user_id`) plus one operator chain (`user_id` NULL). Each row's
-- `hash` is SHA-256 of the previous row's hash in its chain followed by the row's
-- canonical text (`audit_canonical`), so a changed, removed or reordered row breaks every
-- hash after it; `clawlink-api audit verify` recomputes them. The trigger below fills
-- `id`, `at`, `prev_hash` and `hash`: whatever an INSERT says for them is replaced.
--
-- No secret is ever stored here: no token, no credential, no argument of a call (a tool
-- name, a connection id, an execution id are fine).
--
-- No foreign key to `users`: the trail outlives what it speaks of (a deleted connection,
-- device or account), and an ON DELETE CASCADE would be refused by the append-only rule.

-- Drawn by the trigger once it holds the chain's lock, so ids increase in chain order
-- (a column default is drawn before the lock, and two concurrent inserts of one chain
-- could then commit in the other order than their ids).
CREATE SEQUENCE audit_events_id_seq;

CREATE TABLE audit_events (
    id        BIGINT PRIMARY KEY,
    -- The account whose chain this row is in; NULL: the operator chain.
    user_id   BIGINT,
    at        TIMESTAMPTZ NOT NULL,
    -- `person:<user id>`, `device:<device id>`, `worker`, `operator`, `system`.
    actor     TEXT NOT NULL,
    -- `credential.decrypted`, `connection.created`, … (common/src/audit.rs lists them).
    action    TEXT NOT NULL,
    -- What it was done to: `connection:<id>`, `device:<id>`, `execution:<uuid>`, ….
    subject   TEXT NOT NULL,
    details   JSONB NOT NULL DEFAULT '{}'::jsonb,
    -- The previous row's hash in the same chain; NULL for a chain's first row.
    prev_hash BYTEA,
    hash      BYTEA NOT NULL
);
ALTER SEQUENCE audit_events_id_seq OWNED BY audit_events.id;
-- A chain in order: the trigger's "last row", the dashboard's pages, the verifier.
CREATE INDEX audit_events_chain_idx ON audit_events (user_id, id);

-- The text a row's hash covers: every column but the two hashes, as a JSON array. JSONB
-- text is canonical (keys sorted, one spacing), and the time is rendered in UTC whatever
-- the session's TimeZone, so the same row always gives the same bytes.
CREATE FUNCTION audit_canonical(id BIGINT, user_id BIGINT, at TIMESTAMPTZ, actor TEXT, action TEXT,
                                subject TEXT, details JSONB) RETURNS BYTEA
    LANGUAGE sql STABLE PARALLEL SAFE
    RETURN convert_to(jsonb_build_array(id, user_id, at AT TIME ZONE 'UTC', actor, action, subject, details)::text,
                      'UTF8');

-- Chains the new row to the last one of its chain. The advisory lock (held until the
-- transaction ends) serialises the inserts of one chain, so two never take the same
-- predecessor; under READ COMMITTED the query after it sees the previous holder's row.
-- Rows of several chains in one statement must come in a stable order (the callers sort
-- by user) so two statements never wait on each other's chains.
CREATE FUNCTION audit_events_chain() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    last BYTEA;
BEGIN
    PERFORM pg_advisory_xact_lock(hashtextextended('clawlink.audit_events', coalesce(NEW.user_id, 0)));
    IF NEW.user_id IS NULL THEN
        SELECT hash INTO last FROM audit_events WHERE user_id IS NULL ORDER BY id DESC LIMIT 1;
    ELSE
        SELECT hash INTO last FROM audit_events WHERE user_id = NEW.user_id ORDER BY id DESC LIMIT 1;
    END IF;
    NEW.id := nextval('audit_events_id_seq');
    NEW.at := now();
    NEW.details := coalesce(NEW.details, '{}'::jsonb);
    NEW.prev_hash := last;
    NEW.hash := sha256(coalesce(last, ''::bytea)
                       || audit_canonical(NEW.id, NEW.user_id, NEW.at, NEW.actor, NEW.action, NEW.subject, NEW.details));
    RETURN NEW;
END
$$;
CREATE TRIGGER audit_events_chain BEFORE INSERT ON audit_events
    FOR EACH ROW EXECUTE FUNCTION audit_events_chain();

-- Append-only: a row is never changed or removed through a normal session.
CREATE FUNCTION audit_events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_events is append-only: % is refused', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END
$$;
CREATE TRIGGER audit_events_append_only BEFORE UPDATE OR DELETE ON audit_events
    FOR EACH ROW EXECUTE FUNCTION audit_events_append_only();
CREATE TRIGGER audit_events_no_truncate BEFORE TRUNCATE ON audit_events
    FOR EACH STATEMENT EXECUTE FUNCTION audit_events_append_only();
