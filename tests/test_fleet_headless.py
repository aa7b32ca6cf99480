"""The kettle fleet against the real service (fleetbed serve on a test database), headless, as users run it:
every shape, the SLO verdict and exit code, run records, the generator's /metrics, outages and re-login."""

from __future__ import annotations

import asyncio
import csv
import json
import re
import time
from contextlib import ExitStack
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from app.slo import Window, whole
from tests.support.db import fetch, scalar
from tests.support.fleet import LocustProcess, fleet_args, running_locust, running_service, scrape
from tests.support.processes import free_port


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


FLEET_ROUTES = {"/login", "/command", "/measurement"}


def aggregated_requests(locust: LocustProcess) -> int:
    """The request count of Locust's Aggregated row at the end: the sum over every entry of its final stats (the
    CSV's copy of that row is written once a second, so it can miss the last requests)."""
    return sum(int(entry["num_requests"]) for entry in locust.stats().values())


def fleet_requests_answered(service_metrics: dict[tuple[str, tuple[tuple[str, str], ...]], float]) -> int:
    """The service's own count of the requests it answered on the fleet's routes."""
    return int(
        sum(
            value
            for (name, labels), value in service_metrics.items()
            if name == "fleetbed_http_requests_total" and dict(labels)["route"] in FLEET_ROUTES
        )
    )


async def test_constant_fleet_meets_its_slo_and_is_recorded(pg_url: str, tmp_path: Path) -> None:
    metrics_port = free_port()
    with running_service(pg_url, tmp_path / "service") as service:
        args = fleet_args(service, "-u", "6", "-r", "6", "-t", "14s", "--run-name", "constant six")
        args += ["--slo", "p95=2000, p99[/command]=3000, failures=0.01, lag_p99=1000"]
        args += ["--prometheus-port", str(metrics_port), "--csv", str(tmp_path / "run")]
        with running_locust(args, tmp_path) as locust:
            await asyncio.sleep(8)
            metrics = samples(scrape(f"http://127.0.0.1:{metrics_port}/metrics"))
            assert locust.wait() == 0, locust.output
        served = samples(scrape(f"{service.url}/metrics"))
    assert "overall: PASS" in locust.output
    # Locust's Aggregated row, what its users look at first, counts exactly the HTTP requests the service answered.
    assert aggregated_requests(locust) == fleet_requests_answered(served) > 6

    assert metrics[("locust_users", ())] == 6
    assert metrics[("fleetbed_generator_devices", ())] == 6
    assert metrics[("locust_requests_total", (("method", "GET"), ("name", "/command")))] > 6
    assert metrics[("locust_failures_total", (("method", "GET"), ("name", "/command")))] == 0
    command_count = metrics[("locust_request_duration_seconds_count", (("method", "GET"), ("name", "/command")))]
    infinity_bucket = ("le", "+Inf"), ("method", "GET"), ("name", "/command")
    assert metrics[("locust_request_duration_seconds_bucket", infinity_bucket)] == command_count
    assert metrics[("fleetbed_generator_schedule_lag_seconds_count", ())] > 6
    assert ("locust_requests_total", (("method", "LAG"), ("name", "schedule lag"))) not in metrics
    assert metrics[("fleetbed_generator_slots_total", ())] > 6
    assert metrics[("fleetbed_generator_missed_slots_total", ())] == 0
    assert metrics[("fleetbed_generator_backlog_readings", ())] >= 0
    # The live figures: the last 10 s (exact percentiles, not bucket bounds), the open window's SLO so far.
    assert 0 < metrics[("fleetbed_generator_recent_request_seconds", (("quantile", "0.95"),))] < 2
    assert metrics[("fleetbed_generator_recent_requests_per_second", ())] > 1
    assert ("fleetbed_generator_recent_schedule_lag_seconds", (("quantile", "0.99"),)) in metrics
    assert metrics[("fleetbed_generator_window_slo_met", ())] == 1
    with (tmp_path / "run_fleet_history.csv").open() as history:
        rows = list(csv.DictReader(history))
    assert len(rows) >= 8
    assert max(int(row["Slots due"]) for row in rows) >= 6 * 8

    runs = await fetch(pg_url, "SELECT id, name, status, finished_at, config, summary FROM run")
    assert len(runs) == 1
    run = runs[0]
    assert (run["name"], run["status"]) == ("constant six", "passed")
    assert run["finished_at"] is not None
    summary = json.loads(run["summary"])
    assert summary["passed"] is True
    assert summary["peak_devices"] == 6
    snapshots = await scalar(pg_url, "SELECT count(*) FROM run_snapshot WHERE run_id = $1", run["id"])
    assert snapshots >= 4, "one every 2 s plus the final one"

    stats = locust.stats()
    posted = stats[("POST", "/measurement")]["num_requests"]
    assert await scalar(pg_url, "SELECT count(*) FROM device") == 6
    assert await scalar(pg_url, "SELECT count(*) FROM measurement") == posted
    models = await fetch(pg_url, "SELECT DISTINCT metadata->>'model' AS model FROM device")
    assert all(row["model"].startswith("KT-") for row in models)


