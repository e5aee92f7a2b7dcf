-- Writes whose answer may be lost, remembered in the row (issue 16, part 3).
--
-- True when a delivery of this execution may have sent its provider request without
-- recording the answer: the previous delivery ended with the row still `running` (it was
-- killed, or our infrastructure failed under it), or it parked the call in a delay queue
-- while the outcome was still unknown. The worker then runs the tool's verification read
-- before sending again. Redis' sent-marker says the same more precisely, but Redis may
-- lose it in a restart; this column is the durable half. Not indexed: the claim's update
-- stays HOT.
ALTER TABLE executions ADD COLUMN unanswered BOOLEAN NOT NULL DEFAULT false;
