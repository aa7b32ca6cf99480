"""`fleetbed experiment --target URL`: the main job against a service that is already running (a deployment), with
only the generator started here. The same plant as the local run's (slow commits: a trigger sleeping 150 ms in
every insert into measurement) gets the same verdict, and the run is recorded in the target's `/runs`."""

from __future__ import annotations

import asyncio
import json
import urllib.request
from pathlib import Path

import pytest

from tests.support.db import plant_slow_inserts
from tests.support.processes import free_port, running_fleetbed
from tests.test_experiment import run_fleetbed

TOKEN = "operator-token-for-the-target-test"


def run_records(service_url: str) -> list[dict[str, object]]:
    request = urllib.request.Request(f"{service_url}/runs", headers={"Authorization": f"Bearer {TOKEN}"})
    with urllib.request.urlopen(request, timeout=5) as response:
        runs: list[dict[str, object]] = json.load(response)["runs"]
    return runs


@pytest.mark.slow
async def test_a_deployed_service_is_driven_and_its_slow_commits_named(pg_url: str, tmp_path: Path) -> None:
    await plant_slow_inserts(pg_url)  # every insert batch sleeps 150 ms
    port = free_port()
    env = {"FLEETBED_DATABASE_URL": pg_url, "FLEETBED_DATA_DIR": str(tmp_path / "service"), "FLEETBED_PORT": str(port),
           "FLEETBED_OPERATOR_TOKEN": TOKEN, "FLEETBED_COMMAND_INTERVAL_S": "1"}  # fmt: skip
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    out = tmp_path / "run"
    args = ["experiment", "--target", f"http://127.0.0.1:{port}", "--operator-token-file", str(token_file),
            "--devices", "300", "--step-devices", "150", "--step-seconds", "10s", "--duration", "20s",
            "--interval", "1s", "--slo", "p95=5000, failures=0.2", "--out", str(out)]  # fmt: skip
    with running_fleetbed(["serve", "--no-migrate"], env, port):
        done = await asyncio.to_thread(run_fleetbed, args, tmp_path / "generator")
        runs = await asyncio.to_thread(run_records, f"http://127.0.0.1:{port}")
    assert done.returncode == 0, done.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["bottleneck"]["kind"] == "commit", summary["bottleneck"]
    assert summary["bottleneck"]["sentence"].startswith("Commits slowed first")
    assert [step["devices"] for step in summary["steps"]] == [150, 300]
    # Only the generator ran here: this machine carries no service and no database in the evidence.
    hosts = json.loads((out / "hosts.json").read_text())
    assert hosts["roles"] == {"local": ["generator"]}, hosts
    assert any("give --prometheus URL" in line for line in hosts["unseen"]), hosts
    assert [run["name"] for run in runs] == [f"experiment {out.name}"], runs
