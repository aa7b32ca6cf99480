"""Synthetic history for `fleetbed backfill`: plausible kettle readings for many devices, built with numpy.

Each device gets its own rhythm: a daily ambient cycle, boils every few hours followed by cooling, a tank that
empties with use and is refilled, a battery that drains and is recharged. Every value lies inside the ranges the
service accepts (`app.limits`), so backfilled rows are indistinguishable from posted ones.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np
import numpy.typing as npt

from app.limits import NUMERIC_FIELDS

_MICROS = 1_000_000

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


@dataclass(frozen=True)
class DeviceHistory:
    """Readings of a block of devices, one row per device and one column per reading, oldest first."""

    device_ids: npt.NDArray[np.void]  # 16-byte UUIDs
    times_us: IntArray  # microseconds since 2000-01-01 UTC
    charge_now: IntArray
    charge_full: IntArray
    charge_rate: FloatArray
    ambient_temp: FloatArray
    water_temp: FloatArray
    water_level: IntArray

    @property
    def count(self) -> int:
        return int(self.times_us.size)


def random_device_ids(rng: np.random.Generator, count: int) -> npt.NDArray[np.void]:
    raw = np.frombuffer(rng.bytes(16 * count), dtype=np.uint8).reshape(count, 16).copy()
    raw[:, 6] = (raw[:, 6] & 0x0F) | 0x40  # version 4
    raw[:, 8] = (raw[:, 8] & 0x3F) | 0x80  # RFC 4122 variant
    return raw.view("V16").reshape(count)


def micros_since_2000(moment: datetime) -> int:
    delta = moment - datetime(2000, 1, 1, tzinfo=moment.tzinfo)
    return (delta.days * 86_400 + delta.seconds) * _MICROS + delta.microseconds


def _bounds(field: str, margin: float = 0.0) -> tuple[float, float]:
    """The field's accepted range (`app.limits`), narrowed by `margin` at both ends."""
    _, low, high = NUMERIC_FIELDS[field]
    return low + margin, high - margin


def generate(
    rng: np.random.Generator, devices: int, readings: int, interval: timedelta, end: datetime
) -> DeviceHistory:
    """`readings` readings per device, `interval` apart (jittered per device), the newest just before `end`."""
    interval_us = int(interval.total_seconds() * _MICROS)
    end_us = micros_since_2000(end)
    steps = np.arange(readings, dtype=np.int64)
    offset = rng.integers(0, max(interval_us, 1), size=(devices, 1))
    times_us = end_us - offset - (readings - 1 - steps)[None, :] * interval_us
    hours = times_us / (3600 * _MICROS)

    ambient = 20 + 4 * np.sin(2 * np.pi * (hours / 24 + rng.random((devices, 1)))) + rng.normal(0, 0.3, times_us.shape)
    boil_period_h = rng.uniform(2, 6, (devices, 1))
    since_boil_h = np.mod(hours + rng.uniform(0, 6, (devices, 1)), boil_period_h)
    water = ambient + (97 - ambient) * np.exp(-since_boil_h / 0.4) + rng.normal(0, 0.2, times_us.shape)
    boils = np.floor(hours / boil_period_h)
    level = 100 - np.mod(boils * rng.uniform(4, 12, (devices, 1)), 90) - since_boil_h
    charge_full = rng.integers(1500, 3001, (devices, 1)) * np.ones((1, readings), dtype=np.int64)
    cycle_h = rng.uniform(8, 30, (devices, 1))
    phase = np.mod(hours / cycle_h, 1.0)
    fraction = np.where(phase < 0.8, 1 - phase, 0.2 + (phase - 0.8) * 4)  # drain for 80 % of a cycle, then charge
    charge_rate = np.where(phase < 0.8, -1.0, 4.0) * charge_full / cycle_h

    return DeviceHistory(
        device_ids=random_device_ids(rng, devices),
        times_us=times_us,
        charge_now=np.clip(np.rint(fraction * charge_full), 0, charge_full).astype(np.int64),
        charge_full=charge_full,
        charge_rate=np.round(charge_rate, 3),
        ambient_temp=np.round(np.clip(ambient, *_bounds("ambient_temp", margin=1)), 2).astype(np.float64),
        water_temp=np.round(np.clip(water, *_bounds("water_temp", margin=1)), 2).astype(np.float64),
        water_level=np.clip(np.rint(level), *_bounds("water_level")).astype(np.int64),
    )


# PostgreSQL's binary COPY row for measurement(device_id, time, charge_now, charge_full, charge_rate,
# ambient_temp, water_temp, water_level): a field count, then each field as (length, big-endian value).
_COPY_ROW = np.dtype(
    [
        ("fields", ">i2"),
        ("device_len", ">i4"), ("device_id", "V16"),
        ("time_len", ">i4"), ("time", ">i8"),
        ("charge_now_len", ">i4"), ("charge_now", ">i4"),
        ("charge_full_len", ">i4"), ("charge_full", ">i4"),
        ("charge_rate_len", ">i4"), ("charge_rate", ">f8"),
        ("ambient_temp_len", ">i4"), ("ambient_temp", ">f8"),
        ("water_temp_len", ">i4"), ("water_temp", ">f8"),
        ("water_level_len", ">i4"), ("water_level", ">i2"),
    ]
)  # fmt: skip
COPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + b"\x00\x00\x00\x00" + b"\x00\x00\x00\x00"
COPY_TRAILER = b"\xff\xff"
COPY_COLUMNS = (
    "device_id", "time", "charge_now", "charge_full", "charge_rate", "ambient_temp", "water_temp", "water_level",
)  # fmt: skip


def binary_copy(history: DeviceHistory) -> bytes:
    """The whole block as one PostgreSQL binary COPY stream."""
    rows = np.zeros(history.count, dtype=_COPY_ROW)
    rows["fields"] = len(COPY_COLUMNS)
    for name, size in (
        ("device", 16), ("time", 8), ("charge_now", 4), ("charge_full", 4), ("charge_rate", 8),
        ("ambient_temp", 8), ("water_temp", 8), ("water_level", 2),
    ):  # fmt: skip
        rows[f"{name}_len"] = size
    rows["device_id"] = np.repeat(history.device_ids, history.times_us.shape[1])
    rows["time"] = history.times_us.ravel()
    rows["charge_now"] = history.charge_now.ravel()
    rows["charge_full"] = history.charge_full.ravel()
    rows["charge_rate"] = history.charge_rate.ravel()
    rows["ambient_temp"] = history.ambient_temp.ravel()
    rows["water_temp"] = history.water_temp.ravel()
    rows["water_level"] = history.water_level.ravel()
    return COPY_HEADER + rows.tobytes() + COPY_TRAILER
