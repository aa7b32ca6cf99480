"""The database-direct user: the fleet's readings inserted straight into PostgreSQL, single-row and batched,
timed as Locust requests; the rows are really there and valid."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.support.db import scalar
from tests.support.fleet import REPO

LOCUSTFILE = REPO / "locustfiles" / "kettle_db.py"


def run_database_user(database_url: str, workdir: Path, *args: str) -> dict[str, dict[str, Any]]:
    prefix = workdir / "db"
    result = subprocess.run(
        [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless", "--only-summary",
         "--json-file", str(prefix), "--database-url", database_url, *args],
        cwd=workdir, env={**os.environ}, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    return {entry["name"]: entry for entry in json.loads(Path(f"{prefix}.json").read_text())}


@pytest.mark.parametrize(
    ("batch_size", "name"), [(1, "INSERT measurement (1 row)"), (50, "INSERT measurement (batch)")]
)
async def test_readings_go_straight_into_the_database(pg_url: str, tmp_path: Path, batch_size: int, name: str) -> None:
    stats = run_database_user(
        pg_url, tmp_path, "-u", "2", "-r", "2", "--db-devices-per-user", "5", "--db-batch-size", str(batch_size),
        "--db-rows", "2000", "-t", "60s",
    )  # fmt: skip
    inserts = stats[name]
    assert inserts["num_failures"] == 0
    rows = await scalar(pg_url, "SELECT count(*) FROM measurement")
    assert rows >= 2000
    # An insert in flight when the run stops may commit without being reported: at most one per user.
    assert inserts["num_requests"] * batch_size <= rows <= (inserts["num_requests"] + 2) * batch_size
    assert await scalar(pg_url, "SELECT count(*) FROM device") == 10
    assert await scalar(pg_url, "SELECT count(DISTINCT device_id) FROM measurement") == 10
    assert inserts["total_response_time"] > 0
