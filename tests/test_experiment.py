"""`fleetbed experiment` end to end on the embedded database: every output, the report in a real Chromium, and
`fleetbed report` on the same directory."""

from __future__ import annotations

import csv
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from app.experiment.analysis import verdict
from app.experiment.records import read_run
from app.slo import verdict_text
from app.stack.prometheus_server import INSTALL_HINT, prometheus_binary
from tests.support.browser import visit
from tests.support.requirements import missing

REPO = Path(__file__).resolve().parents[1]
# Two steps of 100 devices, a cycle (poll + reading) every 2 s: about 100 then 200 requests/s.
EXPERIMENT = ["--devices", "200", "--step-devices", "100", "--step-seconds", "12s", "--duration", "25s",
              "--interval", "2s", "--slo", "p95=5000, failures=0.2"]  # fmt: skip


@dataclass(frozen=True)
class Run:
    out: Path
    code: int
    output: str


def run_fleetbed(
    args: list[str], data_dir: Path, timeout_s: float = 180.0, extra_env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("FLEETBED_")}
    env["FLEETBED_DATA_DIR"] = str(data_dir)
    env.update(extra_env or {})
    return subprocess.run(
        [sys.executable, "-m", "app", *args],
        env=env, cwd=REPO, capture_output=True, text=True, timeout=timeout_s, check=False,
    )  # fmt: skip


@pytest.fixture(scope="module")
def experiment(tmp_path_factory: pytest.TempPathFactory) -> Run:
    workdir = tmp_path_factory.mktemp("experiment")
    out = workdir / "run"
    done = run_fleetbed(["experiment", *EXPERIMENT, "--out", str(out)], workdir / "data")
    return Run(out, done.returncode, done.stdout + done.stderr)


def assert_one_verdict(out: Path, code: int, output: str) -> None:
    """Locust's printed verdict and exit code, the summary, the report's figures and the command's own exit code
    and line all come from the same windows through the same evaluator, so they agree."""
    record = json.loads((out / "experiment.json").read_text())
    summary = json.loads((out / "summary.json").read_text())
    until_failure = bool(record["until_failure"])
    again = verdict(read_run(out))
    assert verdict_text(again, until_failure) in (out / "locust.log").read_text()
    passed = again.passed(until_failure)
    assert summary["passed"] is passed
    assert (record["locust_exit_code"] == 0) is passed
    assert (code == 0) is passed
    assert f"verdict {'PASS' if passed else 'FAIL'}" in output
    assert summary["slo_held"] is again.held
    assert summary["capacity_devices"] == again.capacity_devices
    judged = [one for one in again.windows if one.checks is not None]
    assert [step["devices"] for step in summary["steps"]] == [one.window.devices for one in judged]


def test_experiment_writes_every_output_and_exits_on_the_slo(experiment: Run) -> None:
    assert experiment.code == 0, experiment.output
    for name in ("locust_stats.csv", "locust_stats_history.csv", "resources.csv", "summary.json", "report.html"):
        assert (experiment.out / name).stat().st_size > 0, name
    with (experiment.out / "locust_stats_history.csv").open() as history:
        names = {row["Name"] for row in csv.DictReader(history)}
    assert {"/command", "/measurement", "Aggregated"} <= names  # full history: one row per entry
    summary = json.loads((experiment.out / "summary.json").read_text())
    assert summary["slo_held"] is True
    assert [step["devices"] for step in summary["steps"]] == [100, 200]
    assert all(step["throughput_rps"] > 20 and step["failure_ratio"] < 0.2 for step in summary["steps"])
    assert summary["capacity_devices"] == 200
    assert summary["bottleneck"]["sentence"] in experiment.output
    assert "devices |" in experiment.output  # the progress line
    assert "req/s" in experiment.output
    assert_one_verdict(experiment.out, experiment.code, experiment.output)


