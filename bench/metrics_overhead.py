"""What the observability costs, as ratios measured in one run on this machine:

- a garbage collection with the GC-pause callback installed vs without it;
- a /metrics body merged from N workers' registries (what the worker that takes a scrape does with --workers N)
  vs one process's registry, for N = 2, 4, 8.

    .venv/bin/python bench/metrics_overhead.py
"""

from __future__ import annotations

import gc
import statistics
import time
from collections.abc import Callable

from prometheus_client import CollectorRegistry, generate_latest

from app.metrics.runtime import EventLoopLagProbe, GCPauseRecorder
from app.metrics.service import ServiceMetrics
from app.metrics.workers import merge_expositions

ROUTES = ("/login", "/command", "/measurement", "/stats", "/healthz", "/metrics")


def best_of(runs: int, repeat: int, work: Callable[[], object]) -> float:
    """Median over `runs` of the time of `repeat` calls, per call (seconds)."""
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        for _ in range(repeat):
            work()
        samples.append((time.perf_counter() - started) / repeat)
    return statistics.median(samples)


def busy_registry() -> CollectorRegistry:
    """A service registry with the series a loaded service has (every route and status seen)."""
    metrics = ServiceMetrics()
    GCPauseRecorder(metrics.registry)
    EventLoopLagProbe(metrics.registry)
    for route in ROUTES:
        for status in (200, 201, 401, 422, 503):
            for _ in range(17):
                metrics.requests.record("GET", route, status, 0.004)
    return metrics.registry


def gc_ratio() -> tuple[float, float]:
    garbage = [[{"n": n}] for n in range(50_000)]  # a heap for the collector to walk
    without = best_of(7, 20, lambda: gc.collect(0))
    recorder = GCPauseRecorder(CollectorRegistry())
    recorder.start()
    try:
        with_callback = best_of(7, 20, lambda: gc.collect(0))
    finally:
        recorder.stop()
    del garbage
    return without, with_callback


def main() -> None:
    rows: list[tuple[str, float, float]] = []
    without, with_callback = gc_ratio()
    rows.append(("gc.collect(0) without the pause callback", without * 1e6, 1.0))
    rows.append(("gc.collect(0) with the pause callback / without", with_callback * 1e6, with_callback / without))
    registry = busy_registry()
    one = best_of(7, 50, lambda: generate_latest(registry))
    rows.append(("/metrics body, one process (baseline)", one * 1e6, 1.0))
    text = generate_latest(registry).decode()
    for workers in (2, 4, 8):
        texts = dict.fromkeys(range(workers), text)
        merged = best_of(7, 20, lambda texts=texts: merge_expositions(texts, len(texts), 0))  # type: ignore[misc]
        rows.append((f"/metrics body merged from {workers} workers / one process", merged * 1e6, merged / one))
    width = max(len(name) for name, _, _ in rows)
    print(f"{'what':<{width}}  {'us per call':>12}  {'ratio':>7}")
    for name, micros, ratio in rows:
        print(f"{name:<{width}}  {micros:>12.1f}  {ratio:>7.2f}")


if __name__ == "__main__":
    main()
