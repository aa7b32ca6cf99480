"""How the derived tables accumulate, defined once: the upserts into the hourly rollup (`water_temp_hourly`) and
the fleet totals (`fleet_totals`), used by the ingest statement (`app.db.measurements`), device registration
(`app.db.devices`) and the backfill (`app.db.backfill`).

Each function takes the SELECT of the rows to add (its columns in the order of the INSERT's) and returns the
whole `INSERT ... SELECT ... ON CONFLICT` text, which adds them to the shard's existing row. Fixed text only:
callers build their statements once, as module constants, and pass values as `$n` parameters.
"""

from __future__ import annotations


def hourly_rollup_upsert(rows: str) -> str:
    """`rows` selects (hour, shard, readings, water_temp_sum, water_temp_sumsq)."""
    return f"""INSERT INTO water_temp_hourly AS h (hour, shard, readings, water_temp_sum, water_temp_sumsq)
    {rows}
    ON CONFLICT (hour, shard) DO UPDATE SET
        readings = h.readings + EXCLUDED.readings,
        water_temp_sum = h.water_temp_sum + EXCLUDED.water_temp_sum,
        water_temp_sumsq = h.water_temp_sumsq + EXCLUDED.water_temp_sumsq"""


def fleet_totals_upsert(rows: str) -> str:
    """`rows` selects (shard, devices, measurements, reporting_devices, total_battery_charge, total_water_volume):
    the changes to add, zero where nothing changed."""
    return f"""INSERT INTO fleet_totals AS t (shard, devices, measurements, reporting_devices, total_battery_charge,
                                   total_water_volume)
    {rows}
    ON CONFLICT (shard) DO UPDATE SET
        devices = t.devices + EXCLUDED.devices,
        measurements = t.measurements + EXCLUDED.measurements,
        reporting_devices = t.reporting_devices + EXCLUDED.reporting_devices,
        total_battery_charge = t.total_battery_charge + EXCLUDED.total_battery_charge,
        total_water_volume = t.total_water_volume + EXCLUDED.total_water_volume"""
