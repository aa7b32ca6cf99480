-- TimescaleDB layout when the extension is available, the same tables on plain PostgreSQL otherwise.
--
-- measurement_hourly holds the hourly water-temperature statistics that GET /stats reads:
--   * TimescaleDB: a real-time continuous aggregate over the measurement hypertable;
--   * plain PostgreSQL: a table the ingest path keeps in the same transaction as the readings, one row per
--     hour and writer shard (so concurrent writers do not queue on one hot row).
-- Both expose (hour, readings, water_temp_sum, water_temp_sumsq); readers sum over rows of the same hour.
-- Set fleetbed.timescaledb = 'off' in the session to force the plain layout on a TimescaleDB server.

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
                   sum(water_temp) AS water_temp_sum,
                   sum(water_temp * water_temp) AS water_temp_sumsq
            FROM measurement
            GROUP BY 1
            WITH NO DATA;
        PERFORM add_continuous_aggregate_policy('measurement_hourly',
                                                start_offset => INTERVAL '3 days',
                                                end_offset => INTERVAL '1 hour',
                                                schedule_interval => INTERVAL '5 minutes');
    ELSE
        CREATE TABLE measurement_hourly (
            hour             timestamptz NOT NULL,
            shard            smallint NOT NULL,
            readings         bigint NOT NULL,
            water_temp_sum   double precision NOT NULL,
            water_temp_sumsq double precision NOT NULL,
            PRIMARY KEY (hour, shard)
        );
    END IF;
END
$migration$;
