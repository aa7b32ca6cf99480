"""Master + 2 workers on loopback: the fleet is split between the workers, and the master's totals, metrics (its
CPU and its workers' included), SLO verdict and run record agree with what the service counted."""

from __future__ import annotations

import asyncio
import json
from collections import defaultdict
from contextlib import ExitStack
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from app.slo import Window, whole
from tests.support.db import fetch, scalar
from tests.support.fleet import fleet_args, running_locust, running_service, scrape
from tests.support.processes import free_port


def family_samples(text: str, name: str) -> list[tuple[dict[str, str], float]]:
    return [
        (sample.labels, sample.value)
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name
    ]


async def test_master_and_two_workers_report_correct_totals(pg_url: str, tmp_path: Path) -> None:
    master_port, metrics_port = free_port(), free_port()
    with running_service(pg_url, tmp_path / "service") as service:
        master_args = fleet_args(service, "-u", "6", "-r", "6", "-t", "14s", "--slo", "failures=0.01")
        master_args += ["--master", "--master-bind-host", "127.0.0.1", "--master-bind-port", str(master_port)]
        master_args += ["--expect-workers", "2", "--prometheus-port", str(metrics_port), "--csv", str(tmp_path / "run")]
        worker_args = ["--master-host", "127.0.0.1", "--master-port", str(master_port), "--device-interval", "1"]
        with ExitStack() as processes:
            master = processes.enter_context(running_locust(master_args, tmp_path, "master"))
            workers = [
                processes.enter_context(running_locust(worker_args, tmp_path, f"worker{n}", worker=True))
                for n in range(2)
            ]
            await asyncio.sleep(9)
            generator = scrape(f"http://127.0.0.1:{metrics_port}/metrics")
            assert master.wait() == 0, master.output
            for worker in workers:
                assert worker.wait(30) == 0, worker.output
        served = scrape(f"{service.url}/metrics")

    assert sum(value for _, value in family_samples(generator, "locust_workers")) == 2
    assert family_samples(generator, "locust_users") == [({}, 6.0)]
    # The generator's CPU, for a verdict read back from Prometheus: the master's own, and its workers' as reported.
    assert family_samples(generator, "process_cpu_seconds_total")[0][1] > 0
    for name in ("fleetbed_generator_busiest_worker_cpu_cores", "fleetbed_generator_workers_cpu_cores"):
        assert [value >= 0 for _, value in family_samples(generator, name)] == [True], name
    assert "overall: PASS" in master.output

    by_route: dict[tuple[str, str], float] = defaultdict(float)
    for labels, value in family_samples(served, "fleetbed_http_requests_total"):
        by_route[labels["method"], labels["route"]] += value
    stats = master.stats()
    generated: dict[tuple[str, str], int] = defaultdict(int)
    for (method, name), row in stats.items():
        if method in ("GET", "POST"):
            generated[method, name.split(" ")[0]] += row["num_requests"]
    assert generated[("GET", "/command")] > 12
    for key, count in generated.items():
        assert by_route[key] == count, f"{key}: Locust {count}, service {by_route[key]}"

    # The fleet's own figures come from both workers' reports: every served slot is one cycle, and every cycle of
    # a logged-in device polls once, so the master's served slots match the polls the service answered.
    windows = [Window.from_json(one) for one in json.loads((tmp_path / "run_windows.json").read_text())["windows"]]
    slots = whole(windows, "judged").slots.plus(whole(windows, "warmup").slots)
    assert slots.due - slots.given_up == generated[("GET", "/command")], (slots, generated)
    assert {method for method, _ in stats} <= {"GET", "POST"}, "lag and given-up slots are not requests"

    assert await scalar(pg_url, "SELECT count(*) FROM device") == 6
    run = (await fetch(pg_url, "SELECT status, summary FROM run"))[0]
    assert run["status"] == "passed"
    snapshot_workers = await fetch(pg_url, "SELECT (stats->>'workers')::int AS workers FROM run_snapshot")
    assert max(row["workers"] for row in snapshot_workers) == 2
    assert json.loads(run["summary"])["peak_devices"] == 6
