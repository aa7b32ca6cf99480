"""Start a real TimescaleDB (PGlite compiled to WebAssembly, run by Node) for tests.

`running_timescaledb()` runs ``tests/timescaledb/server.mjs`` on a free local port and yields an asyncpg DSN.
The server is one PostgreSQL session shared by all connections, one transaction at a time (see the comment at
the top of server.mjs). Connect with ``ssl=False``. User, password and database name are not checked; the
session's database is ``template1``. Close connections and pools with `close_quietly`.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import os
import queue
import shutil
import subprocess
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import IO, Protocol

from app.stack.processes import stop

SERVER_DIR = Path(__file__).resolve().parent.parent / "timescaledb"
SERVER_SCRIPT = SERVER_DIR / "server.mjs"
_TERMINATE_GRACE_SECONDS = 5.0


class TimescaleDBUnavailable(RuntimeError):
    """The Node-based TimescaleDB server cannot be installed or started."""


class _Closable(Protocol):
    """What asyncpg's Connection and Pool have in common for shutting down."""

    async def close(self) -> None: ...

    def terminate(self) -> None: ...


def timescaledb_available() -> str | None:
    """Return None when node and npm are on PATH, else a reason suitable for ``pytest.skip``."""
    missing = [tool for tool in ("node", "npm") if shutil.which(tool) is None]
    if missing:
        return f"TimescaleDB test server needs {' and '.join(missing)} on PATH"
    return None


def ensure_node_modules() -> None:
    """Run ``npm ci`` in tests/timescaledb unless node_modules is newer than package-lock.json."""
    reason = timescaledb_available()
    if reason is not None:
        raise TimescaleDBUnavailable(reason)
    lock = SERVER_DIR / "package-lock.json"
    # npm writes node_modules/.package-lock.json at the end of an install, so its mtime marks a complete one.
    marker = SERVER_DIR / "node_modules" / ".package-lock.json"

    def up_to_date() -> bool:
        return marker.exists() and marker.stat().st_mtime >= lock.stat().st_mtime

    if up_to_date():
        return
    npm = shutil.which("npm")
    assert npm is not None
    # Serialise concurrent callers (e.g. pytest-xdist workers) so that only one runs npm ci.
    key = hashlib.sha256(str(SERVER_DIR).encode()).hexdigest()[:16]
    with open(Path(tempfile.gettempdir()) / f"fleetbed-timescaledb-{key}.lock", "w") as lock_file:
        fcntl.flock(lock_file, fcntl.LOCK_EX)
        if up_to_date():
            return
        result = subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"],
            cwd=SERVER_DIR,
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            raise TimescaleDBUnavailable(
                f"`npm ci` in {SERVER_DIR} failed with exit code {result.returncode}:\n"
                f"{result.stderr.strip() or result.stdout.strip()}"
            )
        marker.touch()  # npm ci may keep old mtimes when nothing changed


@contextlib.contextmanager
def running_timescaledb(startup_timeout: float = 60) -> Iterator[str]:
    """Start the server, yield ``postgresql://postgres@127.0.0.1:PORT/postgres``, stop it on exit."""
    ensure_node_modules()
    node = shutil.which("node")
    assert node is not None
    proc = subprocess.Popen(
        [node, str(SERVER_SCRIPT), "--port", "0", "--watch-stdin"],
        cwd=SERVER_DIR,
        stdin=subprocess.PIPE,  # closed by us (or by the OS if we die): the server then exits
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "NODE_NO_WARNINGS": "1"},
    )
    assert proc.stdout is not None
    assert proc.stderr is not None
    stderr_lines: deque[str | None] = deque(maxlen=200)
    stdout_lines: queue.Queue[str | None] = queue.Queue()
    threads = [
        threading.Thread(target=_pump, args=(proc.stderr, stderr_lines.append), daemon=True),
        threading.Thread(target=_pump, args=(proc.stdout, stdout_lines.put), daemon=True),
    ]
    for thread in threads:
        thread.start()
    try:
        port = _wait_ready(proc, stdout_lines, stderr_lines, startup_timeout)
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
    finally:
        _stop(proc)
        for thread in threads:
            thread.join(timeout=1)
        for pipe in (proc.stdout, proc.stderr):
            pipe.close()


async def close_quietly(conn_or_pool: _Closable, timeout: float = 2.0) -> None:  # noqa: ASYNC109 - bounds close() only
    """Close an asyncpg Connection or Pool within ``timeout`` seconds, then ``terminate()`` whatever is left.

    server.mjs answers Terminate by closing the socket, so a graceful close normally completes at once; plain
    pglite-socket (``--mode single``) never drops the socket and ``close()`` would wait forever.
    """
    try:
        # Timeout, or asyncpg's error for an already-broken connection: terminate() below finishes the job.
        with contextlib.suppress(Exception):
            await asyncio.wait_for(conn_or_pool.close(), timeout)
    finally:
        conn_or_pool.terminate()


def _pump(stream: IO[str], sink: Callable[[str | None], None]) -> None:
    """Copy lines from a child's pipe to ``sink`` until EOF, then send None."""
    for line in stream:
        sink(line.rstrip("\n"))
    sink(None)


def _wait_ready(
    proc: subprocess.Popen[str],
    stdout_lines: queue.Queue[str | None],
    stderr_lines: Iterable[str | None],
    timeout: float,
) -> int:
    deadline = time.monotonic() + timeout
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimescaleDBUnavailable(
                f"TimescaleDB server did not report READY within {timeout:g} s{_stderr_tail(stderr_lines)}"
            )
        try:
            line = stdout_lines.get(timeout=min(remaining, 0.2))
        except queue.Empty:
            continue
        if line is None:  # stdout closed: the process died
            try:
                code = proc.wait(timeout=2)
            except subprocess.TimeoutExpired:
                code = None
            time.sleep(0.1)  # let the stderr thread catch up
            raise TimescaleDBUnavailable(
                f"TimescaleDB server exited (code {code}) before READY{_stderr_tail(stderr_lines)}"
            )
        if line.startswith("READY "):
            return int(line.split()[1])


def _stderr_tail(lines: Iterable[str | None], limit: int = 40) -> str:
    text = "\n".join([line for line in lines if line is not None][-limit:])
    return f"; stderr:\n{text}" if text else ""


def _stop(proc: subprocess.Popen[str]) -> None:
    if proc.stdin is not None:
        with contextlib.suppress(OSError):
            proc.stdin.close()
    stop(proc, _TERMINATE_GRACE_SECONDS)


# What the suite does with the server: migrate it once, and empty it between tests. PGlite is one session with
# one database, so tests share it instead of getting a fresh database each.


async def migrate_timescaledb(url: str) -> None:
    import asyncpg

    from app.db.migrations import migrate

    conn = await asyncpg.connect(url, ssl=False)
    try:
        await migrate(conn)
    finally:
        await close_quietly(conn)


async def reset_timescaledb(url: str) -> None:
    """Remove every row a test could have written, materialized hourly statistics included."""
    import asyncpg

    conn = await asyncpg.connect(url, ssl=False)
    try:
        tables = await conn.fetch(
            "SELECT quote_ident(tablename) AS name FROM pg_tables "
            "WHERE schemaname = 'public' AND tablename <> 'schema_migrations'"
        )
        await conn.execute(f"TRUNCATE {', '.join(t['name'] for t in tables)} CASCADE")
        # The refresh sees the truncation and empties the aggregate; it cannot run inside a transaction.
        await conn.execute("CALL refresh_continuous_aggregate('measurement_hourly', NULL, NULL)")
    finally:
        await close_quietly(conn)
