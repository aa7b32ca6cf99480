"""Connection-pool metrics: size, in use, waiting, and how long an acquire waited.

A starved pool looks like a slow database from the outside (every query's duration includes its wait for a
connection); these series tell the two apart. Sizes are read from the pool at scrape time. Waiters and acquire
time come from wrapping the pool's single acquisition path (`Pool._acquire`, used by both `pool.acquire()` and
the `pool.fetch*` shortcuts); when a future asyncpg renames it, the wrap is skipped and only the sizes remain.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from typing import Any

import asyncpg
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

log = logging.getLogger(__name__)

ACQUIRE_BUCKETS_S = (0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class _PoolSizeCollector(Collector):
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    def collect(self) -> Iterable[GaugeMetricFamily]:
        size = self.pool.get_size()
        yield GaugeMetricFamily("fleetbed_db_pool_size_connections", "Connections open in the pool.", value=size)
        yield GaugeMetricFamily(
            "fleetbed_db_pool_max_connections", "The pool's maximum size.", value=self.pool.get_max_size()
        )
        yield GaugeMetricFamily(
            "fleetbed_db_pool_in_use_connections",
            "Connections checked out of the pool.",
            value=size - self.pool.get_idle_size(),
        )


class PoolMetrics:
    """Registers pool gauges and instruments acquisition of one asyncpg pool."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.waiting = Gauge(
            "fleetbed_db_pool_waiting_acquires",
            "Acquires waiting for a free connection (or for one to be opened).",
            registry=registry,
        )
        self.acquire_duration = Histogram(
            "fleetbed_db_pool_acquire_duration_seconds",
            "Time from asking the pool for a connection to getting one.",
            buckets=ACQUIRE_BUCKETS_S,
            registry=registry,
        )
        self.acquire_failures = Counter(
            "fleetbed_db_pool_acquire_failures_total",
            "Acquires that ended without a connection (timeout, cancellation, connection error).",
            registry=registry,
        )
        self._sizes: _PoolSizeCollector | None = None
        self._untimed: tuple[asyncpg.Pool, type[asyncpg.Pool]] | None = None

    def attach(self, pool: asyncpg.Pool, on_acquire: Callable[[Any], None] | None = None) -> None:
        """Start reporting on `pool` (one pool per app); `on_acquire(connection)` runs on every acquired one."""
        self._sizes = _PoolSizeCollector(pool)
        self.registry.register(self._sizes)
        original = getattr(type(pool), "_acquire", None)
        if original is None:
            log.warning("this asyncpg has no Pool._acquire: pool wait metrics are off")
            return
        metrics = self

        async def timed_acquire(pool_self: asyncpg.Pool, timeout: Any) -> Any:  # noqa: ASYNC109 (asyncpg's signature)
            started = time.perf_counter()
            metrics.waiting.inc()
            try:
                connection = await original(pool_self, timeout)
            except BaseException:
                metrics.acquire_failures.inc()
                raise
            finally:
                metrics.waiting.dec()
            metrics.acquire_duration.observe(time.perf_counter() - started)
            if on_acquire is not None:
                on_acquire(connection)
            return connection

        # Pool has __slots__, so the method cannot be replaced on the instance: the pool becomes an instance of a
        # subclass (same layout, no new slots) whose `_acquire` is timed.
        timed_pool = type("TimedPool", (type(pool),), {"__slots__": (), "_acquire": timed_acquire})
        self._untimed = (pool, type(pool))
        pool.__class__ = timed_pool

    def detach(self) -> None:
        if self._sizes is not None:
            self.registry.unregister(self._sizes)
            self._sizes = None
        if self._untimed is not None:
            pool, pool_class = self._untimed
            pool.__class__ = pool_class
            self._untimed = None
