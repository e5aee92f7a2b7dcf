-- Let a worker's claim be a HOT update (no index entries written): no index may cover a
-- column the claim changes (status, attempts, started_at, queue_wait_ms). The unfinished
-- index now keys on created_at and selects by finished_at, which only the final update
-- sets. Rows keep a fifth of each page free so the updated version fits beside the old.
DROP INDEX executions_unfinished_idx;
CREATE INDEX executions_unfinished_idx ON executions(created_at) WHERE finished_at IS NULL;
ALTER TABLE executions SET (fillfactor = 80);
