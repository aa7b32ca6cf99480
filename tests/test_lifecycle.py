"""Every command that starts processes stops all of them (`fleetbed up`'s exporters included), whatever signal it
gets, and none outlives it even when it is killed outright (SIGKILL): real commands, real signals, then nothing of
theirs runs or listens.

Each command is started on its own data dir (copied from one embedded cluster created once), signalled once it
is up, and then every process it started (its descendants, the embedded postmaster with its backends, which
`pg_ctl` detaches) must be gone and every port they listened on closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import psutil
import pytest

from app.stack.embedded_db import EmbeddedPostgres
from tests.support.devices import reading
from tests.support.processes import free_port, read_output, running_fleetbed

REPO = Path(__file__).resolve().parents[1]
STARTED_TIMEOUT_S = 90.0
STOPPED_TIMEOUT_S = 45.0  # the service's drain budget (30 s) and the database's fast stop, with room

pytestmark = pytest.mark.slow


@dataclass
class Command:
    """What is needed to start one command and know it is up."""

    args: list[str]
    up_when: str  # a text it prints once everything it starts is running


def commands(out: Path) -> dict[str, Command]:
    return {
        "up": Command(
            [
                "up",
                "--port",
                str(free_port()),
                "--web-port",
                str(free_port()),
                "--locust-metrics-port",
                str(free_port()),
                "--prometheus-port",
                str(free_port()),
            ],
            "operator token",
        ),
        "experiment": Command(
            ["experiment", "--devices", "20", "--duration", "300s", "--interval", "2s", "--out", str(out)],
            "Prometheus on",
        ),
        "db": Command(["db"], "FLEETBED_DATABASE_URL="),
        "serve": Command(["serve", "--workers", "2", "--port", str(free_port())], "API description"),
    }


def reachable_dir(prefix: str) -> Path:
    """A fresh directory the embedded server's own user can traverse when the tests run as root, so the cluster
    lives inside it (not relocated to /var/lib/fleetbed) and goes with it."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    path.chmod(0o711)
    return path


@pytest.fixture(scope="module")
def cluster() -> Iterator[Path]:
    """A data dir with an initialised (stopped) embedded cluster: each test copies it instead of running initdb."""
    base = reachable_dir("fleetbed-lifecycle-cluster-")
    EmbeddedPostgres(base / "data").initialise()
    yield base / "data"
    shutil.rmtree(base, ignore_errors=True)


@dataclass
class Started:
    process: subprocess.Popen[bytes]
    log: Path
    data_dir: Path
    seen: list[psutil.Process] = field(default_factory=list)  # what it had started when it was signalled

    def output(self) -> str:
        return self.log.read_text(errors="replace")


@pytest.fixture
def start(cluster: Path, tmp_path: Path) -> Iterator[object]:
    started: list[Started] = []
    base = reachable_dir("fleetbed-lifecycle-")

    def run(name: str) -> Started:
        data_dir = base / "data"
        subprocess.run(["cp", "-a", str(cluster), str(data_dir)], check=True)  # -a: the server's user owns it
        command = commands(tmp_path / "run")[name]
        env = {key: value for key, value in os.environ.items() if not key.startswith("FLEETBED_")}
        env["FLEETBED_DATA_DIR"] = str(data_dir)
        log = tmp_path / f"{name}.log"
        with log.open("wb") as output:
            process = subprocess.Popen(
                [sys.executable, "-m", "app", *command.args],
                env=env, cwd=REPO, stdout=output, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            )  # fmt: skip
        run_ = Started(process, log, data_dir)
        started.append(run_)
        deadline = time.monotonic() + STARTED_TIMEOUT_S
        while command.up_when not in run_.output():
            assert process.poll() is None, f"fleetbed {name} exited with {process.returncode}:\n{run_.output()}"
            assert time.monotonic() < deadline, f"fleetbed {name} not up in {STARTED_TIMEOUT_S:g} s:\n{run_.output()}"
            time.sleep(0.3)
        return run_

    yield run
    for run_ in started:  # the test failed half-way: clean up what is left (the assertions already spoke)
        for leftover in [*run_.seen, *everything_started(run_)]:
            with contextlib.suppress(psutil.NoSuchProcess):
                leftover.kill()
        if run_.process.poll() is None:
            run_.process.kill()
            run_.process.wait()
    shutil.rmtree(base, ignore_errors=True)


