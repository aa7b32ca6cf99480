"""Python runtime metrics beyond the stock collectors: GC pause time per generation and event-loop lag.

The stock collectors (registered by `ServiceMetrics`) already give process CPU, resident memory, open fds and GC
collection counts. What they do not give is *how long* the process stood still:

- `python_gc_pause_seconds{generation}`: a histogram fed by `gc.callbacks` (the time between the "start" and
  "stop" phases of each collection), the counterpart of GHC's GC pause statistics.
- `fleetbed_event_loop_lag_seconds`: how late a timer that asked for `LAG_PROBE_INTERVAL_S` of sleep woke up. A
  handler that blocks the loop (CPU-bound work, a synchronous call) shows here before it shows in latency.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import time
from typing import Any

from prometheus_client import CollectorRegistry, Gauge, Histogram

# GC pauses range from microseconds (generation 0) to hundreds of milliseconds (a full collection of a big heap).
GC_PAUSE_BUCKETS_S = (
    0.00001, 0.00005, 0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
)  # fmt: skip
LOOP_LAG_BUCKETS_S = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
LAG_PROBE_INTERVAL_S = 0.25


class GCPauseRecorder:
    """Times every garbage collection through `gc.callbacks`; `start()` installs the callback, `stop()` removes it."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.pauses = Histogram(
            "python_gc_pause_seconds",
            "Time the interpreter spent in one garbage collection, by generation collected.",
            ["generation"],
            buckets=GC_PAUSE_BUCKETS_S,
            registry=registry,
        )
        self._by_generation = [self.pauses.labels(str(generation)) for generation in range(3)]
        self._started_at: float | None = None

    def _on_gc(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._started_at = time.perf_counter()
        elif self._started_at is not None:
            self._by_generation[info["generation"]].observe(time.perf_counter() - self._started_at)
            self._started_at = None

    def start(self) -> None:
        if self._on_gc not in gc.callbacks:
            gc.callbacks.append(self._on_gc)

    def stop(self) -> None:
        with contextlib.suppress(ValueError):
            gc.callbacks.remove(self._on_gc)


class EventLoopLagProbe:
    """A task that sleeps `interval_s` over and over and records how late it wakes up."""

    def __init__(self, registry: CollectorRegistry, interval_s: float = LAG_PROBE_INTERVAL_S) -> None:
        self.interval_s = interval_s
        self.lag = Histogram(
            "fleetbed_event_loop_lag_seconds",
            f"How late the event loop ran a timer due every {interval_s} s (time blocked by other work).",
            buckets=LOOP_LAG_BUCKETS_S,
            registry=registry,
        )
        self.last_lag = Gauge(
            "fleetbed_event_loop_last_lag_seconds",
            "The lag of the most recent event-loop probe.",
            registry=registry,
        )
        self._task: asyncio.Task[None] | None = None

    async def _probe(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            due = loop.time() + self.interval_s
            await asyncio.sleep(self.interval_s)
            lag = max(0.0, loop.time() - due)
            self.lag.observe(lag)
            self.last_lag.set(lag)

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._probe(), name="event-loop-lag-probe")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
