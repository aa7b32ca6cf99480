"""The capacity search's answer holds up: run twice it agrees within 20%, a constant fleet at the capacity it
reported holds the SLO, and one half as large again breaks it.

The service carries a planted cost (3 ms of CPU per request, the test-only FLEETBED_TEST_HANDLER_CPU_MS), so its
core gives out at a small fleet and sharply, whatever else the machine runs: a cycle a second is 2 requests, so a
whole core is about 160 devices.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.test_experiment import run_fleetbed

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1200)]  # two searches of about 3 min, two 40 s runs
PLANTED = {"FLEETBED_TEST_HANDLER_CPU_MS": "3"}
SEARCH = ["experiment", "--start-devices", "40", "--no-prometheus"]  # the default SLO, steps as `make run`'s
CONSTANT = ["experiment", "--duration", "40s", "--interval", "1s", "--devices-per-user", "1", "--no-prometheus"]


def _summary(out: Path, args: list[str], data: Path) -> dict[str, object]:
    done = run_fleetbed([*args, "--out", str(out)], data, timeout_s=400, extra_env=PLANTED)
    assert (out / "summary.json").exists(), done.stdout + done.stderr
    summary: dict[str, object] = json.loads((out / "summary.json").read_text())
    return summary


def test_the_search_repeats_and_its_capacity_holds_where_half_as_much_again_breaks(tmp_path: Path) -> None:
    first = _summary(tmp_path / "first", SEARCH, tmp_path / "data")
    second = _summary(tmp_path / "second", SEARCH, tmp_path / "data")
    found = [first["capacity_devices"], second["capacity_devices"]]
    assert all(isinstance(devices, int) for devices in found), (first["steps"], second["steps"])
    low, high = min(found), max(found)  # type: ignore[type-var]
    assert (high - low) / high <= 0.2, (found, first["steps"], second["steps"])
    capacity = int(first["capacity_devices"])  # type: ignore[call-overload]
    at_capacity = _summary(tmp_path / "at", [*CONSTANT, "--devices", str(capacity)], tmp_path / "data")
    beyond = _summary(tmp_path / "beyond", [*CONSTANT, "--devices", str(round(1.5 * capacity))], tmp_path / "data")
    assert at_capacity["slo_held"] is True, at_capacity["steps"]
    assert beyond["slo_held"] is False, beyond["steps"]