def postmaster(data_dir: Path) -> psutil.Process | None:
    try:
        return psutil.Process(int((data_dir / "postgres" / "postmaster.pid").read_text().split()[0]))
    except (OSError, ValueError, IndexError, psutil.NoSuchProcess):
        return None


def everything_started(run_: Started) -> list[psutil.Process]:
    """The command's descendants, and the embedded postmaster with its backends (pg_ctl detaches it)."""
    found: list[psutil.Process] = []
    with contextlib.suppress(psutil.NoSuchProcess):
        found += psutil.Process(run_.process.pid).children(recursive=True)
    server = postmaster(run_.data_dir)
    if server is not None:
        with contextlib.suppress(psutil.NoSuchProcess):
            found += [server, *server.children(recursive=True)]
    return list({process.pid: process for process in found}.values())


def listening_ports(processes: list[psutil.Process]) -> set[int]:
    ports: set[int] = set()
    for process in processes:
        try:
            connections = process.net_connections(kind="inet")
        except psutil.NoSuchProcess:
            continue
        ports |= {c.laddr.port for c in connections if c.status == psutil.CONN_LISTEN}
    return ports


def listening(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


def still_running(processes: list[psutil.Process]) -> list[str]:
    alive = []
    for process in processes:
        try:
            if process.is_running() and process.status() != psutil.STATUS_ZOMBIE:
                alive.append(f"{process.pid} {' '.join(process.cmdline())[:120]}")
        except psutil.NoSuchProcess:
            continue
    return alive


def signal_and_check(run_: Started, signum: signal.Signals, expected: set[str]) -> None:
    children = run_.seen = everything_started(run_)
    names = {" ".join(p.cmdline()) for p in children}
    for part in expected:
        assert any(part in name for name in names), f"{part} not running before the signal: {names}"
    ports = listening_ports(children)
    assert ports, "the command's processes listen on no port"
    signalled = time.monotonic()
    run_.process.send_signal(signum)
    run_.process.wait(STOPPED_TIMEOUT_S)
    exited_s = time.monotonic() - signalled
    while (
        still_running(children) or any(listening(port) for port in ports)
    ) and time.monotonic() < signalled + STOPPED_TIMEOUT_S:
        time.sleep(0.3)
    report = f"exited {exited_s:.1f} s after the signal; checked until {time.monotonic() - signalled:.1f} s after it"
    print(report)
    assert still_running(children) == [], f"{report}\n{run_.output()[-3000:]}"
    assert sorted(port for port in ports if listening(port)) == [], f"{report}\n{run_.output()[-3000:]}"


# What each command must be running when it is signalled (parts of command lines).
RUNNING = {
    # node_exporter and postgres_exporter, by the arguments fleetbed gives them (their binaries' names vary).
    "up": {"postgres", "app serve", "locust", "prometheus", "--collector.disable-defaults", "--extend.query-path"},
    "experiment": {"postgres", "app serve", "locust"},
    "db": {"postgres"},
    "serve": {"postgres", "multiprocessing"},
}


@pytest.mark.parametrize(
    ("name", "signum"),
    [
        ("up", signal.SIGTERM),
        ("up", signal.SIGHUP),
        ("up", signal.SIGINT),
        ("up", signal.SIGKILL),
        ("experiment", signal.SIGTERM),
        ("experiment", signal.SIGKILL),
        ("db", signal.SIGTERM),
        ("serve", signal.SIGTERM),
    ],
    ids=lambda value: value.name if isinstance(value, signal.Signals) else value,
)
def test_a_signal_stops_everything_the_command_started(start: object, name: str, signum: signal.Signals) -> None:
    if name in ("up", "experiment") and shutil.which("prometheus") is None:
        from app.stack.prometheus_server import INSTALL_HINT
        from tests.support.requirements import missing

        missing(INSTALL_HINT)
    if name == "up":
        from app.stack.exporters import NODE_EXPORTER, POSTGRES_EXPORTER, binary
        from tests.support.requirements import missing

        for names in (NODE_EXPORTER, POSTGRES_EXPORTER):
            if binary(names) is None:
                missing(f"{names[1]} is not installed (Debian: apt-get install {names[0]})")
    assert callable(start)
    run_: Started = start(name)
    signal_and_check(run_, signum, RUNNING[name])
    if signum != signal.SIGKILL:
        assert run_.process.returncode in (0, 130), run_.output()[-3000:]


DRAIN_S = 6.0


async def test_the_service_stops_within_its_drain_budget_when_the_database_hangs() -> None:
    """Every PostgreSQL process stopped (SIGSTOP: connections open, nothing answers) while devices post: the
    service still exits within FLEETBED_DRAIN_TIMEOUT_S of SIGTERM and its log says what it was waiting for."""
    base = reachable_dir("fleetbed-drain-")
    server = EmbeddedPostgres(base / "data")
    url = server.start().url
    port = free_port()
    env = {"FLEETBED_DATABASE_URL": url, "FLEETBED_DATA_DIR": str(base / "data"), "FLEETBED_PORT": str(port),
           "FLEETBED_DRAIN_TIMEOUT_S": f"{DRAIN_S:g}"}  # fmt: skip
    suspended: list[psutil.Process] = []
    try:
        with running_fleetbed(["serve"], env, port) as service:
            async with aiohttp.ClientSession() as session:
                service_url = f"http://127.0.0.1:{port}"
                tokens = []
                for _ in range(10):
                    async with session.post(f"{service_url}/login") as response:
                        tokens.append((await response.json())["token"])
                postmaster_process = postmaster(base / "data")
                assert postmaster_process is not None
                suspended = [postmaster_process, *postmaster_process.children(recursive=True)]
                for process in suspended:
                    process.suspend()
                posts = [
                    asyncio.ensure_future(
                        session.post(
                            f"{service_url}/measurement",
                            json=reading(datetime.now(UTC)),
                            headers={"Authorization": f"Bearer {token}"},
                        )
                    )
                    for token in tokens
                ]
                await asyncio.sleep(1.0)  # the requests are in flight, waiting on the database
                signalled = time.monotonic()
                service.send_signal(signal.SIGTERM)
                await asyncio.to_thread(service.wait, 60)
                stopped_in = time.monotonic() - signalled
                await asyncio.gather(*posts, return_exceptions=True)
            output = read_output(service)
    finally:
        for process in suspended:
            with contextlib.suppress(psutil.NoSuchProcess):
                process.resume()
        server.stop()
        shutil.rmtree(base, ignore_errors=True)
    print(
        f"stopped {stopped_in:.1f} s after SIGTERM\n"
        + "\n".join(line for line in output.splitlines() if "stopping" in line)
    )
    assert stopped_in < DRAIN_S + 1.5, f"stopped {stopped_in:.1f} s after SIGTERM:\n{output[-3000:]}"
    assert "stopping: waiting up to" in output, output[-3000:]
    assert "requests in flight" in output, output[-3000:]


def worker_pids(supervisor: subprocess.Popen[str]) -> set[int]:
    pids = set()
    for child in psutil.Process(supervisor.pid).children():
        with contextlib.suppress(psutil.NoSuchProcess):  # one may exit while we look
            if "spawn_main" in " ".join(child.cmdline()) and child.status() != psutil.STATUS_ZOMBIE:
                pids.add(child.pid)
    return pids


def scrape(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as response:
        return str(response.read().decode())


def test_the_supervisor_replaces_a_crashed_worker(pg_url: str, tmp_path: Path) -> None:
    port = free_port()
    env = {"FLEETBED_DATABASE_URL": pg_url, "FLEETBED_DATA_DIR": str(tmp_path), "FLEETBED_PORT": str(port),
           "FLEETBED_WORKERS": "2"}  # fmt: skip
    metrics_url = f"http://127.0.0.1:{port}/metrics"
    with running_fleetbed(["serve", "--no-migrate"], env, port) as service:
        deadline = time.monotonic() + 30
        while len(worker_pids(service)) < 2 and time.monotonic() < deadline:
            time.sleep(0.2)
        before = worker_pids(service)
        assert len(before) == 2, read_output(service)
        crashed = min(before)
        os.kill(crashed, signal.SIGKILL)
        while time.monotonic() < deadline + 30:
            now = worker_pids(service)
            if len(now) == 2 and crashed not in now and 'state="answered"} 2.0' in scrape(metrics_url):
                break
            time.sleep(0.3)
        after = worker_pids(service)
        assert len(after) == 2, read_output(service)
        assert crashed not in after, read_output(service)
        assert 'fleetbed_metrics_workers{state="answered"} 2.0' in scrape(metrics_url)
        assert "starting a new one" in read_output(service)
        service.send_signal(signal.SIGHUP)
        assert service.wait(STOPPED_TIMEOUT_S) == 0, read_output(service)
