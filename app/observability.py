"""Wires the runtime and database collectors into a running app: one cleanup context, registered by `create_app`.

`ServiceMetrics` (app/metrics/service.py) holds the request and ingest metrics the handlers update; this module adds the
collectors that watch the process and the database from the side (GC pauses, event-loop lag, pool, SQL
statement time, fleet size), all in the same registry, started after the pool exists and stopped before it closes.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from aiohttp import web

from app.db.fleet_size import FleetSizeMetrics
from app.keys import METRICS, POOL
from app.metrics.pool import PoolMetrics
from app.metrics.runtime import EventLoopLagProbe, GCPauseRecorder
from app.metrics.statements import StatementMetrics


@dataclass(frozen=True)
class Observers:
    """The side collectors of one app, reachable by tests and benchmarks as `app[OBSERVERS]`."""

    gc_pauses: GCPauseRecorder
    loop_lag: EventLoopLagProbe
    pool: PoolMetrics
    statements: StatementMetrics
    fleet_size: FleetSizeMetrics


OBSERVERS = web.AppKey("observers", Observers)


@asynccontextmanager
async def service_observers(app: web.Application) -> AsyncIterator[None]:
    metrics = app[METRICS]
    observers = Observers(
        gc_pauses=GCPauseRecorder(metrics.registry),
        loop_lag=EventLoopLagProbe(metrics.registry),
        pool=PoolMetrics(metrics.registry),
        statements=StatementMetrics(metrics.registry),
        fleet_size=FleetSizeMetrics(metrics.registry, metrics.query_duration),
    )
    app[OBSERVERS] = observers
    observers.pool.attach(app[POOL], on_acquire=observers.statements.watch)
    observers.gc_pauses.start()
    observers.loop_lag.start()
    observers.fleet_size.start(app[POOL])
    try:
        yield
    finally:
        await observers.fleet_size.stop()
        await observers.loop_lag.stop()
        observers.gc_pauses.stop()
        observers.pool.detach()
