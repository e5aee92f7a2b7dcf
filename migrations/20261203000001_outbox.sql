-- The intent to publish each new execution's job (a transactional outbox): written by the
-- insert's own statement, deleted once the broker confirmed the job (or a worker claimed
-- the execution, or the api failed it as never queued). A row still here at `due_at` is
-- published again by any api replica's relay, so an api that dies between the insert and
-- the publish strands nothing. The worker's lease and its final-row check keep a second
-- copy of a job from running twice.
CREATE TABLE execution_outbox (
    execution_id UUID PRIMARY KEY REFERENCES executions(id) ON DELETE CASCADE,
    lane         TEXT NOT NULL CHECK (lane IN ('interactive', 'bulk')),
    due_at       TIMESTAMPTZ NOT NULL,
    -- How many times a relay has published it.
    relayed      INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX execution_outbox_due_idx ON execution_outbox(due_at);
