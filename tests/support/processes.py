"""Running `fleetbed` as a user would: a real process, a free port, waiting until it answers.

Its output goes to a file, never a pipe: a pipe nobody reads fills up during a long test, and the service
then blocks on its next log line, which looks exactly like a wedged service. `read_output(process)` reads it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from app.stack.processes import free_port as free_port  # re-exported: the tests' one port picker


def fleetbed_command() -> list[str]:
    script = shutil.which("fleetbed", path=str(Path(sys.executable).parent))
    return [script] if script else [sys.executable, "-m", "app"]


_OUTPUT_FILES: dict[int, Path] = {}


def read_output(process: subprocess.Popen[str]) -> str:
    """Everything the process printed so far (stdout and stderr)."""
    path = _OUTPUT_FILES.get(process.pid)
    return path.read_text(errors="replace") if path is not None and path.exists() else ""


def wait_until_ready(url: str, process: subprocess.Popen[str], timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"fleetbed exited with {process.returncode}: {read_output(process)[-4000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.2)
    raise AssertionError(f"{url} not ready after {timeout_s} s")


@contextmanager
def running_fleetbed(args: list[str], env: dict[str, str], port: int) -> Iterator[subprocess.Popen[str]]:
    output_path = Path(tempfile.mkstemp(prefix="fleetbed-output-", suffix=".log")[1])
    with output_path.open("w") as output:
        process = subprocess.Popen(
            [*fleetbed_command(), *args],
            env={**os.environ, **env},
            stdout=output,
            stderr=subprocess.STDOUT,
            text=True,
        )
    _OUTPUT_FILES[process.pid] = output_path
    try:
        try:
            wait_until_ready(f"http://127.0.0.1:{port}/readyz", process)
            yield process
        except AssertionError as failure:
            if process.poll() is None:
                process.kill()
                process.wait()
            tail = read_output(process)[-4000:]
            raise AssertionError(f"{failure}\n--- fleetbed output (tail) ---\n{tail}") from None
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
