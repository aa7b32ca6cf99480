"""Running the simulated fleet as a user would: `fleetbed serve` on a test database and Locust in subprocesses.

Locust runs under gevent, which must not monkey-patch the test process (pytest-asyncio), so it always runs in
its own process, its output in a file.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.conftest import OPERATOR_TOKEN
from tests.support.processes import free_port, running_fleetbed

REPO = Path(__file__).resolve().parents[2]
LOCUSTFILE = REPO / "locustfiles" / "kettle.py"


@dataclass
class Service:
    url: str
    port: int
    database_url: str
    data_dir: Path

    def env(self, **extra: str) -> dict[str, str]:
        return {
            "FLEETBED_DATABASE_URL": self.database_url,
            "FLEETBED_DATA_DIR": str(self.data_dir),
            "FLEETBED_PORT": str(self.port),
            "FLEETBED_OPERATOR_TOKEN": OPERATOR_TOKEN,
            "FLEETBED_COMMAND_INTERVAL_S": "1",
            "FLEETBED_LOGIN_RATE_PER_S": "0",  # the whole fleet logs in from one address
            **extra,
        }


@contextmanager
def running_service(database_url: str, data_dir: Path, port: int | None = None, **env: str) -> Iterator[Service]:
    port = port or free_port()
    service = Service(f"http://127.0.0.1:{port}", port, database_url, data_dir)
    with running_fleetbed(["serve", "--no-migrate"], service.env(**env), port):
        yield service


@dataclass
class LocustProcess:
    process: subprocess.Popen[bytes]
    log: Path
    output_prefix: Path

    def wait(self, timeout_s: float = 90.0) -> int:
        return self.process.wait(timeout=timeout_s)

    @property
    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def stats(self) -> dict[tuple[str, str], dict[str, Any]]:
        """Locust's final stats (`--json-file`, written at shutdown), keyed by (method, name)."""
        entries = json.loads(Path(f"{self.output_prefix}.json").read_text())
        return {(entry["method"], entry["name"]): entry for entry in entries}


@contextmanager
def running_locust(
    args: list[str], workdir: Path, name: str = "locust", worker: bool = False
) -> Iterator[LocustProcess]:
    """A Locust process (headless, CSV output) or, with `worker`, a worker of a master on loopback."""
    log = workdir / f"{name}.log"
    output_prefix = workdir / name
    mode = ["--worker"] if worker else ["--headless", "--json-file", str(output_prefix)]
    with open(log, "wb") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), *mode, *args],
            cwd=workdir,
            env={**os.environ, "FLEETBED_OPERATOR_TOKEN": OPERATOR_TOKEN, "PYTHONUNBUFFERED": "1"},
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    try:
        yield LocustProcess(process, log, output_prefix)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def fleet_args(service: Service, *extra: str) -> list[str]:
    """A small, fast fleet: one cycle per device every second, run records every 2 s."""
    return [
        "-H", service.url, "--device-interval", "1", "--snapshot-interval", "2",
        "--prometheus-port", "0", "--only-summary", *extra,
    ]  # fmt: skip


def scrape(url: str, timeout_s: float = 20.0) -> str:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                return str(response.read().decode())
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.3)
