"""Diagnosis accuracy: real experiments with a planted bottleneck, and the report must name it.

- a tiny database pool (one connection per worker) under a ramp: the pool;
- a CPU-heavy handler (2 ms of CPU per request, a test-only setting): service CPU;
- slow storage (a trigger sleeping 150 ms in every insert into measurement): commits;
- a generator that is itself the limit (a thousand devices sharing one HTTP connection, so they queue inside
  Locust while the service answers in a millisecond): the generator, and not the service.
"""

from __future__ import annotations

import asyncio
import json
import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from app.experiment.analysis import StepFigures
from app.experiment.diagnosis import diagnose
from app.experiment.hosts import HostEvidence
from tests.support.db import plant_slow_inserts
from tests.test_experiment import run_fleetbed


def bottleneck(out: Path) -> dict[str, object]:
    summary = json.loads((out / "summary.json").read_text())
    found: dict[str, object] = summary["bottleneck"]
    return found


CALM = StepFigures(
    devices=100, users=100, start=0.0, end=10.0, requests=2000, failures=0, throughput_rps=200.0,
    failure_ratio=0.0, p50_ms=2.0, p95_ms=4.0, p99_ms=6.0, lag_p99_ms=3.0, service_cpu_cores=0.2,
    generator_cpu_cores=0.1, pool_waiting=0.0, pool_utilisation=0.2, pool_acquire_ms=0.1, commit_ms=1.5,
    gc_fraction=0.0, loop_lag_ms=0.5, server_ms=1.5, slo_passed=True, slo_failures=[],
)  # fmt: skip


@pytest.mark.parametrize(
    ("stressed", "kind"),
    [
        pytest.param({"lag_p99_ms": 5000.0}, "generator", id="behind-with-the-service-idle"),
        pytest.param({"p50_ms": 900.0}, "generator", id="answers-slower-at-devices-than-at-the-service"),
        pytest.param({"generator_cpu_cores": 0.95, "pool_waiting": 40.0}, "generator", id="generator-out-of-cpu"),
        # Devices stuck behind a starved pool fall behind their schedule too: the pool is named, not the generator.
        pytest.param({"lag_p99_ms": 5000.0, "pool_waiting": 400.0, "pool_utilisation": 1.0}, "pool", id="pool"),
        pytest.param({"lag_p99_ms": 5000.0, "service_cpu_cores": 0.95}, "service-cpu", id="service-cpu"),
        pytest.param({"lag_p99_ms": 5000.0, "commit_ms": 120.0}, "commit", id="commit"),
    ],
)
def test_lag_blames_the_generator_only_when_the_service_had_room(stressed: dict[str, float], kind: str) -> None:
    stress = replace(CALM, devices=200, slo_passed=False, **stressed)
    assert diagnose([CALM, stress], None, workers=1).kind == kind


def evidence(roles: dict[str, list[str]], calm: dict[str, float], stressed: dict[str, float]) -> HostEvidence:
    """Host readings: `calm` during the first step (0-10 s), `stressed` during the second (10-20 s), per host."""
    times = np.arange(0.0, 20.5, 1.0)
    found = HostEvidence(roles=roles)
    for host in roles:
        for quantity in calm.keys() | stressed.keys():
            before, after = calm.get(quantity, np.nan), stressed.get(quantity, calm.get(quantity, np.nan))
            found.series.setdefault(host, {})[quantity] = (times, np.where(times < 10, before, after))
    return found


DB_CALM = {"cpu_cores": 4.0, "cpu_busy_cores": 0.5, "mem_available_ratio": 0.6, "swap_pages_per_s": 0.0,
           "db_backends_cpu": 0.2, "db_backends_lock": 0.0, "db_backends_io_wal": 0.0, "db_backends_io_data": 0.0,
           "db_backends_client": 0.1, "db_backends_lwlock": 0.0, "db_backends_other": 0.0,
           "db_wal_sync_ms": 0.5}  # fmt: skip
SEPARATE = {"db": ["database"], "app": ["service"], "load": ["generator"]}
ONE_MACHINE = {"local": ["service", "database", "generator"]}


