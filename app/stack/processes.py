"""The processes an experiment (or `fleetbed up`) starts: each in its own session, so a Ctrl-C reaches only
fleetbed, which then stops them in order and can still write its report. Always stopped on the way out, and
sent SIGTERM by the kernel should fleetbed die without a chance to stop them (app/stack/lifetime.py)."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from app.stack.lifetime import die_with_parent

STOP_TIMEOUT_S = 20.0


class StartError(RuntimeError):
    """A component did not start; the message names it and the tail of its log."""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def fleetbed_args(*args: str) -> list[str]:
    return [sys.executable, "-m", "app", *args]


def stop(process: subprocess.Popen[Any], timeout_s: float = STOP_TIMEOUT_S, signum: int = signal.SIGTERM) -> None:
    """SIGTERM (a graceful stop for the service, Locust and Prometheus), or `signum`, then SIGKILL after
    `timeout_s`."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signum)
        try:
            process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextmanager
def child(
    args: list[str], log: Path, env: dict[str, str], cwd: Path | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("ab") as output:
        process = subprocess.Popen(
            args,
            stdout=output,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, **env},
            cwd=cwd,
            start_new_session=True,
            preexec_fn=die_with_parent(os.getpid()),
        )
    try:
        yield process
    finally:
        stop(process)


def wait_until_ready(url: str, process: subprocess.Popen[bytes], log: Path, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            tail = log.read_text(errors="replace")[-2000:]
            raise StartError(f"{url}: the process exited with {process.returncode}:\n{tail}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 (a local http URL)
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.2)
    raise StartError(f"{url} did not answer within {timeout_s:g} s; see {log}")
