"""What a measurement may hold, defined once: the ranges of its fields, its time window, the batch size.

Read by the validation that enforces them (`app.validation`, `app.settings`), the OpenAPI document that
publishes them (`app.openapi`), and the writers that must stay inside them: the backfill's history
(`app.backfill.history`) and the fleet (`locustfiles/_device_model.py`, `locustfiles/_device.py`). Limits that
only one endpoint knows (metadata sizes, command ranges, query parameters) are named constants in its handler,
which `app.openapi` reads.

Made for both sides: the standard library only, no event loop, nothing else of `app`, so the locustfiles
(gevent) import it as safely as the service (asyncio) does (`MADE_FOR_BOTH` in tests/test_static_rules.py).
"""

from __future__ import annotations

from typing import NamedTuple

INT32_MAX = 2**31 - 1


class Range(NamedTuple):
    """`kind` "int" (a JSON integer) or "number" (integer or float), within [low, high]."""

    kind: str
    low: float
    high: float


# The numeric fields of a measurement, in the column order of the `measurement` table.
NUMERIC_FIELDS: dict[str, Range] = {
    "charge_now": Range("int", 0, INT32_MAX),  # and at most charge_full
    "charge_full": Range("int", 1, INT32_MAX),
    "charge_rate": Range("number", -1e6, 1e6),  # charge per hour
    "ambient_temp": Range("number", -90.0, 70.0),  # degC
    "water_temp": Range("number", -40.0, 130.0),  # degC
    "water_level": Range("int", 0, 100),  # percent of the tank
}
EARLIEST_YEAR = 2000  # readings from before 1 January of this year (UTC) are refused
MAX_FUTURE_S = 300  # how far ahead of the server's clock a reading's time may be
# How old a reading may be (the default of FLEETBED_MAX_READING_AGE_S): a device's whole offline backlog of the
# fleet model (MAX_BACKLOG readings, about 7 days at its 30 s cycle) fits; older readings would land in compressed
# chunks (compressed after 7 days), and one request could otherwise touch a chunk per day of history.
DEFAULT_MAX_READING_AGE_S = 7 * 24 * 3600

MAX_BATCH_READINGS = 1000  # readings in one POST /measurement array
