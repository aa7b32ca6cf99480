"""Fleet statistics from maintained state: the cost depends on the hours shown, not on devices or history."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from app.db import Connection


@dataclass(frozen=True)
class HourlyTemperature:
    hour: datetime
    readings: int
    mean: float
    stddev: float | None

    def as_json(self) -> dict[str, Any]:
        return {
            "hour": self.hour.isoformat(),
            "readings": self.readings,
            "mean": self.mean,
            "stddev": self.stddev,
        }


@dataclass(frozen=True)
class FleetStats:
    measurements: int
    devices: int
    reporting_devices: int
    total_battery_charge: int
    total_water_volume: int
    hourly: list[HourlyTemperature]
    as_of: datetime

    @classmethod
    def from_totals(cls, totals: Mapping[str, Any], hourly: list[HourlyTemperature]) -> FleetStats:
        """From a row with the totals' columns (and `as_of`), and the hourly series."""
        return cls(
            measurements=totals["measurements"],
            devices=totals["devices"],
            reporting_devices=totals["reporting_devices"],
            total_battery_charge=totals["total_battery_charge"],
            total_water_volume=totals["total_water_volume"],
            hourly=hourly,
            as_of=totals["as_of"],
        )

    def as_json(self) -> dict[str, Any]:
        return {
            "measurements": self.measurements,
            "devices": self.devices,
            "reporting_devices": self.reporting_devices,
            "total_battery_charge": self.total_battery_charge,
            "total_water_volume": self.total_water_volume,
            "mean_water_temp_by_hour": [h.as_json() for h in self.hourly],
            "as_of": self.as_of.isoformat(),
        }


def hourly_from_sums(hour: datetime, readings: int, total: float, total_sq: float) -> HourlyTemperature:
    mean = total / readings
    stddev = None
    if readings > 1:
        # Sample standard deviation from sums; clamp the rounding error that can make it slightly negative.
        variance = max((total_sq - total * total / readings) / (readings - 1), 0.0)
        stddev = math.sqrt(variance)
    return HourlyTemperature(hour, readings, mean, stddev)


async def fleet_stats(conn: Connection, hours: int) -> FleetStats:
    """Counts and totals from `fleet_totals`, the newest `hours` hours of temperature statistics from the rollup."""
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        totals = await conn.fetchrow(
            """
            SELECT coalesce(sum(devices), 0)::bigint AS devices,
                   coalesce(sum(reporting_devices), 0)::bigint AS reporting_devices,
                   coalesce(sum(measurements), 0)::bigint AS measurements,
                   coalesce(sum(total_battery_charge), 0)::bigint AS total_battery_charge,
                   coalesce(sum(total_water_volume), 0)::bigint AS total_water_volume,
                   now() AS as_of
            FROM fleet_totals
            """
        )
        assert totals is not None
        # The newest hours first, found by walking the primary key backwards, then their shards summed.
        rows = await conn.fetch(
            """
            SELECT hour, sum(readings)::bigint AS readings, sum(water_temp_sum) AS total,
                   sum(water_temp_sumsq) AS total_sq
            FROM water_temp_hourly
            WHERE hour IN (SELECT DISTINCT hour FROM water_temp_hourly ORDER BY hour DESC LIMIT $1)
            GROUP BY hour
            ORDER BY hour
            """,
            hours,
        )
    hourly = [hourly_from_sums(r["hour"], r["readings"], r["total"], r["total_sq"]) for r in rows]
    return FleetStats.from_totals(totals, hourly)


async def fleet_stats_by_full_scan(conn: Connection, hours: int) -> FleetStats:
    """The same answer computed from `measurement` alone: the reference the maintained state is checked against."""
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        totals = await conn.fetchrow(
            """
            WITH latest AS (
                SELECT DISTINCT ON (device_id) device_id, charge_now, water_level
                FROM measurement ORDER BY device_id, time DESC
            )
            SELECT (SELECT count(*) FROM device) AS devices,
                   (SELECT count(*) FROM measurement) AS measurements,
                   (SELECT count(*) FROM latest) AS reporting_devices,
                   (SELECT coalesce(sum(charge_now), 0)::bigint FROM latest) AS total_battery_charge,
                   (SELECT coalesce(sum(water_level), 0)::bigint FROM latest) AS total_water_volume,
                   now() AS as_of
            """
        )
        assert totals is not None
        rows = await conn.fetch(
            """
            SELECT date_trunc('hour', time, 'UTC') AS hour, count(*) AS readings, avg(water_temp) AS mean,
                   stddev_samp(water_temp) AS stddev
            FROM measurement GROUP BY 1 ORDER BY 1 DESC LIMIT $1
            """,
            hours,
        )
    hourly = [HourlyTemperature(r["hour"], r["readings"], r["mean"], r["stddev"]) for r in reversed(rows)]
    return FleetStats.from_totals(totals, hourly)
