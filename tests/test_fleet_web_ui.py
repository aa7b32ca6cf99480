"""The fleet in Locust's web UI, through `fleetbed up` as a user drives it: the start form offers the options of a
test and not those of start-up, the Fleet tab shows the devices' figures and the SLO so far, and stopping `up`
writes the report of what ran."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from tests.support.processes import free_port

REPO = Path(__file__).resolve().parents[1]


def get(url: str) -> tuple[str, str]:
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.headers.get("Content-Type", ""), response.read().decode()


def post_form(url: str, form: dict[str, str]) -> dict[str, Any]:
    data = urllib.parse.urlencode(form).encode()
    with urllib.request.urlopen(urllib.request.Request(url, data=data, method="POST"), timeout=10) as response:
        answer: dict[str, Any] = json.loads(response.read())
        return answer


def test_the_fleet_tab_and_the_report_of_what_ran_in_the_ui(tmp_path: Path) -> None:
    ports = {name: free_port() for name in ("service", "web", "metrics", "prometheus")}
    env = {key: value for key, value in os.environ.items() if not key.startswith("FLEETBED_")}
    env["FLEETBED_DATA_DIR"] = str(tmp_path / "data")
    log = tmp_path / "up.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "app", "up", "--port", str(ports["service"]), "--web-port", str(ports["web"]),
             "--locust-metrics-port", str(ports["metrics"]), "--prometheus-port", str(ports["prometheus"])],
            env=env, cwd=REPO, stdout=output, stderr=subprocess.STDOUT,
        )  # fmt: skip
    web = f"http://127.0.0.1:{ports['web']}"
    try:
        deadline = time.monotonic() + 90
        while "operator token" not in log.read_text() and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.3)
        assert "operator token" in log.read_text(), log.read_text()

        _, page = get(f"{web}/")
        assert '"extended_tabs": [{"key": "fleet", "title": "Fleet"}]' in page or '"title": "Fleet"' in page
        extra, _ = json.JSONDecoder().raw_decode(page.split('"extra_options": ', 1)[1])
        assert {"shape", "slo", "device_interval", "step_users"} <= set(extra)
        assert not {"devices_per_user", "http_client", "prometheus_port", "no_run_record"} & set(extra)

        started = post_form(
            f"{web}/swarm",
            {"user_count": "4", "spawn_rate": "4", "host": f"http://127.0.0.1:{ports['service']}",
             "shape_class": "FleetShape", "shape": "constant", "device_interval": "1",
             "slo": "p95=5000, failures=0.5"},
        )  # fmt: skip
        assert started["success"], started
        rows: dict[str, dict[str, str]] = {}
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            _, text = get(f"{web}/stats/requests")
            fleet = {one["key"]: one["data"] for one in json.loads(text).get("extended_stats", [])}.get("fleet", [])
            rows = {row["figure"]: row for row in fleet}
            if any(name.startswith("SLO p95") for name in rows):
                break
            time.sleep(1)
        assert rows["Devices"]["value"] == "4", rows
        assert int(rows["Slots due"]["value"].replace(",", "")) >= 4
        assert rows["SLO p95 <= 5000"]["note"].startswith("met"), rows
        content_type, csv_text = get(f"{web}/fleet/csv")
        assert content_type.startswith("text/csv")
        assert "Slots given up" in csv_text
        _, requests = get(f"{web}/stats/requests")
        assert {row["method"] for row in json.loads(requests)["stats"]} <= {"GET", "POST", None, ""}

        # The UI's reset button clears the statistics under the open window: it starts again, never negative.
        with urllib.request.urlopen(urllib.request.Request(f"{web}/stats/reset", method="POST"), timeout=10):
            pass
        time.sleep(4)
        process.send_signal(signal.SIGINT)
        assert process.wait(90) == 0, log.read_text()
    finally:
        if process.poll() is None:  # a failed check: stop it as a user would, so that it stops what it started
            process.send_signal(signal.SIGINT)
            try:
                process.wait(60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
    text = log.read_text()
    runs = list((tmp_path / "data" / "runs").glob("up-*"))
    assert len(runs) == 1, text
    run = runs[0]
    assert f"report: {run / 'report.html'}" in text, text
    summary = json.loads((run / "summary.json").read_text())
    assert [step["devices"] for step in summary["steps"]] == [4], summary["steps"]
    assert all(step["requests"] >= 0 and step["slots_due"] >= 0 for step in summary["steps"]), summary["steps"]
    assert summary["slo"] == "p95=5000, failures=0.5", "the report judges on the SLO set in the form"
    assert (run / "locust_report.html").stat().st_size > 10_000, "Locust's own report is kept too"
