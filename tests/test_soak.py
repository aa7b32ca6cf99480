"""Soak: a fleet running for a while leaves memory, file descriptors and event-loop lag flat.

FLEETBED_SOAK_SECONDS sets the length (default 45 s here and in CI; hours for a real soak). The slopes are
printed and written to $FLEETBED_SOAK_REPORT when set.
"""

from __future__ import annotations

import asyncio
import json
import os
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np
import psutil
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support.fleet_driver import DriverReport, drive
from tests.support.processes import free_port, running_fleetbed

pytestmark = pytest.mark.slow

SOAK_SECONDS = float(os.environ.get("FLEETBED_SOAK_SECONDS", "45"))
DEVICES = 60
PACE_S = 0.2  # each device posts five times a second: about 300 requests/s in all


def loop_lag_seconds(base: str) -> float:
    with urllib.request.urlopen(f"{base}/metrics", timeout=5) as response:
        text = response.read().decode()
    for family in text_string_to_metric_families(text):
        if family.name == "fleetbed_event_loop_last_lag_seconds":
            return max(sample.value for sample in family.samples)
    raise AssertionError("the service exposes no event-loop lag")


def slope_per_minute(times: list[float], values: list[float]) -> float:
    return float(np.polyfit(np.array(times) / 60, np.array(values), 1)[0])


async def test_a_long_running_fleet_leaves_memory_fds_and_loop_lag_flat(pg_url: str) -> None:
    port = free_port()
    env = {"FLEETBED_DATABASE_URL": pg_url, "FLEETBED_DATA_DIR": tempfile.mkdtemp(), "FLEETBED_PORT": str(port)}
    base = f"http://127.0.0.1:{port}"
    report, stop = DriverReport(), asyncio.Event()
    samples: list[tuple[float, float, int, float]] = []
    with running_fleetbed(["serve"], env, port) as service:
        process = psutil.Process(service.pid)
        fleet = asyncio.ensure_future(drive(base, DEVICES, stop, report, pace_s=PACE_S))
        started = time.monotonic()
        while (elapsed := time.monotonic() - started) < SOAK_SECONDS:
            await asyncio.sleep(1.5)
            lag = await asyncio.to_thread(loop_lag_seconds, base)
            samples.append((elapsed, process.memory_info().rss / 2**20, process.num_fds(), lag))
        stop.set()
        await fleet

    steady = samples[len(samples) // 3 :]  # after warm-up: pools filled, caches populated
    times = [s[0] for s in steady]
    result = {
        "seconds": SOAK_SECONDS,
        "requests_acknowledged": len(report.acknowledged),
        "rss_mib_first_last": [round(steady[0][1], 1), round(steady[-1][1], 1)],
        "rss_mib_per_minute": round(slope_per_minute(times, [s[1] for s in steady]), 3),
        "fds_per_minute": round(slope_per_minute(times, [s[2] for s in steady]), 3),
        "loop_lag_ms_max": round(max(s[3] for s in steady) * 1000, 2),
        "loop_lag_ms_per_minute": round(slope_per_minute(times, [s[3] * 1000 for s in steady]), 3),
    }
    print("soak:", json.dumps(result))
    if target := os.environ.get("FLEETBED_SOAK_REPORT"):
        await asyncio.to_thread(Path(target).write_text, json.dumps(result, indent=2))
    assert report.statuses.get(201, 0) > SOAK_SECONDS * DEVICES, "the fleet was served throughout"
    assert set(report.statuses) == {201}, report.statuses
    assert result["rss_mib_per_minute"] < 8, "memory grows"
    assert abs(result["fds_per_minute"]) < 10, "file descriptors leak"
    assert result["loop_lag_ms_max"] < 500, "the event loop stalls"
