"""Running the service: one process, or N worker processes sharing one port (SO_REUSEPORT).

With N workers, /metrics on the shared port answers for all of them (app/metrics/workers.py): each worker also
serves its registry on a private Unix socket in a directory this supervisor creates and removes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import os
import shutil
import signal
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from types import FrameType

from aiohttp import web

from app.keys import METRICS
from app.log_filters import quiet_client_protocol_errors
from app.metrics.workers import WorkerSlot, serve_worker_metrics
from app.server import create_app
from app.settings import Settings

log = logging.getLogger(__name__)

SHUTDOWN_TIMEOUT_S = 30.0
SUPERVISOR_CHECK_S = 1.0


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


def run_worker(settings: Settings, slot: WorkerSlot | None = None, supervisor_pid: int | None = None) -> None:
    """Serve in this process until SIGINT/SIGTERM; aiohttp stops accepting, finishes requests, runs cleanups."""
    use_uvloop()
    quiet_client_protocol_errors()
    app = create_app(settings)
    if slot is not None:
        serve_worker_metrics(app, app[METRICS].registry, slot)
    if supervisor_pid is not None:
        stop_with_supervisor(app, supervisor_pid)
    web.run_app(
        app,
        host=settings.host,
        port=settings.port,
        reuse_port=settings.workers > 1,
        shutdown_timeout=SHUTDOWN_TIMEOUT_S,
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
        supervise(settings, socket_dir)
    finally:
        shutil.rmtree(socket_dir, ignore_errors=True)


def supervise(settings: Settings, socket_dir: Path) -> None:
    context = multiprocessing.get_context("spawn")
    workers = [
        context.Process(
            target=run_worker,
            args=(settings, WorkerSlot(n, settings.workers, socket_dir), os.getpid()),
            name=f"fleetbed-worker-{n}",
        )
        for n in range(settings.workers)
    ]
    for worker in workers:
        worker.start()

    def forward(signum: int, frame: FrameType | None) -> None:
        for worker in workers:
            if worker.pid is not None and worker.is_alive():
                os.kill(worker.pid, signal.SIGTERM)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    for worker in workers:
        worker.join()
    failed = [w.name for w in workers if w.exitcode not in (0, -signal.SIGTERM)]
    if failed:
        raise SystemExit(f"workers exited with errors: {', '.join(failed)}")
