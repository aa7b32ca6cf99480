"""Load-test run records: a run, its periodic snapshots of aggregated Locust stats, and its summary."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import asyncpg


def _run_json(row: asyncpg.Record) -> dict[str, Any]:
    return {
        "id": str(row["id"]),
        "name": row["name"],
        "started_at": row["started_at"].isoformat(),
        "finished_at": None if row["finished_at"] is None else row["finished_at"].isoformat(),
        "status": row["status"],
        "config": row["config"],
        "summary": row["summary"],
    }


_RUN_COLUMNS = "id, name, started_at, finished_at, status, config, summary"


async def create_run(pool: asyncpg.Pool, run_id: uuid.UUID, name: str, config: dict[str, Any]) -> dict[str, Any]:
    row = await pool.fetchrow(
        f"INSERT INTO run (id, name, config) VALUES ($1, $2, $3) RETURNING {_RUN_COLUMNS}", run_id, name, config
    )
    assert row is not None
    return _run_json(row)


async def add_snapshot(pool: asyncpg.Pool, run_id: uuid.UUID, time: datetime, stats: dict[str, Any]) -> bool:
    """Store (or replace) the snapshot at `time`; False when the run does not exist."""
    stored = await pool.fetchval(
        """
        INSERT INTO run_snapshot (run_id, time, stats)
        SELECT id, $2, $3 FROM run WHERE id = $1
        ON CONFLICT (run_id, time) DO UPDATE SET stats = EXCLUDED.stats
        RETURNING true
        """,
        run_id,
        time,
        stats,
    )
    return bool(stored)


async def finish_run(
    pool: asyncpg.Pool, run_id: uuid.UUID, status: str, summary: dict[str, Any] | None
) -> dict[str, Any] | None:
    """Mark the run finished (again: the last call wins); None when it does not exist."""
    row = await pool.fetchrow(
        f"""
        UPDATE run SET finished_at = now(), status = $2, summary = coalesce($3, summary)
        WHERE id = $1 RETURNING {_RUN_COLUMNS}
        """,
        run_id,
        status,
        summary,
    )
    return None if row is None else _run_json(row)


async def list_runs(pool: asyncpg.Pool, limit: int) -> list[dict[str, Any]]:
    rows = await pool.fetch(
        f"""
        SELECT {_RUN_COLUMNS}, (SELECT count(*) FROM run_snapshot s WHERE s.run_id = r.id) AS snapshots
        FROM run r ORDER BY started_at DESC, id LIMIT $1
        """,
        limit,
    )
    return [{**_run_json(row), "snapshots": row["snapshots"]} for row in rows]


async def get_run(pool: asyncpg.Pool, run_id: uuid.UUID) -> dict[str, Any] | None:
    """The run with all its snapshots, oldest first."""
    row = await pool.fetchrow(f"SELECT {_RUN_COLUMNS} FROM run WHERE id = $1", run_id)
    if row is None:
        return None
    snapshots = await pool.fetch("SELECT time, stats FROM run_snapshot WHERE run_id = $1 ORDER BY time", run_id)
    return {
        **_run_json(row),
        "snapshots": [{"time": snap["time"].isoformat(), "stats": snap["stats"]} for snap in snapshots],
    }
