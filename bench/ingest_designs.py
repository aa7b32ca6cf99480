"""Where to keep /stats exact: in the acknowledging statement (the design in app/) or derived right after it.

    .venv/bin/python -m bench.ingest_designs     (about 3 minutes; PostgreSQL 15 from `apt-get install postgresql`)

On the embedded PostgreSQL 18 and on Debian's PostgreSQL 15, alternating over rounds, the same fleet of requests
(1,000 devices x 200 rounds, one reading per request, 2,000 in flight) is written by:

- COPY: asyncpg's COPY of the rows (the ceiling: rows appended, nothing else);
- in-statement: the BatchWriter as shipped: each batch's one statement stores the readings and updates state,
  rollup and totals, so /stats includes every acknowledged reading at once;
- derived: a prototype of the alternative. The acknowledging statement stores the readings and appends them to
  a durable queue table; a deriver task folds the queue into state, rollup and totals (one transaction that
  deletes what it folds: in order per device by time, idempotent, its start time the watermark /stats would
  report as `as_of`). Two rates: acknowledged (all requests answered) and caught up (queue empty as well), the
  second being what /stats could promise.

The derived design's pieces reuse the shipped statement's (app/db/measurements.py), so both keep the same
state, rollup and totals; only where that work happens differs.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Sequence
from unittest import mock
from uuid import UUID

import asyncpg

import app.ingest
from app.db import Connection
from app.db.measurements import (
    ANSWER,
    INCOMING_AND_INSERTED,
    PER_DEVICE,
    ROLLUP_AND_TOTALS,
    STATE_CHANGE,
    BatchOutcome,
    reading_columns,
)
from app.db.readings import Reading
from bench import _fleet, _measure
from bench.run import QUICK, ROUNDS
from tests.support.postgres import POSTGRES_15_BIN, postgres_15_missing

DERIVED_SCHEMA = """
CREATE TABLE ingest_queue (LIKE measurement, shard smallint NOT NULL);
"""

# Acknowledge: the readings, and the same rows appended to the queue.
DERIVED_ACK = (
    INCOMING_AND_INSERTED
    + """, queued AS (
    INSERT INTO ingest_queue SELECT *, $9::int2 FROM inserted RETURNING 1
)"""
    + ANSWER
)

# Fold: everything queued, in one transaction that deletes it (so a crash folds it again, never twice).
DERIVED_FOLD = (
    """
WITH inserted AS (
    DELETE FROM ingest_queue RETURNING device_id, time, charge_now, charge_full, charge_rate, ambient_temp,
                                       water_temp, water_level
)"""
    + (PER_DEVICE + STATE_CHANGE + ROLLUP_AND_TOTALS).replace("$9::int2", "$1::int2")  # the shard: its only parameter
    + """
SELECT count(*) FROM inserted"""
)


async def derived_store_batch(
    conn: Connection, device_ids: Sequence[UUID], readings: Sequence[Reading], shard: int
) -> BatchOutcome:
    row = await conn.fetchrow(DERIVED_ACK, *reading_columns(device_ids, readings), shard, len(readings))
    assert row is not None
    positions = row["duplicate_positions"] or []
    return BatchOutcome(inserted=row["n"], duplicate_positions=frozenset(p - 1 for p in positions))


async def derived_rates(url: str, requests: _measure.FleetRequests) -> tuple[float, float]:
    """(acknowledged, caught up) rows per second of the derived design."""
    conn = await asyncpg.connect(url)
    await conn.execute(DERIVED_SCHEMA)
    done = asyncio.Event()

    async def derive() -> None:
        while True:
            folded = await conn.fetchval(DERIVED_FOLD, 0)
            if not folded:
                if done.is_set():
                    return
                await asyncio.sleep(0.005)

    started = time.perf_counter()
    deriver = asyncio.create_task(derive())
    with mock.patch.object(app.ingest, "store_batch", derived_store_batch):
        acknowledged = await _measure.writer_rate(url, requests)
    done.set()
    await deriver
    caught_up = len(requests) / (time.perf_counter() - started)
    totals = await conn.fetchval("SELECT sum(measurements) FROM fleet_totals")
    await conn.close()
    assert totals == len(requests), f"derived totals {totals} != {len(requests)} readings"
    return acknowledged, caught_up


async def one_round(server_url: str, round_number: int) -> dict[str, float]:
    urls = {
        name: await _fleet.fresh_database(server_url, f"designs_{name}{round_number}")
        for name in ("copy", "statement", "derived")
    }
    requests = _measure.fleet_requests(per_device=20 if QUICK else 200)
    for url in urls.values():
        await _measure.register(url, requests)
    rates = {"copy": await _measure.copy_rate(urls["copy"], requests)}
    rates["statement"] = await _measure.writer_rate(urls["statement"], requests)
    rates["derived_ack"], rates["derived_caught_up"] = await derived_rates(urls["derived"], requests)
    return rates


def measure(server_url: str) -> dict[str, float]:
    rounds = [_fleet.run(one_round(server_url, n)) for n in range(ROUNDS)]
    return {name: statistics.median(r[name] for r in rounds) for name in rounds[0]}


def main() -> None:
    missing = postgres_15_missing()
    if missing:
        raise SystemExit(missing)
    results = {}
    for label, binaries in (("PostgreSQL 18", None), ("PostgreSQL 15", POSTGRES_15_BIN)):
        with _fleet.embedded_server(binaries) as server_url:
            results[label] = measure(server_url)
        print(label, {k: round(v) for k, v in results[label].items()}, flush=True)
    labels = list(results)
    lines = [
        "",
        f"rows/s, medians of {ROUNDS} rounds; ratio to COPY on the same server",
        "",
        "| design | " + " | ".join(labels) + " |",
        "|---|" + "---|" * len(labels),
    ]
    names = {
        "copy": "asyncpg COPY (ceiling)",
        "statement": "in-statement: acknowledged = in /stats",
        "derived_ack": "derived: acknowledged",
        "derived_caught_up": "derived: caught up (in /stats)",
    }
    for key, name in names.items():
        cells = [f"{r[key]:,.0f} ({r[key] / r['copy']:.2f})" for r in results.values()]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
