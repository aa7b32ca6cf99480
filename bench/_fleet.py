"""The system under test for the benchmarks: a PostgreSQL of their own (embedded 18 or Debian's 15), migrated
databases, the service process."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Coroutine, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any, TypeVar

import asyncpg

from app.db.migrations import migrate
from app.stack.embedded_db import EmbeddedPostgres
from app.stack.processes import stop
from app.tokens import issue_device_token
from bench._servers import SECRET

T = TypeVar("T")

OPERATOR_TOKEN = "bench-operator-token-0123456789"
SERVICE_CORE = "0"


@contextmanager
def embedded_server(binaries: Path | None = None) -> Iterator[str]:
    """A server of its own for the bench: the embedded PostgreSQL 18, or the installation in `binaries`."""
    data_dir = Path(tempfile.mkdtemp(prefix="fleetbed-bench-"))
    data_dir.chmod(0o755)
    server = EmbeddedPostgres(data_dir, binaries)
    running = server.start()
    try:
        yield running.url
    finally:
        server.stop()


async def fresh_database(server_url: str, name: str) -> str:
    admin = await asyncpg.connect(server_url)
    try:
        await admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        await admin.execute(f"CREATE DATABASE {name}")
    finally:
        await admin.close()
    url = server_url.rsplit("/", 1)[0] + "/" + name
    conn = await asyncpg.connect(url)
    try:
        await migrate(conn)
    finally:
        await conn.close()
    return url


async def register_devices(url: str, count: int) -> list[str]:
    """Devices registered directly in the database, with their tokens."""
    ids = [uuid.uuid4() for _ in range(count)]
    conn = await asyncpg.connect(url)
    try:
        await conn.execute("INSERT INTO device (id) SELECT unnest($1::uuid[])", ids)
        await conn.execute("UPDATE fleet_totals SET devices = devices + $1 WHERE shard = 0", count)
    finally:
        await conn.close()
    return [issue_device_token(SECRET, device_id, 86_400).token for device_id in ids]


def wait_ready(url: str, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"{url} did not come up")


@contextmanager
def process(command: list[str], ready_url: str, env: dict[str, str] | None = None) -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen(command, env={**os.environ, **(env or {})}, stdout=subprocess.DEVNULL)
    try:
        wait_ready(ready_url)
        yield proc
    finally:
        stop(proc, 30)


def service(
    url: str, port: int, workers: int = 1, pinned: bool = True, **extra_env: str
) -> AbstractContextManager[subprocess.Popen[bytes]]:
    env = {
        "FLEETBED_DATABASE_URL": url,
        "FLEETBED_DATA_DIR": tempfile.mkdtemp(prefix="fleetbed-bench-data-"),
        "FLEETBED_SECRET": SECRET.decode(),
        "FLEETBED_OPERATOR_TOKEN": OPERATOR_TOKEN,
        "FLEETBED_PORT": str(port),
        "FLEETBED_LOGIN_RATE_PER_S": "0",  # the whole fleet logs in from one address
        **extra_env,
    }
    command = [sys.executable, "-m", "app", "serve", "--no-migrate", "--workers", str(workers)]
    if pinned:
        command = ["taskset", "-c", SERVICE_CORE, *command]
    return process(command, f"http://127.0.0.1:{port}/readyz", env)


def reference(kind: str, port: int, dsn: str | None = None) -> AbstractContextManager[subprocess.Popen[bytes]]:
    command = ["taskset", "-c", SERVICE_CORE, sys.executable, "-m", "bench._servers", kind, "--port", str(port)]
    if dsn:
        command += ["--dsn", dsn]
    return process(command, f"http://127.0.0.1:{port}/healthz")


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)