async def test_slo_below_reality_fails_the_run(pg_url: str, tmp_path: Path) -> None:
    with running_service(pg_url, tmp_path / "service") as service:
        args = fleet_args(service, "-u", "3", "-r", "3", "-t", "6s", "--slo", "p50=0.001, failures=0.5")
        with running_locust(args, tmp_path) as locust:
            assert locust.wait() == 1, locust.output
    assert "FAIL  p50" in locust.output
    assert "PASS  failures" in locust.output
    assert await scalar(pg_url, "SELECT status FROM run") == "failed"


async def test_step_ramp_adds_devices_every_step(pg_url: str, tmp_path: Path) -> None:
    with running_service(pg_url, tmp_path / "service") as service:
        args = fleet_args(service, "--shape", "step", "--step-users", "2", "--step-seconds", "4", "-t", "15s")
        with running_locust(args, tmp_path) as locust:
            assert locust.wait() == 0, locust.output
    rows = await fetch(pg_url, "SELECT (stats->>'users')::int AS users FROM run_snapshot ORDER BY time")
    users = [row["users"] for row in rows][:-1]  # the last one is sent after the users stopped; 8 run from 12 s to 15 s
    assert users == sorted(users), users
    assert users[-1] == 8
    assert len(set(users)) >= 3
    assert await scalar(pg_url, "SELECT count(*) FROM device") >= 6


async def test_ramp_until_failure_stops_and_reports_the_capacity(pg_url: str, tmp_path: Path) -> None:
    """The service dies early in the third step: the ramp stops after two failed checks, capacity 4 users."""
    with ExitStack() as service_lifetime:
        service = service_lifetime.enter_context(running_service(pg_url, tmp_path / "service"))
        args = fleet_args(service, "--shape", "until-failure", "--step-users", "2", "--step-seconds", "4")
        args += ["--failure-checks", "2", "--slo", "failures=0.05", "-t", "90s"]
        with running_locust(args, tmp_path) as locust:
            while await scalar(pg_url, "SELECT count(*) FROM device") < 5:  # the third step has begun
                assert locust.process.poll() is None, locust.output
                await asyncio.sleep(0.1)
            service_lifetime.close()
            started = time.monotonic()
            assert locust.wait() == 0, locust.output
            assert time.monotonic() - started < 30, "stopped by the SLO, long before --run-time"
    assert "capacity: 4 devices" in locust.output, locust.output
    windows = re.findall(r"window \d+: (\d+) devices, .*: (met|BROKEN)", locust.output)
    assert windows == [("2", "met"), ("4", "met"), ("6", "BROKEN"), ("8", "BROKEN")], locust.output


async def test_devices_buffer_through_an_outage_and_log_in_again(pg_url: str, tmp_path: Path) -> None:
    """The service goes away for a few seconds and comes back with a new signing key: every device keeps its
    readings, uploads them as a backlog array, and logs in again after its old token is refused."""
    port = free_port()
    args = ["-u", "4", "-r", "4", "-t", "20s", "--slo", "lag_p99=1000"]
    with ExitStack() as first_lifetime:
        first_service = running_service(pg_url, tmp_path / "one", port, FLEETBED_SECRET="a" * 40)
        first = first_lifetime.enter_context(first_service)
        with running_locust(fleet_args(first, *args), tmp_path) as locust:
            await asyncio.sleep(6)
            first_lifetime.close()
            await asyncio.sleep(4)
            with running_service(pg_url, tmp_path / "two", port, FLEETBED_SECRET="b" * 40):
                assert locust.wait() == 0, locust.output
    stats = locust.stats()
    assert stats[("POST", "/measurement (backlog)")]["num_requests"] >= 4
    assert stats[("POST", "/login")]["num_requests"] >= 8, "every device logged in twice"
    assert stats[("POST", "/login")]["num_failures"] == 0, "each proved itself with the secret it got first"
    gaps = await fetch(
        pg_url,
        """
        SELECT device_id, max(gap) AS widest FROM (
            SELECT device_id, time - lag(time) OVER (PARTITION BY device_id ORDER BY time) AS gap FROM measurement
        ) g GROUP BY device_id
        """,
    )
    assert len(gaps) == 4
    assert all(row["widest"].total_seconds() < 2.5 for row in gaps), "no reading lost during the outage"