@pytest.mark.parametrize(
    ("roles", "stressed", "figures", "kind", "opening"),
    [
        pytest.param(SEPARATE, {"db_backends_cpu": 6.0}, {}, "database-cpu",
                     "The database host ran out of CPU", id="backends-queued-for-cpu-under-a-quota"),
        # A CPU-starved server also syncs its WAL late: CPU is named when it is the main thing backends do.
        pytest.param(SEPARATE, {"db_backends_cpu": 0.9, "db_backends_io_wal": 1.2, "db_wal_sync_ms": 16.0}, {},
                     "database-cpu", "The database host ran out of CPU", id="cpu-quota-slows-wal-syncs-too"),
        pytest.param(SEPARATE, {"cpu_busy_cores": 3.9}, {}, "database-cpu",
                     "The database host ran out of CPU", id="database-host-cores-full"),
        pytest.param(SEPARATE, {"db_backends_lock": 4.0}, {"pool_waiting": 30.0, "pool_utilisation": 1.0},
                     "lock-waits", "Writers queued on locks", id="lock-waits-before-the-pool-they-fill"),
        pytest.param(SEPARATE, {"db_backends_io_wal": 3.0, "db_wal_sync_ms": 40.0}, {"commit_ms": 200.0},
                     "database-disk", "Commits waited on the database's disk", id="slow-wal-syncs"),
        pytest.param(SEPARATE, {"db_backends_io_data": 3.0}, {}, "database-disk",
                     "Queries waited on the database's disk", id="data-reads"),
        pytest.param(SEPARATE, {"db_backends_client": 5.0}, {"commit_ms": 60.0}, "network",
                     "The network between the service and the database was the limit", id="network-latency"),
        pytest.param(SEPARATE, {}, {"commit_ms": 60.0}, "network",
                     "The network between the service and the database was the limit",
                     id="network-latency-single-statement-commits"),
        pytest.param(SEPARATE, {"db_backends_other": 3.0}, {"commit_ms": 160.0}, "commit",
                     "Commits slowed first", id="a-busy-database-is-not-the-network"),
        pytest.param(ONE_MACHINE, {"cpu_busy_cores": 3.9, "postgres_cpu_cores": 1.2},
                     {"service_cpu_cores": 0.75, "generator_cpu_cores": 0.8}, "shared-cores",
                     "The machine's cores were shared and full", id="one-machine-full"),
        # `make run` on two cores: PostgreSQL starved of CPU holds its connections longer, so the pool fills; the
        # full machine is the cause, the pool its symptom.
        pytest.param(ONE_MACHINE, {"cpu_busy_cores": 3.9, "postgres_cpu_cores": 1.4},
                     {"service_cpu_cores": 0.74, "generator_cpu_cores": 0.48, "pool_utilisation": 0.74,
                      "pool_waiting": 114.0, "pool_acquire_ms": 267.0, "commit_ms": 13.0}, "shared-cores",
                     "The machine's cores were shared and full", id="one-machine-full-fills-the-pool"),
        pytest.param(SEPARATE, {"mem_available_ratio": 0.01, "swap_pages_per_s": 900.0}, {}, "host-memory",
                     "Host app ran short of memory", id="swapping"),
    ],
)  # fmt: skip
def test_the_hosts_and_the_database_are_named(
    roles: dict[str, list[str]], stressed: dict[str, float], figures: dict[str, float], kind: str, opening: str
) -> None:
    hosts = evidence(roles, DB_CALM, stressed)
    first = replace(CALM, start=0.0, end=10.0)
    stress = replace(CALM, devices=200, start=10.0, end=20.0, slo_passed=False, lag_p99_ms=5000.0, **figures)
    found = diagnose([first, stress], None, workers=1, hosts=hosts)
    assert found.kind == kind, found
    assert found.sentence.startswith(opening), found.sentence
    if kind != "commit":
        assert any(line.startswith("PostgreSQL on ") for line in found.evidence), found.evidence


def test_a_busy_database_is_not_out_of_cpu() -> None:
    # A healthy database at a few hundred commits a second keeps some backends on a CPU (a `fleetbed up` session:
    # none at 1,000 devices, 0.3 at 6,000, its one host 17% busy): busy, not out of CPU; the pool that filled is named.
    hosts = evidence(ONE_MACHINE, {**DB_CALM, "db_backends_cpu": 0.0}, {"db_backends_cpu": 0.3, "cpu_busy_cores": 0.35})
    first = replace(CALM, start=0.0, end=10.0)
    stress = replace(CALM, devices=200, start=10.0, end=20.0, pool_waiting=10.0, pool_utilisation=0.3)
    assert diagnose([first, stress], None, 1, hosts).kind == "pool"


def test_a_database_host_busy_from_the_start_did_not_give_out_in_this_run() -> None:
    # Another tenant of the machine kept its cores full from the first step on; the locks are what changed.
    hosts = evidence(SEPARATE, {**DB_CALM, "cpu_busy_cores": 3.9}, {"db_backends_lock": 4.0})
    first = replace(CALM, start=0.0, end=10.0)
    stress = replace(CALM, devices=200, start=10.0, end=20.0, slo_passed=False, p95_ms=900.0)
    assert diagnose([first, stress], None, 1, hosts).kind == "lock-waits"


def test_a_machine_kept_full_by_others_is_not_the_runs_shared_cores() -> None:
    # The cores were full, but the service, PostgreSQL and the generator used a fraction of them: the generator's
    # queueing is named, not "shared and full".
    hosts = evidence(ONE_MACHINE, {**DB_CALM, "cpu_busy_cores": 3.9}, {"postgres_cpu_cores": 0.3})
    first = replace(CALM, start=0.0, end=10.0)
    stress = replace(CALM, devices=200, start=10.0, end=20.0, slo_passed=False, p50_ms=900.0)
    assert diagnose([first, stress], None, 1, hosts).kind == "generator"


