"""Prometheus metrics of the Locust master (or a single local process), served on `--prometheus-port` (9646).

Read from the master's aggregated stats at scrape time, so they cover all workers:

    locust_users                                   gauge    users running (a user carries --devices-per-user devices)
    fleetbed_generator_devices                     gauge    simulated devices (users x devices per user)
    locust_workers                                 gauge    workers connected (by state); 0 when running alone
    locust_requests_total{method,name}             counter  requests by request name
    locust_failures_total{method,name}             counter  failed requests by request name
    locust_request_duration_seconds{method,name}   histogram  latency by request name
    fleetbed_generator_schedule_lag_seconds        histogram  actual minus planned send time of device cycles
    fleetbed_generator_missed_slots_total          counter  slots given up by devices more than an interval behind

Names (`name`) are Locust request names (URL templates), so labels stay bounded.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

from _slo import LAG_REQUEST_TYPE
from locust.env import Environment
from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

log = logging.getLogger(__name__)

LATENCY_BUCKETS_MS = (5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000)
LAG_BUCKETS_MS = (1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000)


def histogram_buckets(response_times: dict[int, int], bounds_ms: tuple[int, ...]) -> list[tuple[str, float]]:
    """Cumulative Prometheus buckets (upper bounds in seconds) from Locust's {ms: count} dict."""
    counts = [0] * (len(bounds_ms) + 1)
    for value, count in response_times.items():
        for index, bound in enumerate(bounds_ms):
            if value <= bound:
                counts[index] += count
                break
        else:
            counts[-1] += count
    buckets = []
    running = 0
    for upper, count in zip((*bounds_ms, None), counts, strict=True):
        running += count
        buckets.append(("+Inf" if upper is None else repr(upper / 1000.0), float(running)))
    return buckets


class LocustCollector(Collector):
    def __init__(self, environment: Environment) -> None:
        self.environment = environment

    def collect(self) -> Iterator[Metric]:
        runner = self.environment.runner
        if runner is None:
            return
        options = self.environment.parsed_options
        per_user = max(1, int(getattr(options, "devices_per_user", 1) or 1))
        yield GaugeMetricFamily("locust_users", "Locust users running", value=runner.user_count)
        yield GaugeMetricFamily("fleetbed_generator_devices", "Simulated devices", value=runner.user_count * per_user)
        workers = GaugeMetricFamily("locust_workers", "Workers connected to the master", labels=["state"])
        clients: Any = getattr(runner, "clients", None)
        if clients is not None:
            states: dict[str, int] = {}
            for worker in clients.values():
                states[str(worker.state)] = states.get(str(worker.state), 0) + 1
            for state, count in sorted(states.items()):
                workers.add_metric([state], count)
        yield workers

        requests = CounterMetricFamily("locust_requests", "Requests by request name", labels=["method", "name"])
        failures = CounterMetricFamily("locust_failures", "Failed requests by request name", labels=["method", "name"])
        latency = HistogramMetricFamily(
            "locust_request_duration_seconds", "Request latency by request name", labels=["method", "name"]
        )
        lag = HistogramMetricFamily("fleetbed_generator_schedule_lag_seconds", "Device cycle start minus its plan")
        missed = CounterMetricFamily(
            "fleetbed_generator_missed_slots", "Slots given up by devices more than an interval behind"
        )
        missed_count = 0
        for entry in list(runner.stats.entries.values()):
            times = dict(entry.response_times)
            total_s = entry.total_response_time / 1000.0
            if entry.method == LAG_REQUEST_TYPE:
                lag.add_metric([], histogram_buckets(times, LAG_BUCKETS_MS), total_s)
                missed_count += entry.num_failures
                continue
            labels = [entry.method or "", entry.name]
            requests.add_metric(labels, entry.num_requests)
            failures.add_metric(labels, entry.num_failures)
            latency.add_metric(labels, histogram_buckets(times, LATENCY_BUCKETS_MS), total_s)
        missed.add_metric([], missed_count)
        yield from (requests, failures, latency, lag, missed)


def serve_metrics(environment: Environment, host: str, port: int) -> Any:
    """Start the /metrics server; returns (server, thread) for shutdown."""
    registry = CollectorRegistry()
    registry.register(LocustCollector(environment))
    server = start_http_server(port, addr=host, registry=registry)
    log.info("Prometheus metrics of the load generator on http://%s:%s/metrics", host, port)
    return server