async def test_grouped_devices_keep_their_own_identity(pg_url: str, tmp_path: Path) -> None:
    """Three devices per user served by two connections, both HTTP clients: six devices, each with its own
    readings."""
    for client in ("lean", "fasthttp"):
        await scalar(pg_url, "TRUNCATE measurement, device_state, device CASCADE")
        with running_service(pg_url, tmp_path / f"service-{client}") as service:
            args = fleet_args(service, "-u", "2", "-r", "2", "-t", "7s", "--devices-per-user", "3")
            args += ["--connections-per-user", "2", "--slo", "failures=0", "--http-client", client]
            with running_locust(args, tmp_path, f"locust-{client}") as locust:
                assert locust.wait() == 0, locust.output
        stats = locust.stats()
        assert stats[("POST", "/login")]["num_requests"] == 6
        assert await scalar(pg_url, "SELECT count(*) FROM device") == 6
        per_device = await fetch(pg_url, "SELECT device_id, count(*) AS readings FROM measurement GROUP BY device_id")
        assert len(per_device) == 6
        assert all(row["readings"] >= 3 for row in per_device), per_device
        assert sum(row["readings"] for row in per_device) == stats[("POST", "/measurement")]["num_requests"]


async def test_a_slow_service_shows_as_schedule_lag_not_a_lower_rate(pg_url: str, tmp_path: Path) -> None:
    """Eight devices on one connection against a service that takes 200 ms per request: the one worker can run
    about 2.5 of the 8 cycles planned per second. The shortfall must show as lag and as slots given up (never as
    a quietly lower rate), and a lag objective must fail the run."""
    await scalar(pg_url, "TRUNCATE measurement, device_state, device CASCADE")
    with running_service(pg_url, tmp_path / "service", FLEETBED_TEST_HANDLER_CPU_MS="200") as service:
        args = fleet_args(service, "-u", "1", "-r", "1", "-t", "8s", "--devices-per-user", "8")
        args += ["--connections-per-user", "1", "--slo", "lag_p99=250", "--no-run-record"]
        args += ["--csv", str(tmp_path / "run")]
        with running_locust(args, tmp_path) as locust:
            assert locust.wait() == 1, locust.output
        served = samples(scrape(f"{service.url}/metrics"))
    assert "FAIL  lag_p99=" in locust.output
    assert "overall: FAIL" in locust.output
    assert {method for method, _ in locust.stats()} <= {"GET", "POST"}, "lag and given-up slots are not requests"
    # Locust's Aggregated row counts HTTP requests only: here all but the one that may be in flight on the one
    # connection when the run stopped (the service answers it, Locust no longer reports it).
    assert 0 <= fleet_requests_answered(served) - aggregated_requests(locust) <= 1
    windows = [Window.from_json(one) for one in json.loads((tmp_path / "run_windows.json").read_text())["windows"]]
    slots = whole(windows, "judged").slots.plus(whole(windows, "warmup").slots)
    assert max(slots.lag) > 1000, "cycles started more than an interval late"
    assert slots.given_up > 0, "slots given up are counted"
    assert slots.due - slots.given_up < 30, "the worker could not serve more"
    assert slots.due >= 8 * 5, "yet the plan kept its rate: served + given up"


async def test_a_killed_run_still_leaves_its_windows(pg_url: str, tmp_path: Path) -> None:
    """The windows file is rewritten during the test, so even SIGKILL leaves the figures judged so far."""
    with running_service(pg_url, tmp_path / "service") as service:
        args = fleet_args(service, "-u", "2", "-r", "2", "-t", "60s", "--no-run-record", "--csv", str(tmp_path / "run"))
        with running_locust(args, tmp_path) as locust:
            await asyncio.sleep(13)  # rewritten at the first sample, then every 5 s: with a judged part by now
            locust.process.kill()
            locust.process.wait()
    document = json.loads((tmp_path / "run_windows.json").read_text())
    assert document["provisional"] is True
    windows = [Window.from_json(one) for one in document["windows"]]
    assert [window.devices for window in windows] == [2]
    assert windows[0].judged.request_count() > 0
