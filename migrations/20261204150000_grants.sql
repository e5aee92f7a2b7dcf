-- Grants per device (issue 18, part 1): which apps and connections a paired agent may
-- use, read-only or read-write, with an optional call budget and expiry.
--
-- `grant_apps` NULL: every app and every connection (the default grant: a device paired
-- before grants, or with the default choice, behaves as before). Otherwise a JSON object
-- whose keys are the granted integrations and whose values are either null (every
-- connection of that app) or an array of the granted connection ids.
ALTER TABLE devices ADD COLUMN grant_apps JSONB
    CHECK (grant_apps IS NULL OR jsonb_typeof(grant_apps) = 'object');
ALTER TABLE devices ADD COLUMN grant_read_only BOOLEAN NOT NULL DEFAULT false;
-- At most this many calls accepted under the grant; NULL: no budget. `grant_calls_used`
-- counts them and is reset when the person sets a new budget.
ALTER TABLE devices ADD COLUMN grant_call_budget BIGINT CHECK (grant_call_budget IS NULL OR grant_call_budget >= 0);
ALTER TABLE devices ADD COLUMN grant_calls_used BIGINT NOT NULL DEFAULT 0;
-- Past this the device can do nothing until the person extends or clears it.
ALTER TABLE devices ADD COLUMN grant_expires_at TIMESTAMPTZ;

-- The grant a person chose on the pairing approval page, held until the device exists
-- (the first exchange copies it onto the device row).
ALTER TABLE pairing_sessions ADD COLUMN grant_apps JSONB
    CHECK (grant_apps IS NULL OR jsonb_typeof(grant_apps) = 'object');
ALTER TABLE pairing_sessions ADD COLUMN grant_read_only BOOLEAN NOT NULL DEFAULT false;
ALTER TABLE pairing_sessions ADD COLUMN grant_call_budget BIGINT
    CHECK (grant_call_budget IS NULL OR grant_call_budget >= 0);
ALTER TABLE pairing_sessions ADD COLUMN grant_expires_at TIMESTAMPTZ;
