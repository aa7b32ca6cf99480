"""The app factory: `create_app(settings)` wires routes, middlewares and one cleanup context per resource."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from aiohttp import web

from app.command_cache import CommandCache
from app.db.migrations import load_migrations
from app.db.pool import create_pool, read_layout
from app.drain import Drain
from app.handlers import devices, health, operator, runs, stats
from app.ingest import BatchWriter
from app.keys import COMMANDS, DRAIN, INGEST, LAYOUT, LOGIN_LIMIT, METRICS, MIGRATIONS, POOL, SETTINGS, TOKENS
from app.login_limit import LoginRateLimit
from app.metrics.service import ServiceMetrics
from app.metrics.workers import metrics_handler
from app.middleware import boundary_middleware, expect_handler
from app.observability import service_observers
from app.openapi import openapi_document
from app.planted_load import cpu_heavy_middleware
from app.responses import json_response
from app.settings import Settings
from app.tokens import TokenVerifier

log = logging.getLogger(__name__)


@asynccontextmanager
async def database_pool(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    if settings.database_url is None:
        raise RuntimeError("create_app needs a database_url; the CLI starts the embedded database and sets it")
    pool = await create_pool(
        settings.database_url, settings.pool_min_size, settings.pool_max_size, settings.db_timeout_s
    )
    try:
        async with pool.acquire() as conn:
            layout = await read_layout(conn)
        app[LAYOUT] = layout
        app[POOL] = pool
        log.info(
            "database ready (%s%s)",
            f"TimescaleDB {layout.timescaledb_version}" if layout.timescaledb_version else "PostgreSQL",
            "" if layout.migrated else "; schema not migrated yet: run fleetbed migrate",
        )
        yield
    finally:
        if not await app[DRAIN].step("the database connections to close", pool.close()):
            pool.terminate()


@asynccontextmanager
async def ingest_writer(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    writer = BatchWriter(
        app[POOL],
        app[METRICS],
        writers=settings.ingest_writers,
        max_queued_readings=settings.ingest_queue_readings,
        max_wait_s=settings.ingest_wait_s,
    )
    writer.start()
    app[INGEST] = writer
    yield
    # Runs after the server stopped accepting and in-flight requests finished: write what is still queued.
    await app[DRAIN].step(f"{writer.queued_readings} queued readings to be written", writer.close())


@asynccontextmanager
async def command_cache_listener(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    assert settings.database_url is not None
    listener = asyncio.create_task(app[COMMANDS].listen(settings.database_url), name="command-cache-listener")
    yield
    listener.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await listener


def create_app(settings: Settings) -> web.Application:
    metrics = ServiceMetrics()
    app = web.Application(
        client_max_size=settings.max_body_bytes,
        middlewares=[boundary_middleware(metrics, settings.max_body_bytes)],
    )
    if settings.test_handler_cpu_ms > 0:  # a planted CPU-heavy handler, for the diagnosis tests only
        app.middlewares.append(cpu_heavy_middleware(settings.test_handler_cpu_ms))
    app[SETTINGS] = settings
    app[METRICS] = metrics
    app[DRAIN] = Drain(settings.drain_timeout_s)
    app[LOGIN_LIMIT] = LoginRateLimit(settings.login_rate_per_s, settings.login_burst, settings.workers)
    if settings.enrolment == "closed":
        log.warning(
            "enrolment closed: listening on %s without FLEETBED_ENROLL_KEY, so new devices cannot register "
            "(set FLEETBED_ENROLL_KEY, or FLEETBED_ENROLL_OPEN=1 to let anyone register)",
            settings.host,
        )

    async def begin_drain(app: web.Application) -> None:
        app[DRAIN].begin()

    app.on_shutdown.append(begin_drain)
    app[MIGRATIONS] = load_migrations()
    app.cleanup_ctx.append(database_pool)
    app.cleanup_ctx.append(ingest_writer)
    app[COMMANDS] = CommandCache()
    app[TOKENS] = TokenVerifier(settings.secret)
    app.cleanup_ctx.append(command_cache_listener)
    app.cleanup_ctx.append(service_observers)  # GC pauses, loop lag, pool and fleet-size metrics

    document = openapi_document()

    async def openapi(request: web.Request) -> web.Response:
        return json_response(document)

    routes = [
        web.post("/login", devices.login),
        web.get("/command", devices.get_command),
        web.post("/measurement", devices.post_measurement),
        web.get("/stats", stats.get_stats),
        web.put("/devices/{device_id}/command", operator.put_command),
        web.delete("/devices/{device_id}/command", operator.delete_command),
        web.put("/devices/{device_id}/metadata", operator.put_metadata),
        web.delete("/devices/{device_id}/secret", operator.delete_secret),
        web.post("/runs", runs.post_run),
        web.get("/runs", runs.get_runs),
        web.get("/runs/{run_id}", runs.get_one_run),
        web.post("/runs/{run_id}/snapshots", runs.post_snapshot),
        web.post("/runs/{run_id}/finish", runs.post_finish),
        web.get("/healthz", health.healthz),
        web.get("/readyz", health.readyz),
        web.get("/metrics", metrics_handler(metrics.registry)),
        web.get("/openapi.json", openapi),
    ]
    app.add_routes(
        web.RouteDef(r.method, r.path, r.handler, {**r.kwargs, "expect_handler": expect_handler}) for r in routes
    )
    return app
