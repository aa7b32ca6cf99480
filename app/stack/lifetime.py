"""Process lifetime: every process fleetbed starts ends with the command that started it, however that ends.

- `stop_on_signals()`: SIGTERM and SIGHUP (what `timeout`, CI runners, systemd, container engines and a closed
  terminal send) stop a command the way Ctrl-C does: `KeyboardInterrupt` in the main thread, so every `with`
  block unwinds and stops what it started. Later signals while stopping are noted, not obeyed: the stop finishes.
- `die_with_parent(pid)`: a `preexec_fn` for child processes: the kernel sends the child SIGTERM when its parent
  dies, even of SIGKILL (Linux `PR_SET_PDEATHSIG`). It does not survive the child's own `fork`, so it cannot
  guard a daemon such as PostgreSQL's postmaster; for those:
- `ParentWatcher`: a tiny process (`python -m app.stack.lifetime`) that polls its parent and, once the parent is gone,
  runs a stop command (for PostgreSQL, `pg_ctl stop -m fast`). The parent ends it when it stopped the daemon
  itself.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from types import FrameType

STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP, signal.SIGINT)
WATCH_INTERVAL_S = 0.2
_PR_SET_PDEATHSIG = 1


def stop_on_signals() -> None:
    """Make SIGTERM, SIGHUP and SIGINT all raise `KeyboardInterrupt` once in the main thread (call it there)."""
    stopping = False

    def interrupt(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        if stopping:
            print(f"fleetbed: {signal.Signals(signum).name} while stopping; still stopping", file=sys.stderr)
            return
        stopping = True
        raise KeyboardInterrupt(signal.Signals(signum).name)

    for signum in STOP_SIGNALS:
        signal.signal(signum, interrupt)


def die_with_parent(parent_pid: int, signum: int = signal.SIGTERM) -> Callable[[], None]:
    """A `preexec_fn`: the child gets `signum` when the process `parent_pid` (the caller of Popen) dies."""

    # Resolved here, in the parent: between fork and exec only async-signal-safe work belongs.
    prctl = ctypes.CDLL(None, use_errno=True).prctl if sys.platform == "linux" else None

    def arrange() -> None:
        if prctl is None:
            return
        prctl(_PR_SET_PDEATHSIG, signum, 0, 0, 0)
        if os.getppid() != parent_pid:  # the parent died before the request above took effect
            os.kill(os.getpid(), signum)

    return arrange


class ParentWatcher:
    """Runs `stop_command` (as `user`, when given) as soon as this process is gone, unless `close()`d first."""

    def __init__(self, stop_command: Sequence[str], user: str | None = None) -> None:
        args = [sys.executable, "-m", "app.stack.lifetime", str(os.getpid()), *(["--user", user] if user else []), "--"]
        self.process = subprocess.Popen(
            [*args, *stop_command],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            start_new_session=True,  # a Ctrl-C in the terminal must not end the watcher before its parent
        )

    def close(self) -> None:
        """The parent stopped the daemon itself: end the watcher without running its command."""
        with contextlib.suppress(ProcessLookupError):
            self.process.kill()
        self.process.wait()


def watch(parent_pid: int, stop_command: Sequence[str], user: str | None) -> int:
    for signum in (signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, signal.SIG_IGN)
    while os.getppid() == parent_pid:
        time.sleep(WATCH_INTERVAL_S)
    print(f"fleetbed: process {parent_pid} is gone; running: {' '.join(stop_command)}", file=sys.stderr)
    return subprocess.run(stop_command, user=user, stdin=subprocess.DEVNULL, check=False).returncode


def main(argv: Sequence[str]) -> int:
    parent, *rest = argv
    user = None
    if rest[:1] == ["--user"]:
        user, rest = rest[1], rest[2:]
    return watch(int(parent), rest[1:] if rest[:1] == ["--"] else rest, user)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
