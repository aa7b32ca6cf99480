"""Liveness and readiness."""

from __future__ import annotations

import asyncio

from aiohttp import web

from app.db import DATABASE_UNAVAILABLE
from app.db.migrations import MigrationError, pending_migrations
from app.keys import MIGRATIONS, POOL
from app.responses import json_response

READINESS_TIMEOUT_S = 2.0


async def healthz(request: web.Request) -> web.Response:
    return json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    """200 when the database answers and every migration this code knows is applied; 503 otherwise."""
    try:
        async with asyncio.timeout(READINESS_TIMEOUT_S):
            async with request.app[POOL].acquire() as conn:
                pending = await pending_migrations(conn, request.app[MIGRATIONS])
    except MigrationError as exc:
        return json_response({"status": "not_ready", "reason": str(exc)}, status=503, headers={"Retry-After": "5"})
    except DATABASE_UNAVAILABLE:
        return json_response(
            {"status": "not_ready", "reason": "the database is unreachable"},
            status=503,
            headers={"Retry-After": "1"},
        )
    if pending:
        names = ", ".join(f"{m.version:03d}_{m.name}" for m in pending)
        return json_response(
            {"status": "not_ready", "reason": f"migrations not applied: {names}; run fleetbed migrate"},
            status=503,
            headers={"Retry-After": "5"},
        )
    return json_response({"status": "ready"})
