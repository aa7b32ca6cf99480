"""Planted load for the diagnosis tests: with `FLEETBED_TEST_HANDLER_CPU_MS` set, every request first spins the
CPU for that long on the event loop, the way a CPU-heavy handler would. Never set it outside tests; unset (the
default) the middleware is not installed at all."""

from __future__ import annotations

import time

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware


def spin(seconds: float) -> None:
    """Busy CPU for `seconds` of this thread's CPU time (not wall time: a descheduled process still owes it)."""
    deadline = time.thread_time() + seconds
    while time.thread_time() < deadline:
        pass


def cpu_heavy_middleware(cpu_ms: float) -> Middleware:
    @web.middleware
    async def cpu_heavy(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path not in ("/metrics", "/healthz", "/readyz"):
            spin(cpu_ms / 1000)
        return await handler(request)

    return cpu_heavy
