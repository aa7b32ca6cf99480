"""A multi-host rehearsal on one machine: the service, the Locust master and two Locust workers each run in their own
network namespace with their own address on a virtual switch (a bridge in a fifth namespace, one veth per host),
as the NixOps network's machines do. The fleet is the real one (`locustfiles/kettle.py`).

The workers run compose.yaml's worker command (the master's service name replaced by its address) and the service
runs two worker processes, as both deployments do. What it proves: workers find the master by address and connect
to it, the load comes from the workers' addresses, the readings they send are stored by the service, the master's
metrics are reachable from another host, and the master records the run with both workers in it.
"""

from __future__ import annotations

import csv
import json
import shutil
import signal
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import OPERATOR_TOKEN
from tests.support.netns import LOCUSTFILE, compose_worker_command, locust, started, virtual_network, wait_for
from tests.support.processes import fleetbed_command

SERVICE_PORT = 8080
MASTER_PORT = 5557
MASTER_METRICS_PORT = 9646
USERS = 8
RUN_NAME = "netns rehearsal"


@pytest.fixture
def data_dir() -> Iterator[Path]:
    # The embedded PostgreSQL runs as its own system user when the suite runs as root: it must reach this dir.
    directory = Path(tempfile.mkdtemp(prefix="fleetbed-netns-"))
    directory.chmod(0o755)
    yield directory
    shutil.rmtree(directory, ignore_errors=True)


def test_service_master_and_workers_on_separate_hosts(data_dir: Path, tmp_path: Path) -> None:
    assert LOCUSTFILE.exists(), "the fleet's locustfile"
    with ExitStack() as stack:
        hosts = stack.enter_context(virtual_network(["service", "master", "worker1", "worker2"]))
        service, master, workers = hosts["service"], hosts["master"], [hosts["worker1"], hosts["worker2"]]
        base = f"http://{service.address}:{SERVICE_PORT}"
        service_env = {
            "FLEETBED_DATA_DIR": str(data_dir),
            "FLEETBED_OPERATOR_TOKEN": OPERATOR_TOKEN,
            "FLEETBED_COMMAND_INTERVAL_S": "1",
            # A private rehearsal network: the service listens beyond loopback, where enrolment is closed by default,
            # and every device of a worker logs in from that worker's one address.
            "FLEETBED_ENROLL_OPEN": "1",
            "FLEETBED_LOGIN_RATE_PER_S": "0",
        }
        serve = service.command(
            *fleetbed_command(), "serve", "--host", service.address, "--port", str(SERVICE_PORT), "--workers", "2"
        )
        stack.enter_context(started(serve, tmp_path / "service.log", service_env, signal.SIGTERM))
        ready = lambda: {"ready"} if master.fetch(f"{base}/readyz")[0] == 200 else set()  # noqa: E731
        wait_for("the service ready, seen from the master's host", ready, {"ready"})

        master_args = [
            "--master", "--master-bind-host", master.address, "--master-bind-port", str(MASTER_PORT),
            "--headless", "-u", str(USERS), "-r", str(USERS), "-t", "15s", "-H", base,
            "--expect-workers", "2", "--expect-workers-max-wait", "90",
            "--device-interval", "1", "--snapshot-interval", "2", "--run-name", RUN_NAME,
            "--prometheus-host", master.address, "--prometheus-port", str(MASTER_METRICS_PORT),
            "--csv", str(tmp_path / "master"), "--only-summary",
        ]  # fmt: skip
        locust_env = {"FLEETBED_OPERATOR_TOKEN": OPERATOR_TOKEN, "PYTHONUNBUFFERED": "1"}
        run = stack.enter_context(
            started(locust(master, *master_args), tmp_path / "master.log", locust_env, signal.SIGINT)
        )
        for worker in workers:
            worker_args = [*compose_worker_command(master.address), "--master-port", str(MASTER_PORT)]
            log = tmp_path / f"{worker.role}.log"
            stack.enter_context(started(locust(worker, *worker_args), log, locust_env, signal.SIGINT))

        worker_addresses = {worker.address for worker in workers}
        wait_for(
            "both workers connected to the master", lambda: master.established_peers(MASTER_PORT), worker_addresses
        )
        load_sources = lambda: service.established_peers(SERVICE_PORT)  # noqa: E731
        wait_for("both workers sending requests to the service", load_sources, worker_addresses)
        # Prometheus on the monitoring host scrapes the master across the network, as this does from the service's.
        status, metrics = service.fetch(f"http://{master.address}:{MASTER_METRICS_PORT}/metrics")
        assert status == 200, metrics
        workers_by_state = {
            sample.labels["state"]: sample.value
            for family in text_string_to_metric_families(metrics)
            for sample in family.samples
            if sample.name == "locust_workers"
        }
        assert sum(workers_by_state.values()) == 2, workers_by_state

        assert run.wait(timeout=120) == 0, (tmp_path / "master.log").read_text(errors="replace")
        posted = measurement_requests(tmp_path / "master_stats.csv")
        assert posted > 0

        status, body = master.fetch(f"{base}/stats", OPERATOR_TOKEN)
        assert status == 200, body
        stats = json.loads(body)
        assert stats["devices"] == USERS
        assert stats["measurements"] == posted, "every reading the workers sent is stored once"

        status, body = master.fetch(f"{base}/runs", OPERATOR_TOKEN)
        runs = [r for r in json.loads(body)["runs"] if r["name"] == RUN_NAME]
        assert len(runs) == 1, body
        assert runs[0]["status"] == "passed", body
        status, body = master.fetch(f"{base}/runs/{runs[0]['id']}", OPERATOR_TOKEN)
        snapshots = json.loads(body)["snapshots"]
        assert max(snapshot["stats"]["workers"] for snapshot in snapshots) == 2, body


def measurement_requests(stats_csv: Path) -> int:
    """POST /measurement requests in Locust's final stats, after checking that no request failed."""
    with open(stats_csv, newline="") as handle:
        rows = {(row["Type"], row["Name"]): row for row in csv.DictReader(handle)}
    assert int(rows[("", "Aggregated")]["Failure Count"]) == 0, rows
    return int(rows[("POST", "/measurement")]["Request Count"])
