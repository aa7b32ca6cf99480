"""`Reading`: one measurement as the data layer stores it (the request parser in `app.validation` builds them)."""

from __future__ import annotations

from datetime import datetime
from typing import NamedTuple


class Reading(NamedTuple):
    """One validated measurement, in the column order of the `measurement` table."""

    time: datetime
    charge_now: int
    charge_full: int
    charge_rate: float
    ambient_temp: float
    water_temp: float
    water_level: int
