"""A monitored run on one machine, as the monitoring tests need it: the real service (two workers) on a fresh
database, a short Locust load, node_exporter, postgres_exporter and a real Prometheus scraping all of them every
second with the shipped recording and alert rules. Started once per test session; the load stops after `LOAD_S`
seconds of scraping (tests query at `loaded_at`), the rest stays up until the session ends.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from app.stack.exporters import (
    NODE_EXPORTER,
    POSTGRES_EXPORTER,
    exporter_dsn,
    node_exporter_args,
    postgres_exporter_args,
)
from app.stack.processes import stop
from app.stack.prometheus_server import (
    INSTALL_HINT,
    LocalPrometheus,
    ScrapeTargets,
    prometheus_binary,
    write_local_config,
)
from tests.support import postgres as pg
from tests.support.processes import free_port, running_fleetbed
from tests.support.requirements import installed, missing

REPO = Path(__file__).resolve().parents[2]
LOCUSTFILE = REPO / "locustfiles" / "kettle.py"
SERVICE_WORKERS = 2
LOCUST_USERS = 20
LOAD_S = 15.0
OPERATOR_TOKEN = "operator-token-for-monitoring-tests"


@dataclass(frozen=True)
class MonitoredStack:
    prometheus_url: str
    service_url: str
    started_at: float
    scraped_since: float  # every target has been scraped every second since then
    loaded_at: float  # the end of the load: every series the load makes exists at this time
    locust_up: bool
    workdir: Path


def prometheus_query(prometheus_url: str, expr: str, at: float | None = None) -> list[dict[str, Any]]:
    """Instant query; the result vector (raises AssertionError with Prometheus's message on an error)."""
    params = {"query": expr, **({"time": f"{at:.3f}"} if at is not None else {})}
    url = f"{prometheus_url}/api/v1/query?{urllib.parse.urlencode(params)}"
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            body = json.load(response)
    except urllib.error.HTTPError as exc:
        body = json.load(exc)
        exc.close()
    if body.get("status") != "success":
        raise AssertionError(f"{expr}: {body.get('error')}")
    result: list[dict[str, Any]] = body["data"]["result"]
    return result


@contextmanager
def background(args: list[str], log: Path, env: dict[str, str] | None = None) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("wb") as output:
        process = subprocess.Popen(
            args, stdout=output, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env={**os.environ, **(env or {})}
        )
    try:
        yield process
    finally:
        stop(process, 10)


def wait_for(prometheus_url: str, exprs: list[str], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        pending = [expr for expr in exprs if not prometheus_query(prometheus_url, expr)]
        if not pending:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"no series after {timeout_s} s for: {pending}")
        time.sleep(0.5)


@pytest.fixture(scope="session")
def monitored_stack(postgres_server: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[MonitoredStack]:
    if prometheus_binary() is None:
        missing(INSTALL_HINT)
    node_exporter = installed(*NODE_EXPORTER)
    postgres_exporter = installed(*POSTGRES_EXPORTER)
    workdir = tmp_path_factory.mktemp("monitored")
    database_url = asyncio.run(pg.fresh_database(postgres_server))
    ports = {name: free_port() for name in ("service", "locust", "node", "postgres", "prometheus")}
    service_url = f"http://127.0.0.1:{ports['service']}"
    try:
        with ExitStack() as stack:
            service_env = {
                "FLEETBED_DATABASE_URL": database_url,
                "FLEETBED_DATA_DIR": str(workdir / "data"),
                "FLEETBED_PORT": str(ports["service"]),
                "FLEETBED_WORKERS": str(SERVICE_WORKERS),
                "FLEETBED_OPERATOR_TOKEN": OPERATOR_TOKEN,
                "FLEETBED_COMMAND_INTERVAL_S": "1",
                "FLEETBED_LOGIN_RATE_PER_S": "0",  # the whole fleet logs in from one address
            }
            stack.enter_context(running_fleetbed(["serve", "--no-migrate"], service_env, ports["service"]))
            stack.enter_context(
                background(
                    node_exporter_args(node_exporter, f"127.0.0.1:{ports['node']}"),
                    workdir / "node-exporter.log",
                )
            )  # fmt: skip
            stack.enter_context(
                background(
                    postgres_exporter_args(postgres_exporter, f"127.0.0.1:{ports['postgres']}"),
                    workdir / "postgres-exporter.log",
                    {"DATA_SOURCE_NAME": exporter_dsn(database_url)},
                )
            )
            locust_target = None
            if LOCUSTFILE.exists():
                locust_target = f"127.0.0.1:{ports['locust']}"
                locust = stack.enter_context(
                    background(
                        [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless", "-H", service_url,
                         "-u", str(LOCUST_USERS), "-r", str(LOCUST_USERS), "--run-time", "180s",
                         "--device-interval", "1", "--no-run-record", "--only-summary",
                         "--prometheus-port", str(ports["locust"])],
                        workdir / "locust.log",
                        {"FLEETBED_OPERATOR_TOKEN": OPERATOR_TOKEN, "PYTHONUNBUFFERED": "1"},
                    )
                )  # fmt: skip
            targets = ScrapeTargets(
                service=[f"127.0.0.1:{ports['service']}"],
                locust=locust_target,
                node=f"127.0.0.1:{ports['node']}",
                postgres=f"127.0.0.1:{ports['postgres']}",
            )
            config = write_local_config(workdir / "prometheus.yml", targets, scrape_interval_s=1)
            prometheus = stack.enter_context(LocalPrometheus(config, workdir / "tsdb", ports["prometheus"]))
            started_at = time.time()
            wait_for(prometheus.url, ['up{job="fleetbed"} == 1', 'up{job="node"} == 1', 'up{job="postgres"} == 1'], 60)
            scraped_since = time.time()
            wait_for(prometheus.url, ["sum(fleetbed_readings_stored_total) > 0"], 60)
            locust_up = False
            if locust_target is not None:
                try:
                    wait_for(prometheus.url, ["sum(locust_requests_total) > 0"], 45)
                    locust_up = True
                except AssertionError:
                    print((workdir / "locust.log").read_text(errors="replace")[-3000:], file=sys.stderr)
            # Rates and quantiles over [1m] need a few samples, recording rules a few evaluations after them.
            time.sleep(max(0.0, scraped_since + LOAD_S - time.time()))
            # The load stops here so the rest of the session runs on a quiet machine; tests query at `loaded_at`.
            loaded_at = time.time()
            if locust_target is not None:
                locust.terminate()
            yield MonitoredStack(prometheus.url, service_url, started_at, scraped_since, loaded_at, locust_up, workdir)
    finally:
        asyncio.run(pg.drop_database(postgres_server, database_url))
