-- How the latest ingest statement changed each device's state, written by that statement's upsert and returned
-- by it: the old values come back without `RETURNING old.*` (PostgreSQL 18 only) and without locking or reading
-- the device first, so one autocommitted statement per batch keeps the totals exact on PostgreSQL 15-17 too.
--   readings_before      the device's stored readings before the update (0: the row was just created)
--   charge_now_change    how much the update changed charge_now (0 when the batch held no newer reading)
--   water_level_change   the same for water_level
-- Only meaningful to the statement that wrote them; nothing else reads them.

ALTER TABLE device_state
    ADD COLUMN readings_before bigint NOT NULL DEFAULT 0,
    ADD COLUMN charge_now_change integer NOT NULL DEFAULT 0,
    ADD COLUMN water_level_change integer NOT NULL DEFAULT 0;
