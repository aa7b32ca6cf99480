"""`fleetbed report --prometheus`: a run rebuilt from what a real Prometheus kept (a made-up history backfilled with
promtool, under the real exporters' metric names), with the steps found from the device count and the database's
trouble named from postgres_exporter's wait classes."""

from __future__ import annotations

import json
import math
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.experiment.prometheus_evidence import place, unseen_sources
from app.stack.processes import free_port
from app.stack.prometheus_export import Series
from app.stack.prometheus_server import INSTALL_HINT, LocalPrometheus, prometheus_binary
from tests.support.requirements import missing
from tests.support.synthetic_prometheus import DATABASE, GENERATOR, SyntheticRun, backfill, config
from tests.test_experiment import run_fleetbed

SECONDS = 160  # four steps of 40 s


@pytest.fixture(scope="module")
def prometheus_binaries() -> None:
    if prometheus_binary() is None or shutil.which("promtool") is None:
        missing(INSTALL_HINT)


@pytest.fixture
def kept(
    request: pytest.FixtureRequest, prometheus_binaries: None, tmp_path: Path
) -> Iterator[tuple[str, SyntheticRun]]:
    start = math.floor(time.time()) - 3 * 3600
    run = SyntheticRun(start=start, seconds=SECONDS, steps=4, users_per_step=50, stress_from=2, plant=request.param)
    backfill(run, tmp_path / "tsdb", tmp_path)
    with LocalPrometheus(config(tmp_path / "prometheus.yml"), tmp_path / "tsdb", free_port()) as prometheus:
        yield prometheus.url, run


@pytest.mark.parametrize(
    ("kept", "kind", "opening"),
    [
        ("lock", "lock-waits", "Writers queued on locks"),
        ("io_wal", "database-disk", "Commits waited on the database's disk"),
        ("cpu", "database-cpu", "The database host ran out of CPU"),
        # The Locust master's own CPU and what its workers report: the generator is judged from Prometheus too.
        ("generator", "generator", "The generator was the limit, not the service"),
    ],
    indirect=["kept"],
)
def test_a_kept_run_is_reported_from_prometheus(
    kept: tuple[str, SyntheticRun], kind: str, opening: str, tmp_path: Path
) -> None:
    url, run = kept
    out = tmp_path / "report"
    done = run_fleetbed(
        ["report", "--prometheus", url, "--from", str(run.start), "--to", str(run.start + SECONDS - 1),
         "--out", str(out)],
        tmp_path / "data",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    for name in ("report.html", "summary.json", "locust_stats_history.csv", "resources.csv", "hosts.csv",
                 "prometheus.csv", "locust_windows.json"):  # fmt: skip
        assert (out / name).stat().st_size > 0, name
    # The fleet's windows for the SLO evaluator: constant users, warm-up (one 30 s interval, at most half) left out,
    # judged figures from the master's counters and histogram buckets.
    windows = json.loads((out / "locust_windows.json").read_text())["windows"]
    assert [window["devices"] for window in windows] == [50, 100, 150, 200]
    for window in windows:
        judged = window["judged"]["requests"][0]
        assert window["judged_from"] - window["start"] == pytest.approx((window["end"] - window["start"]) / 2, abs=1)
        assert judged["requests"] == pytest.approx(window["users"] * (window["end"] - window["judged_from"]), rel=0.05)
        slow = window["users"] >= 150  # the troubled steps answer in 0.9 s: the 1 s bucket
        assert judged["times"] == {"1000" if slow else "10": judged["requests"]}, window
    summary = json.loads((out / "summary.json").read_text())
    # No shape declared the steps: they are found from the device count over time.
    assert [step["devices"] for step in summary["steps"]] == [50, 100, 150, 200]
    assert summary["knee_devices"] == 150
    assert summary["bottleneck"]["kind"] == kind, summary["bottleneck"]
    assert summary["bottleneck"]["sentence"].startswith(opening)
    assert summary["bottleneck"]["sentence"] == done.stdout.strip()
    evidence = summary["bottleneck"]["evidence"]
    assert any(line.startswith(f"PostgreSQL on host {DATABASE}") for line in evidence), evidence
    generator_cpu = next(float(line.split()[2]) for line in evidence if line.startswith("generator CPU"))
    assert generator_cpu == pytest.approx(0.97 if kind == "generator" else 0.4, abs=0.03), evidence
    # The generator's host had no node exporter: said, not skipped.
    assert any(line.startswith(f"not seen: host {GENERATOR} (generator)") for line in evidence), evidence


@pytest.mark.parametrize("kept", ["lock"], indirect=True)
def test_a_range_with_no_fleet_in_it_is_a_clear_error(kept: tuple[str, SyntheticRun], tmp_path: Path) -> None:
    url, run = kept
    before = run.start - 3600
    done = run_fleetbed(
        ["report", "--prometheus", url, "--from", str(before), "--to", str(before + 60), "--out", str(tmp_path / "r")],
        tmp_path / "data",
    )
    assert done.returncode == 2
    assert "has no Locust metrics" in done.stderr, done.stderr
    assert "job `locust`" in done.stderr, done.stderr


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["--prometheus", "http://127.0.0.1:9"], "--prometheus needs --run RUN_ID (or latest) or --from TIME"),
        (["--prometheus", "http://127.0.0.1:9", "--run", "latest"], "--run needs the service's URL"),
        (["--prometheus", "http://127.0.0.1:9", "--from", "now-1m", "--to", "now-2m"], "--to must be after --from"),
        (["--prometheus", "ftp://x", "--from", "now-1m"], "--prometheus must be an http(s) URL"),
        ([], "give a run directory, or --prometheus URL"),
    ],
)
def test_what_a_report_from_prometheus_needs_is_said(args: list[str], said: str, tmp_path: Path) -> None:
    done = run_fleetbed(["report", *args, "--out", str(tmp_path / "r")], tmp_path / "data")
    assert done.returncode == 2, done.stderr
    assert said in done.stderr, done.stderr


def test_compose_names_its_one_machine_and_a_network_keeps_its_hosts() -> None:
    def up(job: str, instance: str) -> Series:
        return Series("up", {"job": job, "instance": instance}, [])

    # docker compose: one node exporter stands for the machine every container runs on.
    compose = place([up("fleetbed", "app:8080"), up("locust", "locust-master:9646"), up("node", "node-exporter:9100"),
                     up("postgres", "postgres-exporter:9187")])  # fmt: skip
    assert compose.roles == {"node-exporter": ["service", "database", "generator"]}
    assert compose.host_of("postgres-exporter:9187") == "node-exporter"
    # A network: each address is a host; the database host has its node exporter, the generator's has none.
    network = place([up("fleetbed", "10.1.0.2:8080"), up("node", "10.1.0.2:9100"), up("node", "10.1.0.3:9100"),
                     up("postgres", "10.1.0.3:9187"), up("locust", "10.1.0.4:9646")])  # fmt: skip
    assert network.roles == {"10.1.0.2": ["service"], "10.1.0.3": ["database"], "10.1.0.4": ["generator"]}
    unseen = list(unseen_sources(network, {"db_backends_cpu", "db_wal_sync_ms"}))
    assert unseen == [
        "host 10.1.0.4 (generator): its CPU, memory, disks and network "
        "(no node_exporter scraped there under job `node`)"
    ]
    assert any("--extend.query-path" in line for line in unseen_sources(network, set()))
