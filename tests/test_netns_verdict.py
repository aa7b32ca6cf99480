"""The verdict for a deployed network, on the multi-host rehearsal: a database host (Debian's PostgreSQL 15 with
node_exporter and postgres_exporter), a service host (the service, node_exporter, and the link to the database
through a proxy that can delay it), a monitoring host (Prometheus scraping them all every second), a Locust master
and two workers, each in its own network namespace with its own address.

- A run started through the Locust web UI's own HTTP API (POST /swarm, twice: a ramp by hand) is reported by
  `fleetbed report --prometheus --run latest` from Prometheus and the run record alone, steps included.
- One planted bottleneck per kind the database host can have, each driven by `fleetbed experiment --target` from
  the master's host and planted when the second step begins, must be named:
  the database's CPU (PostgreSQL confined to one core by a cgroup v1 cpuset, with three endless CPU-bound queries
  beside the service's: a CPU quota alone does not show, because a throttled backend that has its next statement
  waiting still reports ClientRead, as if the network were slow), its WAL syncs (a cgroup v1 blkio limit of
  write IOPS on the disk under the data directory: WAL flushes are fdatasync calls made by the backends
  themselves, so the limit applies to them), lock contention (a session holding every device state row for 3 s at a
  time) and network latency (20 ms each way added by the service host's proxy; no `tc netem` on this kernel).
- The four plants of one machine (tests/test_diagnosis.py), driven the same way and planted from the start: a
  one-connection pool and 2 ms of CPU per request (a service with those settings beside the rehearsal's), an insert
  trigger sleeping 150 ms (commits), and a thousand devices sharing one HTTP connection (the generator). With the
  four above: eight plants, each named.
- `fleetbed experiment --target --master --expect-workers 2` on the master's host, with Locust workers on two other
  hosts: the run waits for both, both send the load, and it ends with a verdict.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager, suppress
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
from tests.conftest import OPERATOR_TOKEN
from tests.support.db import SLOW_INSERTS, SLOW_INSERTS_OFF
from tests.support.netns import Host, compose_worker_command, locust, started, virtual_network, wait_for
from tests.support.processes import fleetbed_command
from tests.support.requirements import installed, missing

pytestmark = pytest.mark.slow

PG_BIN = Path("/usr/lib/postgresql/15/bin")
ROLES = ["database", "service", "monitor", "master", "worker1", "worker2"]
PROXY_PORT = 6432
SERVICE_PORT = 8080
PLANT_SERVICE_PORT = 8081
DELAY_MS = 20
BUSY_SESSIONS = 3
WAL_WRITE_IOPS = 10
STEP_DEVICES = 100
UI_RUN = "web ui rehearsal"
MASTER_PORT = 5557

POST_FORM = """
import json, sys, urllib.parse, urllib.request
data = urllib.parse.urlencode(json.loads(sys.argv[2])).encode()
with urllib.request.urlopen(urllib.request.Request(sys.argv[1], data=data), timeout=10) as response:
    print(response.read().decode())
