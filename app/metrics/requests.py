"""Request counts and latencies, recorded with plain integers and turned into Prometheus metrics at scrape time.

prometheus_client's Counter and Histogram take a lock on every update so that threads can share them; the
service records from one event-loop thread per process, and those locks were a measurable part of answering a
cached GET /command. This collector exposes exactly what they did (`fleetbed_http_requests_total` by method,
route and status; the `fleetbed_http_request_duration_seconds` histogram by method and route) at a fraction of
the cost. It must only be updated from the event loop's thread.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable, Sequence

from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector


class _Latency:
    __slots__ = ("buckets", "sum")

    def __init__(self, bucket_count: int) -> None:
        self.buckets = [0] * (bucket_count + 1)  # the last one is +Inf
        self.sum = 0.0


class RequestMetrics(Collector):
    def __init__(self, buckets: Sequence[float]) -> None:
        self._bounds = tuple(buckets)
        self._counts: dict[tuple[str, str, int], int] = {}
        self._latencies: dict[tuple[str, str], _Latency] = {}

    def record(self, method: str, route: str, status: int, seconds: float) -> None:
        key = (method, route, status)
        self._counts[key] = self._counts.get(key, 0) + 1
        latency = self._latencies.get((method, route))
        if latency is None:
            latency = self._latencies[method, route] = _Latency(len(self._bounds))
        latency.buckets[bisect_left(self._bounds, seconds)] += 1
        latency.sum += seconds

    def collect(self) -> Iterable[Metric]:
        requests = CounterMetricFamily(
            "fleetbed_http_requests",
            "HTTP requests answered, by method, route template and status code.",
            labels=["method", "route", "status"],
        )
        for (method, route, status), count in list(self._counts.items()):
            requests.add_metric([method, route, str(status)], count)
        yield requests
        durations = HistogramMetricFamily(
            "fleetbed_http_request_duration_seconds",
            "Time from request received to response ready, by method and route template.",
            labels=["method", "route"],
        )
        labels = [*(f"{bound:g}" if bound != int(bound) else f"{bound:.1f}" for bound in self._bounds), "+Inf"]
        for (method, route), latency in list(self._latencies.items()):
            cumulative, running = [], 0
            for label, count in zip(labels, latency.buckets, strict=True):
                running += count
                cumulative.append((label, running))
            durations.add_metric([method, route], cumulative, latency.sum)
        yield durations
