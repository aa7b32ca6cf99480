-- Fleet totals kept by the write paths, so GET /stats costs the same at 10 thousand or 10 billion readings.
-- One row per writer shard (concurrent writers never queue on one row); readers sum the rows.
--   devices                every registered device (login)
--   measurements           readings stored
--   reporting_devices      devices with at least one reading
--   total_battery_charge   sum over devices of charge_now in the device's latest reading by time
--   total_water_volume     the same for water_level

CREATE TABLE fleet_totals (
    shard                smallint PRIMARY KEY,
    devices              bigint NOT NULL DEFAULT 0,
    measurements         bigint NOT NULL DEFAULT 0,
    reporting_devices    bigint NOT NULL DEFAULT 0,
    total_battery_charge bigint NOT NULL DEFAULT 0,
    total_water_volume   bigint NOT NULL DEFAULT 0
);

-- Databases migrated before this file already hold devices and readings: start from what is there.
INSERT INTO fleet_totals (shard, devices, measurements, reporting_devices, total_battery_charge, total_water_volume)
SELECT 0,
       (SELECT count(*) FROM device),
       coalesce(sum(readings), 0),
       count(*),
       coalesce(sum(charge_now), 0),
       coalesce(sum(water_level), 0)
FROM device_state;
