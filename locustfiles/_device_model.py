"""The kettle's physics (numpy) and its metadata (faker): what one simulated device measures and who it is.

Pure Python, no Locust import, so the model can be tested and benchmarked on its own.

Per step of `dt` seconds under a command (charge, fill, flush):
- the thermostat heats the water towards 100 degC (exponential approach) while it is below its set point and the
  battery has charge; otherwise the water cools towards the ambient temperature (Newton's law of cooling);
- the battery discharges while heating (plus a small idle draw) and charges when told to;
- the water level drops with use (random cups), refills on `fill` (mixing in cold tap water) and drains on `flush`;
- the ambient temperature follows the site's daily cycle; every sensor adds noise.
Readings are clipped to the service's ranges (`app.limits`, made for both sides), so they always pass its validation.
"""

from __future__ import annotations

import math
import random
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
from faker import Faker

from app.limits import NUMERIC_FIELDS

MODELS = {
    # model name -> (battery capacity in charge units, heater power as degC per second at full tank)
    "KT-100": (2_000, 0.05),
    "KT-200": (3_000, 0.07),
    "KT-300 Pro": (5_000, 0.09),
}
BOILING_C = 100.0
TAP_WATER_C = 12.0
HEATING_DRAW_PER_H = 900.0
IDLE_DRAW_PER_H = 5.0
CHARGING_PER_H = 1_200.0
COOLING_TIME_CONSTANT_S = 2_400.0
CUP_PERCENT = (6.0, 15.0)
CUPS_PER_HOUR = 0.8

_MODEL_NAMES = sorted(MODELS)
_SERIAL_LETTERS = "ABCDEFGHJKLMNPQRSTUVWXYZ"


@dataclass(frozen=True)
class Command:
    """What the service told the device to do for the next interval (`GET /command`)."""

    charge: bool = False
    fill: bool = False
    flush: float | None = None
    interval_s: int = 30

    @classmethod
    def from_json(cls, document: dict[str, Any], fallback: Command) -> Command:
        try:
            flush = document.get("flush")
            return cls(
                charge=bool(document["charge"]),
                fill=bool(document["fill"]),
                flush=None if flush is None else float(flush),
                interval_s=max(1, int(document["interval_s"])),
            )
        except (KeyError, TypeError, ValueError):
            return fallback


class _MetadataPools:
    """Faker output drawn once per process; each device picks from it with a generator seeded by its id, so
    metadata costs microseconds per device (Faker itself takes milliseconds) and stays stable per device."""

    def __init__(self, size: int = 2_000) -> None:
        faker = Faker()
        faker.seed_instance(4)
        self.sites = [faker.city() for _ in range(size)]
        self.countries = sorted({faker.country_code() for _ in range(size)})
        self.timezones = sorted({faker.timezone() for _ in range(size)})
        self.owners = [faker.user_name() for _ in range(size)]
        self.installed = [faker.date_between("-3y", "-1d").isoformat() for _ in range(size)]


_pools: _MetadataPools | None = None


def device_metadata(device_id: uuid.UUID) -> dict[str, str | int]:
    """Model, firmware, site and the like: stable per device (seeded by its id)."""
    global _pools
    if _pools is None:
        _pools = _MetadataPools()
    pick = random.Random(device_id.int)
    return {
        "model": pick.choice(_MODEL_NAMES),
        "firmware": f"{pick.randint(1, 3)}.{pick.randint(0, 9)}.{pick.randint(0, 40)}",
        "serial": f"KT-{pick.randint(0, 9999):04d}-{''.join(pick.choices(_SERIAL_LETTERS, k=4))}",
        "site": pick.choice(_pools.sites),
        "country": pick.choice(_pools.countries),
        "timezone": pick.choice(_pools.timezones),
        "installed": pick.choice(_pools.installed),
        "owner": pick.choice(_pools.owners),
    }


