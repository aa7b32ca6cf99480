"""The `fleetbed` command as a newcomer meets it: help, serve on the embedded database, migrate, shutdown."""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

import psutil
import pytest

from tests.support.db import scalar
from tests.support.devices import BASE_TIME, iso
from tests.support.processes import fleetbed_command, free_port, read_output, running_fleetbed


def request(url: str, method: str = "GET", body: object = None, token: str | None = None) -> tuple[int, object]:
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    data = None if body is None else json.dumps(body).encode()
    with urllib.request.urlopen(urllib.request.Request(url, data=data, headers=headers, method=method)) as response:
        return response.status, json.loads(response.read())


@pytest.fixture
def data_dir() -> Path:
    directory = Path(tempfile.mkdtemp(prefix="fleetbed-cli-"))
    directory.chmod(0o755)
    return directory


@pytest.mark.parametrize("command", [[], ["serve"], ["migrate"], ["db"]])
def test_help_is_there_for_every_command(command: list[str]) -> None:
    result = subprocess.run([*fleetbed_command(), *command, "--help"], capture_output=True, text=True, check=False)
    assert result.returncode == 0
    assert "usage: fleetbed" in result.stdout
    if not command:
        for name in ("serve", "migrate", "db", "FLEETBED_DATABASE_URL", "FLEETBED_DATA_DIR"):
            assert name in result.stdout


def port_open(port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(1)
        return probe.connect_ex(("127.0.0.1", port)) == 0


def embedded_port(data_dir: Path) -> int:
    return int((data_dir / "postgres" / "postmaster.pid").read_text().splitlines()[3])


def test_serve_with_no_configuration_uses_the_embedded_database(data_dir: Path) -> None:
    port = free_port()
    env = {"FLEETBED_DATA_DIR": str(data_dir), "FLEETBED_PORT": str(port)}
    with running_fleetbed(["serve"], env, port) as process:
        base = f"http://127.0.0.1:{port}"
        database_port = embedded_port(data_dir)
        status, login = request(f"{base}/login", "POST")
        assert status == 200
        assert isinstance(login, dict)
        reading = {
            "time": iso(BASE_TIME), "charge_now": 5, "charge_full": 10, "charge_rate": 1.0,
            "ambient_temp": 20.0, "water_temp": 30.0, "water_level": 40,
        }  # fmt: skip
        assert request(f"{base}/measurement", "POST", reading, login["token"]) == (
            201,
            {"accepted": 1, "duplicates": 0},
        )
        operator_token = (data_dir / "secrets" / "operator-token").read_text().strip()
        status, stats = request(f"{base}/stats", token=operator_token)
        assert isinstance(stats, dict)
        assert stats["measurements"] == 1

        process.send_signal(signal.SIGTERM)
        process.wait(60)
        output = read_output(process)
        assert process.returncode == 0, output
    assert "fleetbed is serving on" in output
    assert operator_token not in output, "secrets are never printed or logged"
    assert not port_open(database_port), "the embedded database stops with the service"


def test_migrate_against_a_configured_database(empty_pg_url: str) -> None:
    env = {"FLEETBED_DATABASE_URL": empty_pg_url, "FLEETBED_DATA_DIR": tempfile.mkdtemp()}
    for expected in ("applied migrations: 001_core, 002_timescaledb, 003_", "database schema is current"):
        result = subprocess.run(
            [*fleetbed_command(), "migrate"], capture_output=True, text=True, env={**env, "PATH": "/usr/bin:/bin"},
            check=False,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        assert expected in result.stderr


async def test_two_workers_share_one_port(pg_url: str, data_dir: Path) -> None:
    port = free_port()
    env = {"FLEETBED_DATABASE_URL": pg_url, "FLEETBED_DATA_DIR": str(data_dir), "FLEETBED_PORT": str(port)}
    with running_fleetbed(["serve", "--workers", "2"], env, port) as process:
        tokens = [request(f"http://127.0.0.1:{port}/login", "POST")[1] for _ in range(20)]
        assert len({t["device_id"] for t in tokens if isinstance(t, dict)}) == 20
        assert wait_for_listeners(process.pid, port) == 2, "two worker processes listen on the same port"
        process.send_signal(signal.SIGTERM)
        process.wait(60)
        output = read_output(process)
        assert process.returncode == 0, output
    assert await scalar(pg_url, "SELECT count(*) FROM device") == 20


async def test_workers_stop_when_their_supervisor_is_killed(pg_url: str, data_dir: Path) -> None:
    """`kill -9` of the supervisor cannot pass SIGTERM on: its workers notice and stop, freeing the port."""
    port = free_port()
    env = {"FLEETBED_DATABASE_URL": pg_url, "FLEETBED_DATA_DIR": str(data_dir), "FLEETBED_PORT": str(port)}
    with running_fleetbed(["serve", "--workers", "2"], env, port) as process:
        assert wait_for_listeners(process.pid, port) == 2
        workers = psutil.Process(process.pid).children()
        process.kill()
        process.wait(10)
        _, alive = psutil.wait_procs(workers, timeout=30)
        assert alive == [], "no worker outlives its supervisor"
        assert not port_open(port)


def wait_for_listeners(pid: int, port: int, expected: int = 2, timeout_s: float = 30.0) -> int:
    """How many child processes of `pid` listen on `port`, once `expected` do or the time is up."""
    deadline = time.monotonic() + timeout_s
    while True:
        listening = [
            child
            for child in psutil.Process(pid).children()
            if any(c.laddr.port == port and c.status == psutil.CONN_LISTEN for c in child.net_connections())
        ]
        if len(listening) >= expected or time.monotonic() > deadline:
            return len(listening)
        time.sleep(0.2)


def test_bad_settings_are_reported_plainly(data_dir: Path) -> None:
    result = subprocess.run(
        [*fleetbed_command(), "serve"],
        env={"FLEETBED_DATA_DIR": str(data_dir), "FLEETBED_PORT": "eighty", "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 2
    assert "FLEETBED_PORT must be an integer" in result.stderr
    assert "Traceback" not in result.stderr


def test_db_runs_the_embedded_server_in_the_foreground(data_dir: Path) -> None:
    process = subprocess.Popen(
        [*fleetbed_command(), "db"],
        env={"FLEETBED_DATA_DIR": str(data_dir), "PATH": "/usr/bin:/bin"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    url = None
    try:
        assert process.stdout is not None
        for _ in range(50):
            line = process.stdout.readline()
            if "FLEETBED_DATABASE_URL=" in line:
                url = line.strip().split("=", 1)[1]
                break
        assert url is not None, "fleetbed db prints the URL to use"
        applied = asyncio.run(scalar(url, "SELECT count(*) FROM schema_migrations"))
        assert applied >= 3, "and migrates the database"
        process.send_signal(signal.SIGINT)
        assert process.wait(60) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        if process.stdout is not None:
            process.stdout.close()
    assert not port_open(int(url.rsplit(":", 1)[1].split("/")[0])), "Ctrl-C stops the server"