def test_experiment_exports_prometheus_over_the_run(experiment: Run) -> None:
    if prometheus_binary() is None:
        missing(INSTALL_HINT)
    with (experiment.out / "prometheus.csv").open() as export:
        queries = {row["query"] for row in csv.DictReader(export)}
    assert {"service_cpu_cores", "locust_users", "latency_p95_seconds"} <= queries


def test_report_command_rewrites_the_report(experiment: Run, tmp_path: Path) -> None:
    done = run_fleetbed(["report", str(experiment.out), "-o", str(tmp_path / "again.html")], tmp_path / "data")
    assert done.returncode == 0, done.stderr
    summary = json.loads((experiment.out / "summary.json").read_text())
    assert done.stdout.strip() == summary["bottleneck"]["sentence"]
    assert (tmp_path / "again.html").read_text().count("<svg") >= 4


def test_report_of_a_directory_without_a_run_says_so(tmp_path: Path) -> None:
    done = run_fleetbed(["report", str(tmp_path)], tmp_path / "data")
    assert done.returncode == 2
    assert "locust_stats_history.csv is missing" in done.stderr


PLOTS_RENDERED = """(() => {
  const plots = [...document.querySelectorAll('svg.plot')];
  return {
    plots: plots.length,
    drawn: plots.filter(p => p.getBoundingClientRect().width > 100 && p.querySelector('polyline.series')).length,
    verdict: document.querySelector('#bottleneck').textContent,
  };
})()"""


async def test_report_renders_in_chromium(experiment: Run) -> None:
    page = await visit((experiment.out / "report.html").as_uri(), PLOTS_RENDERED)
    assert page.errors == []
    assert page.screenshot.startswith(b"\x89PNG")
    assert len(page.screenshot) > 10_000
    assert page.value["plots"] >= 4
    assert page.value["drawn"] == page.value["plots"]
    summary = json.loads((experiment.out / "summary.json").read_text())
    assert page.value["verdict"] == summary["bottleneck"]["sentence"]


def test_ctrl_c_still_writes_the_report_and_stops_everything(tmp_path: Path) -> None:
    env = {key: value for key, value in os.environ.items() if not key.startswith("FLEETBED_")}
    env["FLEETBED_DATA_DIR"] = str(tmp_path / "data")
    out, log = tmp_path / "run", tmp_path / "experiment.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "app", "experiment", "--devices", "100", "--duration", "120s", "--interval", "1s",
             "--no-prometheus", "--out", str(out)],
            env=env, cwd=REPO, stdout=output, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while "devices |" not in log.read_text() and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.5)
        time.sleep(8)  # a few seconds of load to report on
        process.send_signal(signal.SIGINT)
        assert process.wait(90) == 130, log.read_text()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    text = log.read_text()
    assert json.loads((out / "experiment.json").read_text())["interrupted"] is True
    assert "Interrupted before the end." in (out / "report.html").read_text()
    service_port = int(re.search(r"service on http://127\.0\.0\.1:(\d+)", text)[1])  # type: ignore[index]
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", service_port)) != 0


@pytest.mark.parametrize(
    ("slo", "code", "capacity"),
    [("p95=3000, failures=0.2", 0, 200), ("p50=0.001", 1, None)],
    ids=["capacity-found", "no-step-meets-the-slo"],
)
def test_until_failure_exits_on_whether_a_capacity_was_found(
    tmp_path: Path, slo: str, code: int, capacity: int | None
) -> None:
    # Capped at 200 devices: the ramp holds one step at the cap, then stops (an SLO that never fails ends too).
    args = ["experiment", "--until-failure", "--devices", "200", "--step-devices", "100", "--step-seconds", "6s",
            "--interval", "1s", "--slo", slo, "--no-prometheus", "--out", str(tmp_path / "run")]  # fmt: skip
    done = run_fleetbed(args, tmp_path / "data")
    assert done.returncode == code, done.stderr
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["capacity_devices"] == capacity
    assert_one_verdict(tmp_path / "run", done.returncode, done.stderr)
