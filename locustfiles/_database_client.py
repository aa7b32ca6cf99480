"""Writing readings straight into PostgreSQL, timed as Locust requests (Locust's custom-client pattern).

pg8000 is pure Python, so its sockets cooperate with gevent (a C driver would block every greenlet of the
process). Each statement runs in autocommit: the time reported is one INSERT including its commit, which is
what "single insert execution time" means. Rows go to `measurement` only (no device_state or rollups): the
database's raw cost, to set against the service's. Request type `SQL`; names are bounded:
`INSERT measurement (1 row)` and `INSERT measurement (batch)`.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any
from urllib.parse import unquote, urlsplit

import pg8000.native

REQUEST_TYPE = "SQL"
_COLUMNS = "device_id, time, charge_now, charge_full, charge_rate, ambient_temp, water_temp, water_level"
_INSERT_ONE = f"""
INSERT INTO measurement ({_COLUMNS})
VALUES (CAST(:device_id AS uuid), :time, :charge_now, :charge_full, :charge_rate, :ambient_temp, :water_temp,
        :water_level)
ON CONFLICT (device_id, time) DO NOTHING
"""
_INSERT_BATCH = f"""
INSERT INTO measurement ({_COLUMNS})
SELECT * FROM unnest(CAST(:device_ids AS uuid[]), CAST(:times AS timestamptz[]), CAST(:charge_now AS int[]),
                     CAST(:charge_full AS int[]), CAST(:charge_rate AS float8[]), CAST(:ambient_temp AS float8[]),
                     CAST(:water_temp AS float8[]), CAST(:water_level AS smallint[]))
ON CONFLICT (device_id, time) DO NOTHING
"""
# Each row gets the hash of a secret nobody holds (these devices never log in over HTTP), so no one can claim them
# through POST /login the way a device registered before device secrets existed is claimed at its next login.
_REGISTER = """
INSERT INTO device (id, metadata, secret_hash)
SELECT id, metadata, sha256(uuid_send(gen_random_uuid()) || uuid_send(gen_random_uuid()))
FROM unnest(CAST(:ids AS uuid[]), CAST(:metadata AS jsonb[])) AS given (id, metadata)
ON CONFLICT (id) DO NOTHING
"""


def connect(database_url: str) -> pg8000.native.Connection:
    parts = urlsplit(database_url)
    return pg8000.native.Connection(
        user=unquote(parts.username or "postgres"),
        password=unquote(parts.password) if parts.password else None,
        host=parts.hostname or "127.0.0.1",
        port=parts.port or 5432,
        database=(parts.path or "/postgres").lstrip("/") or "postgres",
        application_name="fleetbed-locust-db",
    )


class DatabaseClient:
    """One connection; every statement is reported through `events.request` with its execution time."""

    def __init__(self, database_url: str, request_event: Any) -> None:
        self.connection = connect(database_url)
        self.request_event = request_event

    def close(self) -> None:
        self.connection.close()

    def _timed(self, name: str, sql: str, rows: int, **params: Any) -> None:
        started = time.perf_counter()
        exception: Exception | None = None
        try:
            self.connection.run(sql, **params)
        except Exception as exc:  # reported to Locust as a failure, the run goes on
            exception = exc
        self.request_event.fire(
            request_type=REQUEST_TYPE,
            name=name,
            response_time=(time.perf_counter() - started) * 1000.0,
            response_length=0 if exception else rows,
            exception=exception,
            context={},
        )

    def register(self, devices: Sequence[tuple[uuid.UUID, str]]) -> None:
        """Device rows (id, metadata JSON), so the readings belong to registered devices."""
        self._timed(
            "INSERT device (batch)",
            _REGISTER,
            len(devices),
            ids=[str(device_id) for device_id, _ in devices],
            metadata=[metadata for _, metadata in devices],
        )

    def insert_one(self, device_id: uuid.UUID, reading: dict[str, Any]) -> None:
        self._timed("INSERT measurement (1 row)", _INSERT_ONE, 1, device_id=str(device_id), **_typed(reading))

    def insert_batch(self, rows: Sequence[tuple[uuid.UUID, dict[str, Any]]]) -> None:
        columns: dict[str, list[Any]] = {name: [] for name in ("device_ids", "times", *_NUMERIC)}
        for device_id, reading in rows:
            columns["device_ids"].append(str(device_id))
            typed = _typed(reading)
            columns["times"].append(typed.pop("time"))
            for name, value in typed.items():
                columns[name].append(value)
        self._timed("INSERT measurement (batch)", _INSERT_BATCH, len(rows), **columns)


_NUMERIC = ("charge_now", "charge_full", "charge_rate", "ambient_temp", "water_temp", "water_level")


def _typed(reading: dict[str, Any]) -> dict[str, Any]:
    values = {name: reading[name] for name in _NUMERIC}
    values["time"] = datetime.fromisoformat(reading["time"])
    return values
