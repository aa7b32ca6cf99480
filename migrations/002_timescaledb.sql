-- Hourly statistics, and the TimescaleDB layout when the extension is available.
--
-- water_temp_hourly: the rollup GET /stats reads, on every backend. The ingest path keeps it in the same
-- transaction as the readings, so it is exact at once, late readings included. One row per hour and writer
-- shard, so concurrent writers do not queue on the current hour's row; readers sum the shards.
--
-- measurement_hourly: hourly statistics for analysis over long history. On TimescaleDB a real-time continuous
-- aggregate (refreshed by a policy; readings that arrive below its watermark appear after the next refresh),
-- on plain PostgreSQL a view with the same columns.
--
-- Set fleetbed.timescaledb = 'off' in the session to force the plain layout on a TimescaleDB server.

CREATE TABLE water_temp_hourly (
    hour             timestamptz NOT NULL,
    shard            smallint NOT NULL,
    readings         bigint NOT NULL,
    water_temp_sum   double precision NOT NULL,
    water_temp_sumsq double precision NOT NULL,
    PRIMARY KEY (hour, shard)
);

DO $migration$
DECLARE
    use_timescaledb boolean :=
        coalesce(current_setting('fleetbed.timescaledb', true), 'auto') <> 'off'
        AND EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb');
BEGIN
    IF use_timescaledb THEN
        CREATE EXTENSION IF NOT EXISTS timescaledb;

        PERFORM create_hypertable('measurement', by_range('time', INTERVAL '1 day'),
                                  create_default_indexes => false, migrate_data => true);
        PERFORM create_hypertable('run_snapshot', by_range('time', INTERVAL '7 days'),
                                  create_default_indexes => false, migrate_data => true);

        ALTER TABLE measurement SET (timescaledb.compress,
                                     timescaledb.compress_segmentby = 'device_id',
                                     timescaledb.compress_orderby = 'time DESC');
        PERFORM add_compression_policy('measurement', INTERVAL '7 days');

        CREATE MATERIALIZED VIEW measurement_hourly
            WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
            SELECT time_bucket(INTERVAL '1 hour', time) AS hour,
                   count(*) AS readings,
                   avg(water_temp) AS water_temp_mean,
                   stddev_samp(water_temp) AS water_temp_stddev,
                   min(water_temp) AS water_temp_min,
                   max(water_temp) AS water_temp_max,
                   avg(ambient_temp) AS ambient_temp_mean,
                   avg(charge_now::double precision / charge_full) AS charge_fraction_mean,
                   avg(water_level) AS water_level_mean
            FROM measurement
            GROUP BY 1
            WITH NO DATA;
        -- start_offset NULL: the policy also folds in readings that arrive long after their hour.
        PERFORM add_continuous_aggregate_policy('measurement_hourly',
                                                start_offset => NULL,
                                                end_offset => INTERVAL '1 hour',
                                                schedule_interval => INTERVAL '5 minutes');
    ELSE
        CREATE VIEW measurement_hourly AS
            SELECT date_trunc('hour', time, 'UTC') AS hour,
                   count(*) AS readings,
                   avg(water_temp) AS water_temp_mean,
                   stddev_samp(water_temp) AS water_temp_stddev,
                   min(water_temp) AS water_temp_min,
                   max(water_temp) AS water_temp_max,
                   avg(ambient_temp) AS ambient_temp_mean,
                   avg(charge_now::double precision / charge_full) AS charge_fraction_mean,
                   avg(water_level) AS water_level_mean
            FROM measurement
            GROUP BY 1;
    END IF;
END
$migration$;