"""


@dataclass(frozen=True)
class Rehearsal:
    hosts: dict[str, Host]
    service_url: str
    prometheus_url: str
    database_url: str  # direct, from any host
    data_dir: Path
    proxy: subprocess.Popen[bytes]
    workdir: Path
    service_env: dict[str, str]

    def postgres_pids(self) -> list[int]:
        """PostgreSQL's processes but the exporter's own backend (it connects from the database host itself): the
        instrument stays outside the plant, or a starved exporter would see nothing at all."""
        exporter_backend = f" {self.hosts['database'].address}("
        listed = subprocess.run(
            ["ip", "netns", "pids", self.hosts["database"].namespace], capture_output=True, text=True, check=True
        ).stdout.split()
        pids = []
        for pid in listed:
            with suppress(OSError):
                command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
                if Path(f"/proc/{pid}/comm").read_text().strip() == "postgres" and exporter_backend not in command:
                    pids.append(int(pid))
        return pids


def wait_until(what: str, check: object, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout_s:g} s: {what}")
        time.sleep(0.5)


def prometheus_config(hosts: dict[str, Host]) -> str:
    jobs = {
        "fleetbed": [f"{hosts['service'].address}:{SERVICE_PORT}"],
        "locust": [f"{hosts['master'].address}:9646"],
        "node": [f"{hosts['database'].address}:9100", f"{hosts['service'].address}:9100"],
        "postgres": [f"{hosts['database'].address}:9187"],
    }
    lines = ["global:", "  scrape_interval: 1s", "  evaluation_interval: 1s", "scrape_configs:"]
    for job, targets in jobs.items():
        lines += [f"  - job_name: {job}", "    static_configs:", f"      - targets: {json.dumps(targets)}"]
    return "\n".join(lines) + "\n"


@contextmanager
def serving(hosts: dict[str, Host], port: int, env: dict[str, str], log: Path) -> Iterator[str]:
    """The service on the service host at `port` with `env`, ready; yields its URL."""
    service = hosts["service"]
    serve = service.command(*fleetbed_command(), "serve", "--host", service.address, "--port", str(port))
    with started(serve, log, env, signal.SIGTERM):
        url = f"http://{service.address}:{port}"
        ready = lambda: {"ready"} if hosts["master"].fetch(f"{url}/readyz")[0] == 200 else set()  # noqa: E731
        wait_for(f"the service on port {port} ready", ready, {"ready"})
        yield url


@pytest.fixture(scope="module")
def rehearsal() -> Iterator[Rehearsal]:
    for tool in ("initdb", "postgres", "pg_isready", "createdb"):
        if not (PG_BIN / tool).exists():
            missing(f"PostgreSQL 15 server binaries are not installed ({PG_BIN / tool}): apt-get install postgresql-15")
    node_exporter = installed(*NODE_EXPORTER)
    postgres_exporter = installed(*POSTGRES_EXPORTER)
    prometheus = installed("prometheus")
    for controller in ("cpuset", "blkio"):
        if not Path(f"/sys/fs/cgroup/{controller}/cgroup.procs").exists():
            missing(
                f"the planted bottlenecks need the cgroup v1 {controller} controller at /sys/fs/cgroup/{controller}"
            )
    workdir = Path(tempfile.mkdtemp(prefix="fleetbed-netns-verdict-"))
    workdir.chmod(0o755)
    try:
        with ExitStack() as stack:
            hosts = stack.enter_context(virtual_network(ROLES))
            database, service, monitor = hosts["database"], hosts["service"], hosts["monitor"]
            pg_data = workdir / "pg"
            pg_data.mkdir()
            shutil.chown(pg_data, "postgres", "postgres")
            pg_data.chmod(0o700)
            subprocess.run(
                ["runuser", "-u", "postgres", "--", str(PG_BIN / "initdb"), "-D", str(pg_data), "-U", "postgres",
                 "--auth=trust"], check=True, capture_output=True, cwd="/",
            )  # fmt: skip
            with (pg_data / "pg_hba.conf").open("a") as hba:
                hba.write(f"host all all {database.address.rsplit('.', 1)[0]}.0/24 trust\n")
            postgres_command = database.command(
                "runuser", "-u", "postgres", "--", str(PG_BIN / "postgres"), "-D", str(pg_data),
                "-c", f"listen_addresses={database.address}", "-c", "port=5432",
                "-c", f"unix_socket_directories={pg_data}", "-c", "track_wal_io_timing=on", "-c", "max_connections=100",
            )  # fmt: skip
            stack.enter_context(started(postgres_command, workdir / "postgres.log", {}, signal.SIGTERM))
            ready = [str(PG_BIN / "pg_isready"), "-h", database.address, "-p", "5432", "-U", "postgres"]
            wait_until(
                "PostgreSQL ready", lambda: subprocess.run(database.command(*ready), check=False).returncode == 0
            )
            database.run(str(PG_BIN / "createdb"), "-h", database.address, "-U", "postgres", "fleetbed")
            database_url = f"postgresql://postgres@{database.address}:5432/fleetbed"

            # The exporters as `fleetbed up` runs them (app.stack.exporters), each on its host's address.
            for host in (database, service):
                command = host.command(*node_exporter_args(node_exporter, f"{host.address}:9100"))
                stack.enter_context(started(command, workdir / f"node-{host.role}.log", {}, signal.SIGTERM))
            exporter = database.command(*postgres_exporter_args(postgres_exporter, f"{database.address}:9187"))
            exporter_env = {"DATA_SOURCE_NAME": exporter_dsn(database_url)}
            stack.enter_context(started(exporter, workdir / "postgres-exporter.log", exporter_env, signal.SIGTERM))

            proxy_command = service.command(
                sys.executable, "-m", "tests.support.delay_proxy", "127.0.0.1", str(PROXY_PORT), database.address,
                "5432", str(DELAY_MS),
            )  # fmt: skip
            proxy = stack.enter_context(started(proxy_command, workdir / "proxy.log", {}, signal.SIGTERM))
            data_dir = workdir / "service-data"
            data_dir.mkdir()
            service_env: dict[str, str] = {
                "FLEETBED_DATA_DIR": str(data_dir),
                "FLEETBED_OPERATOR_TOKEN": OPERATOR_TOKEN,
                "FLEETBED_COMMAND_INTERVAL_S": "1",
                # A private rehearsal network: the service listens beyond loopback, where enrolment is closed by
                # default, and every device of a worker logs in from that worker's one address.
                "FLEETBED_ENROLL_OPEN": "1",
                "FLEETBED_LOGIN_RATE_PER_S": "0",
                "FLEETBED_DATABASE_URL": f"postgresql://postgres@127.0.0.1:{PROXY_PORT}/fleetbed",
            }
            service_url = stack.enter_context(serving(hosts, SERVICE_PORT, service_env, workdir / "service.log"))

            config = workdir / "prometheus.yml"
            config.write_text(prometheus_config(hosts))
            prometheus_command = monitor.command(
                prometheus, f"--config.file={config}", f"--storage.tsdb.path={workdir / 'tsdb'}",
                f"--web.listen-address={monitor.address}:9090",
            )  # fmt: skip
            stack.enter_context(started(prometheus_command, workdir / "prometheus.log", {}, signal.SIGTERM))
            prometheus_url = f"http://{monitor.address}:9090"

            def targets_up() -> set[str]:
                status, body = hosts["master"].fetch(f"{prometheus_url}/api/v1/query?query=up%3D%3D1")
                if status != 200:
                    return set()
                return {item["metric"]["job"] for item in json.loads(body)["data"]["result"]}

            wait_for("Prometheus scraping the service and both exporters", targets_up, {"fleetbed", "node", "postgres"})
            yield Rehearsal(hosts, service_url, prometheus_url, database_url, data_dir, proxy, workdir, service_env)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


@contextmanager
def cgroup(controller: str, settings: dict[str, str], pids: list[int]) -> Iterator[None]:
    """A cgroup v1 group of `controller` with `settings`, holding `pids` (and what they fork) until the block ends."""
    group = Path(f"/sys/fs/cgroup/{controller}/fleetbed-plant-{os.getpid()}")
    group.mkdir()
    try:
        for name, value in settings.items():
            (group / name).write_text(value)
        for pid in pids:
            with suppress(ProcessLookupError, OSError):
                (group / "cgroup.procs").write_text(str(pid))
        yield
    finally:
        held = (group / "cgroup.procs").read_text().split()
        stat = (group / "cpu.stat").read_text() if (group / "cpu.stat").exists() else ""
        print(f"cgroup {controller}: {len(pids)} pids planted, {len(held)} held at the end; {stat}")
        for left in held:
            with suppress(ProcessLookupError, OSError):
                Path(f"/sys/fs/cgroup/{controller}/cgroup.procs").write_text(left)
        group.rmdir()


def disk_of(path: Path) -> str:
    """`major:minor` of the whole disk holding `path` (a partition's limits go on its disk in cgroup v1)."""
    device = os.stat(path).st_dev
    node = Path(f"/sys/dev/block/{os.major(device)}:{os.minor(device)}").resolve()
    if (node / "partition").exists():
        node = node.parent
    if not (node / "dev").exists():
        missing(f"{path} is not on a block device (tmpfs or overlay): the WAL plant needs one")
    return (node / "dev").read_text().strip()


@contextmanager
def planted(kind: str, rehearsal: Rehearsal) -> Iterator[None]:
    if kind == "database-cpu":
        # PostgreSQL confined to one core, with heavy queries running beside the service's on it.
        with cgroup("cpuset", {"cpuset.cpus": "0", "cpuset.mems": "0"}, rehearsal.postgres_pids()):
            hogs = rehearsal.hosts["master"].command(
                sys.executable, "-m", "tests.support.busy_sessions", rehearsal.database_url, str(BUSY_SESSIONS)
            )
            with started(hogs, rehearsal.workdir / "busy-sessions.log", {}, signal.SIGTERM):
                yield
    elif kind == "database-disk":
        limit = {"blkio.throttle.write_iops_device": f"{disk_of(rehearsal.workdir / 'pg')} {WAL_WRITE_IOPS}"}
        with cgroup("blkio", limit, rehearsal.postgres_pids()):
            yield
    elif kind == "lock-waits":
        holder = rehearsal.hosts["master"].command(
            sys.executable, "-m", "tests.support.lock_holder", rehearsal.database_url, "3"
        )
        with started(holder, rehearsal.workdir / "lock-holder.log", {}, signal.SIGTERM):
            yield
    elif kind == "network":
        rehearsal.proxy.send_signal(signal.SIGUSR1)
        try:
            yield
        finally:
            rehearsal.proxy.send_signal(signal.SIGUSR2)
    else:
        raise AssertionError(kind)


def users_now(history: Path) -> int:
    """The user count of Locust's latest stats-history row (0 before the first)."""
    if not history.exists():
        return 0
    with history.open(newline="") as source:
        rows = [row for row in csv.DictReader(source) if row["Name"] == "Aggregated"]
    return int(rows[-1]["User Count"]) if rows else 0


@contextmanager
def target_experiment(
    rehearsal: Rehearsal, tmp_path: Path, args: list[str], service_url: str | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    """`fleetbed experiment --target` from the master's host against the rehearsal's service (or `service_url`),
    with its Prometheus; its output in tmp_path/run, its log in tmp_path/experiment.log. Stopped with Ctrl-C when
    the block ends, should it still run."""
    command = rehearsal.hosts["master"].command(
        *fleetbed_command(), "experiment", "--target", service_url or rehearsal.service_url,
        "--prometheus", rehearsal.prometheus_url, "--interval", "1s", *args, "--out", str(tmp_path / "run"),
    )  # fmt: skip
    env = {"FLEETBED_OPERATOR_TOKEN": OPERATOR_TOKEN, "FLEETBED_DATA_DIR": str(tmp_path / "generator")}
    with started(command, tmp_path / "experiment.log", env, signal.SIGINT) as experiment:
        yield experiment


def named(tmp_path: Path, code: int, kind: str, opening: str) -> dict[str, Any]:
    """The run's bottleneck, after checking it is `kind` with a sentence opening with `opening`."""
    assert code in (0, 1), (tmp_path / "experiment.log").read_text(errors="replace")[-3000:]
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    found: dict[str, Any] = summary["bottleneck"]
    print(f"{kind}: {found['sentence']}")
    assert found["kind"] == kind, json.dumps(found, indent=2)
    assert str(found["sentence"]).startswith(opening), found["sentence"]
    return found


@pytest.mark.parametrize(
    ("kind", "opening"),
    [
        ("database-cpu", "The database host ran out of CPU"),
        ("database-disk", "Commits waited on the database's disk"),
        ("lock-waits", "Writers queued on locks"),
        ("network", "The network between the service and the database was the limit"),
    ],
)
def test_a_planted_bottleneck_of_the_database_host_is_named(
    rehearsal: Rehearsal, kind: str, opening: str, tmp_path: Path
) -> None:
    args = ["--devices", str(2 * STEP_DEVICES), "--step-devices", str(STEP_DEVICES), "--step-seconds", "15s",
            "--duration", "30s", "--slo", "p95=10000, failures=0.5"]  # fmt: skip
    with target_experiment(rehearsal, tmp_path, args) as experiment:
        # Planted when the second step's devices are all running, so the first step is the calm reference.
        history = tmp_path / "run" / "locust_stats_history.csv"
        wait_until("the second step", lambda: users_now(history) >= 2 * STEP_DEVICES, 90)
        with planted(kind, rehearsal):
            code = experiment.wait(timeout=120)
    found = named(tmp_path, code, kind, opening)
    database = rehearsal.hosts["database"].address
    assert any(line.startswith(f"PostgreSQL on host {database}") for line in found["evidence"]), found["evidence"]


@contextmanager
def slow_inserts(rehearsal: Rehearsal) -> Iterator[None]:
    """Every insert statement into measurement (one per group-commit batch) sleeps 150 ms, until the block ends."""
    psql = [str(PG_BIN / "psql"), rehearsal.database_url, "-v", "ON_ERROR_STOP=1", "-c"]
    rehearsal.hosts["database"].run(
        *psql,
        SLOW_INSERTS,
    )
    try:
        yield
    finally:
        rehearsal.hosts["database"].run(*psql, SLOW_INSERTS_OFF)


# The plants of one machine (tests/test_diagnosis.py), planted from the start: the service's settings (a service
# with them beside the rehearsal's), the database's inserts, or the generator's own arguments. Each run is as short
# as still names it: the CPU-heavy handler needs its three 10 s steps (with two of 150 devices the pool is named, as
# the saturated loop leaves requests waiting for connections before its CPU reads 0.8 cores).
SERVICE_AND_GENERATOR_PLANTS = [
    pytest.param(
        "pool", "The database pool ran out first", {"FLEETBED_POOL_MIN_SIZE": "1", "FLEETBED_POOL_MAX_SIZE": "1"},
        ["--devices", "400", "--step-devices", "200", "--step-seconds", "10s", "--duration", "20s",
         "--slo", "p95=10000, failures=0.5"],
        id="tiny-pool",
    ),
    pytest.param(
        "service-cpu", "Service CPU saturated first", {"FLEETBED_TEST_HANDLER_CPU_MS": "2"},
        ["--devices", "300", "--step-devices", "100", "--step-seconds", "10s", "--duration", "30s",
         "--slo", "p95=10000, failures=0.5"],
        id="cpu-heavy-handler",
    ),
    pytest.param(
        "commit", "Commits slowed first", None,
        ["--devices", "300", "--step-devices", "150", "--step-seconds", "10s", "--duration", "20s",
         "--slo", "p95=10000, failures=0.5"],
        id="slow-commits",
    ),
    pytest.param(
        "generator", "The generator was the limit, not the service", {},
        ["--devices", "1000", "--devices-per-user", "1000", "--connections-per-user", "1", "--duration", "20s"],
        id="saturated-generator",
    ),
]  # fmt: skip


@pytest.mark.parametrize(("kind", "opening", "service_env", "args"), SERVICE_AND_GENERATOR_PLANTS)
def test_a_planted_bottleneck_of_the_service_or_the_generator_is_named(
    rehearsal: Rehearsal,
    kind: str,
    opening: str,
    service_env: dict[str, str] | None,
    args: list[str],
    tmp_path: Path,
) -> None:
    with ExitStack() as plant:
        service_url = rehearsal.service_url
        if service_env is None:
            plant.enter_context(slow_inserts(rehearsal))
        elif service_env:
            env = {**rehearsal.service_env, "FLEETBED_DRAIN_TIMEOUT_S": "3", **service_env}
            service_url = plant.enter_context(
                serving(rehearsal.hosts, PLANT_SERVICE_PORT, env, tmp_path / "service.log")
            )
        with target_experiment(rehearsal, tmp_path, args, service_url) as experiment:
            code = experiment.wait(timeout=120)
    named(tmp_path, code, kind, opening)


def test_a_run_started_from_the_web_ui_is_reported_from_prometheus(rehearsal: Rehearsal, tmp_path: Path) -> None:
    hosts = rehearsal.hosts
    master, workers = hosts["master"], [hosts["worker1"], hosts["worker2"]]
    web = f"http://{master.address}:8089"
    master_args = [
        "--master", "--master-bind-host", master.address, "--master-bind-port", "5557",
        "--web-host", master.address, "--web-port", "8089", "-H", rehearsal.service_url,
        "--device-interval", "1", "--snapshot-interval", "2", "--run-name", UI_RUN,
        "--prometheus-host", master.address, "--prometheus-port", "9646",
    ]  # fmt: skip
    env = {"FLEETBED_OPERATOR_TOKEN": OPERATOR_TOKEN, "PYTHONUNBUFFERED": "1"}
    with ExitStack() as stack:
        stack.enter_context(started(locust(master, *master_args), tmp_path / "master.log", env, signal.SIGINT))
        for worker in workers:
            args = [*compose_worker_command(master.address), "--master-port", "5557"]
            stack.enter_context(started(locust(worker, *args), tmp_path / f"{worker.role}.log", env, signal.SIGINT))
        wait_for("both workers connected", lambda: master.established_peers(5557), {w.address for w in workers})

        def swarm(users: int) -> None:
            form = {"user_count": users, "spawn_rate": users, "host": rehearsal.service_url}
            answer = json.loads(master.run(sys.executable, "-c", POST_FORM, f"{web}/swarm", json.dumps(form)))
            assert answer["success"], answer

        swarm(20)  # a ramp by hand: 20 devices, then 40
        time.sleep(14)
        swarm(40)
        time.sleep(14)
        stopped = json.loads(master.run(sys.executable, "-c", POST_FORM, f"{web}/stop", "{}"))
        assert stopped["success"], stopped
        time.sleep(3)  # the run record is finished and Prometheus has scraped the last figures
    out = tmp_path / "report"
    report = master.command(
        *fleetbed_command(), "report", "--prometheus", rehearsal.prometheus_url, "--run", "latest",
        "--service", rehearsal.service_url, "--out", str(out),
    )  # fmt: skip
    done = subprocess.run(report, capture_output=True, text=True, env={**os.environ, **env}, check=False)
    assert done.returncode == 0, done.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["plan"]["run_name"] == UI_RUN
    assert [step["devices"] for step in summary["steps"]] == [20, 40]
    assert summary["steps"][1]["throughput_rps"] > 1.5 * summary["steps"][0]["throughput_rps"], summary["steps"]
    assert (out / "report.html").read_text().count("<svg") >= 3
    assert summary["bottleneck"]["sentence"] == done.stdout.strip()
    evidence = summary["bottleneck"]["evidence"]
    assert any(line.startswith(f"PostgreSQL on host {hosts['database'].address}") for line in evidence), evidence
    # The generator's CPU from Prometheus alone: the master's own and its workers' as they report it.
    generator_cpu = next(float(line.split()[2]) for line in evidence if line.startswith("generator CPU"))
    assert generator_cpu > 0, evidence


def test_an_experiment_on_remote_workers_uses_both_and_gives_a_verdict(rehearsal: Rehearsal, tmp_path: Path) -> None:
    """`fleetbed experiment --target --master --expect-workers 2` on the master's host, Locust workers on two other
    hosts connecting to it: the run waits for both, both send the load, and the run ends with a verdict."""
    hosts = rehearsal.hosts
    master, workers = hosts["master"], [hosts["worker1"], hosts["worker2"]]
    addresses = {worker.address for worker in workers}
    args = ["--master", "--expect-workers", "2", "--master-bind-host", master.address,
            "--devices", str(2 * STEP_DEVICES), "--step-devices", str(STEP_DEVICES), "--step-seconds", "10s",
            "--duration", "20s", "--slo", "p95=10000, failures=0.5"]  # fmt: skip
    env = {"FLEETBED_OPERATOR_TOKEN": OPERATOR_TOKEN, "PYTHONUNBUFFERED": "1"}
    with ExitStack() as stack:
        experiment = stack.enter_context(target_experiment(rehearsal, tmp_path, args))
        for worker in workers:
            command = locust(worker, *compose_worker_command(master.address), "--master-port", str(MASTER_PORT))
            stack.enter_context(started(command, tmp_path / f"{worker.role}.log", env, signal.SIGINT))
        wait_for("both workers connected to the master", lambda: master.established_peers(MASTER_PORT), addresses)
        service_peers = lambda: hosts["service"].established_peers(SERVICE_PORT)  # noqa: E731
        wait_for("both workers sending requests to the service", service_peers, addresses)
        code = experiment.wait(timeout=150)
    assert code in (0, 1), (tmp_path / "experiment.log").read_text(errors="replace")[-3000:]
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    print(f"remote workers: {summary['bottleneck']['sentence']}")
    assert [step["devices"] for step in summary["steps"]] == [STEP_DEVICES, 2 * STEP_DEVICES], summary["steps"]
    assert summary["bottleneck"]["kind"] not in ("unknown", ""), summary["bottleneck"]
    # The master recorded the run with both workers in it.
    status, body = master.fetch(f"{rehearsal.service_url}/runs", OPERATOR_TOKEN)
    assert status == 200, body
    run = next(r for r in json.loads(body)["runs"] if r["name"] == "experiment run")  # the newest first
    status, body = master.fetch(f"{rehearsal.service_url}/runs/{run['id']}", OPERATOR_TOKEN)
    assert max(snapshot["stats"]["workers"] for snapshot in json.loads(body)["snapshots"]) == 2, body