def test_a_generator_whose_cpu_was_not_measured_is_said_so() -> None:
    # A run read back from a Prometheus that kept no CPU figure of the Locust master or its workers.
    first = replace(CALM, start=0.0, end=10.0, generator_cpu_cores=math.nan)
    stress = replace(first, devices=200, start=10.0, end=20.0, slo_passed=False, lag_p99_ms=900.0)
    found = diagnose([first, stress], None, 1)
    assert found.kind == "generator"
    assert "Locust's CPU was not measured and devices ran 900 ms behind schedule" in found.sentence, found.sentence
    assert "nan" not in found.sentence


def test_unknown_names_what_was_not_seen() -> None:
    first = replace(CALM, start=0.0, end=10.0)
    stress = replace(CALM, devices=200, start=10.0, end=20.0, slo_passed=False, p95_ms=900.0)
    hosts = evidence(SEPARATE, DB_CALM, {})
    hosts.unseen = ["host app: node_exporter (no `node` job scrapes it)"]
    found = diagnose([first, stress], None, 1, hosts)
    assert found.kind == "unknown", found
    assert "Not seen: host app: node_exporter" in found.sentence
    assert "not seen: host app: node_exporter (no `node` job scrapes it)" in found.evidence


def test_a_tiny_pool_is_named(tmp_path: Path) -> None:
    args = ["experiment", "--devices", "600", "--step-devices", "200", "--step-seconds", "10s", "--duration", "30s",
            "--interval", "1s", "--slo", "p95=5000, failures=0.2", "--no-prometheus",
            "--out", str(tmp_path / "run")]  # fmt: skip
    done = run_fleetbed(
        args, tmp_path / "data", extra_env={"FLEETBED_POOL_MIN_SIZE": "1", "FLEETBED_POOL_MAX_SIZE": "1"}
    )
    assert (tmp_path / "run" / "summary.json").exists(), done.stderr
    found = bottleneck(tmp_path / "run")
    assert found["kind"] == "pool", found
    assert "pool" in str(found["sentence"])
    # The machine's own figures are in the evidence, PostgreSQL's processes included (the embedded database).
    local = next(line for line in found["evidence"] if str(line).startswith("this machine"))  # type: ignore[attr-defined]
    assert "service, generator, database" in local, local
    assert "PostgreSQL" in local, local
    assert "cores busy of" in local, local


def test_a_saturated_generator_is_named_instead_of_the_service(tmp_path: Path) -> None:
    args = ["experiment", "--devices", "1000", "--devices-per-user", "1000", "--connections-per-user", "1",
            "--duration", "20s", "--interval", "1s", "--no-prometheus", "--out", str(tmp_path / "run")]  # fmt: skip
    done = run_fleetbed(args, tmp_path / "data")
    assert done.returncode == 1, done.stderr  # the default SLO's schedule lag is broken
    found = bottleneck(tmp_path / "run")
    assert found["kind"] == "generator", found
    assert str(found["sentence"]).startswith("The generator was the limit, not the service")


async def test_slow_commits_are_named(pg_url: str, tmp_path: Path) -> None:
    await plant_slow_inserts(pg_url)  # every insert batch sleeps 150 ms
    args = ["experiment", "--devices", "300", "--step-devices", "150", "--step-seconds", "10s", "--duration", "20s",
            "--interval", "1s", "--slo", "p95=5000, failures=0.2", "--no-prometheus",
            "--out", str(tmp_path / "run")]  # fmt: skip
    done = await asyncio.to_thread(run_fleetbed, args, tmp_path / "data", extra_env={"FLEETBED_DATABASE_URL": pg_url})
    assert (tmp_path / "run" / "summary.json").exists(), done.stderr
    found = bottleneck(tmp_path / "run")
    assert found["kind"] == "commit", found
    assert str(found["sentence"]).startswith("Commits slowed first")


def test_a_cpu_heavy_handler_is_named(tmp_path: Path) -> None:
    # 2 ms of CPU per request (the test-only FLEETBED_TEST_HANDLER_CPU_MS): one worker's core is full near 500 req/s.
    args = ["experiment", "--devices", "300", "--step-devices", "100", "--step-seconds", "10s", "--duration", "30s",
            "--interval", "1s", "--slo", "p95=5000, failures=0.2", "--no-prometheus",
            "--out", str(tmp_path / "run")]  # fmt: skip
    done = run_fleetbed(args, tmp_path / "data", extra_env={"FLEETBED_TEST_HANDLER_CPU_MS": "2"})
    assert (tmp_path / "run" / "summary.json").exists(), done.stderr
    found = bottleneck(tmp_path / "run")
    assert found["kind"] == "service-cpu", found
    assert str(found["sentence"]).startswith("Service CPU saturated first")