@dataclass
class Kettle:
    """The physical state of one kettle; `step` advances it, `reading` samples its sensors."""

    device_id: uuid.UUID
    charge_full: int
    heater_c_per_s: float
    site_mean_c: float
    rng: np.random.Generator = field(repr=False)
    charge_now: float = 0.0
    charge_rate: float = 0.0
    water_level: float = 50.0
    water_temp: float = 20.0
    ambient_temp: float = 20.0
    set_point_c: float = 90.0
    heating: bool = False

    @classmethod
    def for_device(cls, device_id: uuid.UUID, model: str) -> Kettle:
        rng = np.random.default_rng(device_id.int)
        charge_full, heater = MODELS.get(model, MODELS["KT-100"])
        site_mean = float(rng.uniform(14.0, 26.0))
        return cls(
            device_id=device_id,
            charge_full=charge_full,
            heater_c_per_s=heater,
            site_mean_c=site_mean,
            rng=rng,
            charge_now=float(rng.uniform(0.3, 1.0)) * charge_full,
            water_level=float(rng.uniform(20.0, 100.0)),
            water_temp=site_mean,
            ambient_temp=site_mean,
            set_point_c=float(rng.uniform(70.0, 95.0)),
        )

    def step(self, dt_s: float, command: Command, at: datetime) -> None:
        dt_s = max(0.0, dt_s)
        hours = dt_s / 3600.0
        self._apply_water_commands(command)
        self._use_water(hours)
        day_fraction = (at.hour * 3600 + at.minute * 60 + at.second) / 86_400.0
        self.ambient_temp = self.site_mean_c + 4.0 * math.sin(2 * math.pi * (day_fraction - 0.375))

        has_water = self.water_level > 1.0
        has_charge = self.charge_now > 0.0
        if self.water_temp < self.set_point_c - 5.0:
            self.heating = True
        elif self.water_temp >= self.set_point_c:
            self.heating = False
        heating = self.heating and has_water and has_charge
        if heating:
            # The heater's rate falls with a fuller tank; approach boiling exponentially.
            tau = (BOILING_C - self.ambient_temp) / self.heater_c_per_s * (0.3 + self.water_level / 100.0)
            self.water_temp = BOILING_C + (self.water_temp - BOILING_C) * math.exp(-dt_s / tau)
        else:
            cooling = math.exp(-dt_s / COOLING_TIME_CONSTANT_S)
            self.water_temp = self.ambient_temp + (self.water_temp - self.ambient_temp) * cooling

        draw = IDLE_DRAW_PER_H + (HEATING_DRAW_PER_H if heating else 0.0)
        rate = (CHARGING_PER_H if command.charge else 0.0) - draw
        before = self.charge_now
        self.charge_now = _clip(self.charge_now + rate * hours, 0.0, self.charge_full)
        self.charge_rate = (self.charge_now - before) / hours if hours > 0 else rate

    def _apply_water_commands(self, command: Command) -> None:
        if command.flush:
            self.water_level = max(0.0, self.water_level - command.flush)
        if command.fill and self.water_level < 100.0:
            added = 100.0 - self.water_level
            self.water_temp = (self.water_level * self.water_temp + added * TAP_WATER_C) / 100.0
            self.water_level = 100.0

    def _use_water(self, hours: float) -> None:
        cups = int(self.rng.poisson(CUPS_PER_HOUR * hours)) if hours > 0 else 0  # usually 0 over one interval
        for _ in range(cups):
            self.water_level = max(0.0, self.water_level - float(self.rng.uniform(*CUP_PERCENT)))

    def reading(self, at: datetime) -> dict[str, Any]:
        """A measurement as the service expects it, with sensor noise, clipped to physical ranges."""
        ambient_noise, water_noise, level_noise = self.rng.standard_normal(3).tolist()
        return {
            "time": at.isoformat(timespec="milliseconds"),
            "charge_now": min(self.charge_full, max(0, round(self.charge_now))),
            "charge_full": self.charge_full,
            "charge_rate": round(_clip(self.charge_rate, *_range("charge_rate")), 3),
            "ambient_temp": round(_clip(self.ambient_temp + 0.3 * ambient_noise, *_range("ambient_temp")), 2),
            "water_temp": round(_clip(self.water_temp + 0.2 * water_noise, *_range("water_temp")), 2),
            "water_level": int(_clip(round(self.water_level + 0.8 * level_noise), *_range("water_level"))),
        }


def _range(field: str) -> tuple[float, float]:
    """The range the service accepts for a field (`app.limits`)."""
    _, low, high = NUMERIC_FIELDS[field]
    return low, high


def _clip(value: float, low: float, high: float) -> float:
    """Clip and map NaN to `low`, so no reading can ever carry a non-finite number."""
    if not value >= low:
        return low
    return min(float(value), high)
