"""Running the service: one process, or N worker processes sharing one port (SO_REUSEPORT).

With N workers, /metrics on the shared port answers for all of them (app/metrics/workers.py): each worker also
serves its registry on a private Unix socket in a directory this supervisor creates and removes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import multiprocessing.connection
import os
import shutil
import signal
import tempfile
import time
from collections.abc import AsyncIterator
from multiprocessing.process import BaseProcess
from pathlib import Path
from types import FrameType

from aiohttp import web

from app.http_parse_errors import answer_in_json
from app.keys import DRAIN, METRICS
from app.log_filters import quiet_client_protocol_errors
from app.metrics.workers import WorkerSlot, serve_worker_metrics
from app.server import create_app
from app.settings import Settings

log = logging.getLogger(__name__)

SUPERVISOR_CHECK_S = 1.0
QUICK_FAILURE_S = 10.0  # a worker that exits sooner than this after its start failed to start
MAX_QUICK_FAILURES = 5
WORKER_KILL_GRACE_S = 5.0


def use_uvloop() -> bool:
    """Switch to uvloop when it is installed (the `fast` extra); report whether it is in use."""
    try:
        import uvloop
    except ImportError:
        return False
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    return True


def stop_with_supervisor(app: web.Application, supervisor_pid: int) -> None:
    """A worker whose supervisor is gone (killed outright, so it could not pass the stop on) stops as if sent
    SIGTERM: an orphaned worker would go on serving the port with nothing left to stop it."""

    async def watch() -> None:
        while os.getppid() == supervisor_pid:  # noqa: ASYNC110  (a parent's death has no event to await)
            await asyncio.sleep(SUPERVISOR_CHECK_S)
        log.warning("the supervisor (pid %d) is gone: stopping this worker", supervisor_pid)
        os.kill(os.getpid(), signal.SIGTERM)

    async def watching(app: web.Application) -> AsyncIterator[None]:
        task = asyncio.create_task(watch())
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    app.cleanup_ctx.append(watching)


def stop_on_hangup(app: web.Application) -> None:
    """SIGHUP stops the worker the way SIGTERM and SIGINT do (aiohttp handles those two)."""

    def graceful_exit() -> None:
        raise web.GracefulExit()

    async def handle_hangup(app: web.Application) -> AsyncIterator[None]:
        loop = asyncio.get_running_loop()
        before = signal.getsignal(signal.SIGHUP)
        loop.add_signal_handler(signal.SIGHUP, graceful_exit)
        yield
        loop.remove_signal_handler(signal.SIGHUP)
        signal.signal(signal.SIGHUP, before)  # e.g. the command's own, for the rest of its stop

    app.cleanup_ctx.append(handle_hangup)


def run_worker(settings: Settings, slot: WorkerSlot | None = None, supervisor_pid: int | None = None) -> None:
    """Serve in this process until SIGINT/SIGTERM/SIGHUP; aiohttp stops accepting, finishes requests, runs
    cleanups, all within the drain budget (app/drain.py)."""
    use_uvloop()
    quiet_client_protocol_errors()
    answer_in_json()
    app = create_app(settings)
    if slot is not None:
        serve_worker_metrics(app, app[METRICS].registry, slot)
    if supervisor_pid is not None:
        stop_with_supervisor(app, supervisor_pid)
    stop_on_hangup(app)
    drain = app[DRAIN]

    async def arm_watchdog(app: web.Application) -> None:
        drain.begin()
        drain.arm_watchdog()

    app.on_shutdown.insert(0, arm_watchdog)
    web.run_app(
        app,
        host=settings.host,
        port=settings.port,
        reuse_port=settings.workers > 1,
        shutdown_timeout=drain.aiohttp_shutdown_timeout_s,
        keepalive_timeout=settings.keepalive_timeout_s,
        print=None,
        access_log=None,
    )


def serve(settings: Settings) -> None:
    if settings.workers == 1:
        run_worker(settings)
        return
    socket_dir = Path(tempfile.mkdtemp(prefix="fleetbed-metrics-"))
    try:
        Supervisor(settings, socket_dir).run()
    finally:
        shutil.rmtree(socket_dir, ignore_errors=True)


class Supervisor:
    """N worker processes on one port: a worker that exits while the service runs is replaced (one that keeps
    failing right after its start ends the service: something outside it is wrong); SIGTERM, SIGINT and SIGHUP
    are passed on to every worker, and one that outlives the drain budget is killed."""

    def __init__(self, settings: Settings, socket_dir: Path) -> None:
        self.settings = settings
        self.socket_dir = socket_dir
        self.context = multiprocessing.get_context("spawn")
        self.workers: list[BaseProcess] = []
        self.started_at: list[float] = []
        self.quick_failures = [0] * settings.workers
        self.stopping_since: float | None = None
        self.signalled: set[int] = set()

    def start_worker(self, index: int) -> BaseProcess:
        worker = self.context.Process(
            target=run_worker,
            args=(self.settings, WorkerSlot(index, self.settings.workers, self.socket_dir), os.getpid()),
            name=f"fleetbed-worker-{index}",
        )
        worker.start()
        return worker

    def stop(self, signum: int, frame: FrameType | None) -> None:
        if self.stopping_since is None:
            self.stopping_since = time.monotonic()
            log.info("%s: stopping %d workers", signal.Signals(signum).name, len(self.workers))
        self.pass_stop_on()

    def run(self) -> None:
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(signum, self.stop)
        for index in range(self.settings.workers):
            self.workers.append(self.start_worker(index))
            self.started_at.append(time.monotonic())
        failed: list[str] = []
        while True:
            alive = [worker for worker in self.workers if worker.is_alive()]
            if self.stopping_since is not None and not alive:
                break
            multiprocessing.connection.wait([worker.sentinel for worker in alive], SUPERVISOR_CHECK_S)
            if self.stopping_since is None:
                failed = self.replace_exited()
                if failed:
                    self.stopping_since = time.monotonic()
            if self.stopping_since is not None:
                self.pass_stop_on()
        failed += [w.name for w in self.workers if w.exitcode not in (0, -signal.SIGTERM)]
        if failed:
            raise SystemExit(f"workers exited with errors: {', '.join(sorted(set(failed)))}")

    def replace_exited(self) -> list[str]:
        """Start a new worker in place of each one that exited; the names of slots that keep failing at start."""
        given_up = []
        for index, worker in enumerate(self.workers):
            if worker.exitcode is None:
                continue
            lived_s = time.monotonic() - self.started_at[index]
            self.quick_failures[index] = self.quick_failures[index] + 1 if lived_s < QUICK_FAILURE_S else 0
            if self.quick_failures[index] >= MAX_QUICK_FAILURES:
                log.error("%s failed %d times within %g s of its start; stopping the service", worker.name,
                          MAX_QUICK_FAILURES, QUICK_FAILURE_S)  # fmt: skip
                given_up.append(worker.name)
                continue
            log.warning("%s (pid %s) exited with %s after %.0f s; starting a new one", worker.name, worker.pid,
                        worker.exitcode, lived_s)  # fmt: skip
            if self.quick_failures[index]:
                time.sleep(SUPERVISOR_CHECK_S)  # no tight loop when a worker cannot start
            self.workers[index] = self.start_worker(index)
            self.started_at[index] = time.monotonic()
        return given_up

    def pass_stop_on(self) -> None:
        """SIGTERM to every worker not yet told; SIGKILL to those still running after the drain budget."""
        assert self.stopping_since is not None
        overdue = time.monotonic() - self.stopping_since > self.settings.drain_timeout_s + WORKER_KILL_GRACE_S
        for worker in self.workers:
            if worker.pid is None or not worker.is_alive():
                continue
            if overdue:
                log.error("%s (pid %d) still running after the drain budget; killing it", worker.name, worker.pid)
                worker.kill()
            elif worker.pid not in self.signalled:
                self.signalled.add(worker.pid)
                os.kill(worker.pid, signal.SIGTERM)
