-- The core schema: devices, their readings, their latest state, operator commands and load-test runs.
-- Plain PostgreSQL; 002 adds the TimescaleDB layout when the extension is available.

CREATE TABLE device (
    id            uuid PRIMARY KEY,
    registered_at timestamptz NOT NULL DEFAULT now(),
    last_login_at timestamptz NOT NULL DEFAULT now(),
    metadata      jsonb NOT NULL DEFAULT '{}'::jsonb
);

-- No foreign key to device: tokens are only issued to registered devices, and a per-row key lookup
-- would be paid on the hottest path.
CREATE TABLE measurement (
    device_id    uuid NOT NULL,
    time         timestamptz NOT NULL,
    charge_now   integer NOT NULL,
    charge_full  integer NOT NULL,
    charge_rate  double precision NOT NULL,
    ambient_temp double precision NOT NULL,
    water_temp   double precision NOT NULL,
    water_level  smallint NOT NULL,
    CONSTRAINT measurement_device_time_key PRIMARY KEY (device_id, time),
    CONSTRAINT measurement_charge_check CHECK (charge_now >= 0 AND charge_full > 0 AND charge_now <= charge_full),
    CONSTRAINT measurement_water_level_check CHECK (water_level BETWEEN 0 AND 100)
);
CREATE INDEX measurement_time_idx ON measurement (time DESC);

-- The latest reading by time per device, and how many readings the device has stored.
CREATE TABLE device_state (
    device_id    uuid PRIMARY KEY REFERENCES device (id),
    time         timestamptz NOT NULL,
    charge_now   integer NOT NULL,
    charge_full  integer NOT NULL,
    charge_rate  double precision NOT NULL,
    ambient_temp double precision NOT NULL,
    water_temp   double precision NOT NULL,
    water_level  smallint NOT NULL,
    readings     bigint NOT NULL,
    updated_at   timestamptz NOT NULL DEFAULT now()
);

-- A standing command set by an operator; devices without one get the fleet default.
CREATE TABLE command (
    device_id  uuid PRIMARY KEY REFERENCES device (id),
    charge     boolean NOT NULL,
    fill       boolean NOT NULL,
    flush      double precision,
    interval_s integer NOT NULL CHECK (interval_s > 0),
    updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE run (
    id          uuid PRIMARY KEY,
    name        text NOT NULL,
    started_at  timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz,
    status      text NOT NULL DEFAULT 'running',
    config      jsonb NOT NULL DEFAULT '{}'::jsonb,
    summary     jsonb
);

CREATE TABLE run_snapshot (
    run_id uuid NOT NULL REFERENCES run (id),
    time   timestamptz NOT NULL,
    stats  jsonb NOT NULL,
    PRIMARY KEY (run_id, time)
);
