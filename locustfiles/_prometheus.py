"""Prometheus metrics of the Locust master (or a single local process), served on `--prometheus-port` (9646).

Read from the master's aggregated stats at scrape time, so they cover all workers:

    locust_users                                   gauge    users running (a user carries --devices-per-user devices)
    fleetbed_generator_devices                     gauge    simulated devices (users x devices per user)
    locust_workers                                 gauge    workers connected (by state); 0 when running alone
    locust_requests_total{method,name}             counter  requests by request name
    locust_failures_total{method,name}             counter  failed requests by request name
    locust_request_duration_seconds{method,name}   histogram  latency by request name
    fleetbed_generator_schedule_lag_seconds        histogram  actual minus planned start of the devices' slots
                                                            (given-up slots at the lag they were given up at)
    fleetbed_generator_slots_total                 counter  slots due (served + given up)
    fleetbed_generator_missed_slots_total          counter  slots given up by devices more than an interval behind
    fleetbed_generator_backlog_readings            gauge    readings taken and not yet uploaded, all devices

Names (`name`) are Locust request names (URL templates), so labels stay bounded. The `locust_*` families are
HTTP requests only; the slots and the backlog are the fleet's own figures (`_fleet_stats`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

from _fleet_stats import fleet_stats
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
    for bound, count in zip((*bounds_ms, None), counts, strict=True):
        running += count
        buckets.append(("+Inf" if bound is None else repr(bound / 1000.0), float(running)))
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
        for entry in list(runner.stats.entries.values()):
            labels = [entry.method or "", entry.name]
            requests.add_metric(labels, entry.num_requests)
            failures.add_metric(labels, entry.num_failures)
            latency.add_metric(
                labels,
                histogram_buckets(dict(entry.response_times), LATENCY_BUCKETS_MS),
                entry.total_response_time / 1000.0,
            )
        yield from (requests, failures, latency)

        fleet = fleet_stats(self.environment)
        slots = fleet.slots()
        lag = HistogramMetricFamily("fleetbed_generator_schedule_lag_seconds", "Device slot start minus its plan")
        lag_sum_s = sum(value * count for value, count in slots.lag.items()) / 1000.0
        lag.add_metric([], histogram_buckets(dict(slots.lag), LAG_BUCKETS_MS), lag_sum_s)
        yield lag
        yield CounterMetricFamily("fleetbed_generator_slots", "Device slots due (served + given up)", value=slots.due)
        yield CounterMetricFamily(
            "fleetbed_generator_missed_slots",
            "Slots given up by devices more than an interval behind",
            value=slots.given_up,
        )
        yield GaugeMetricFamily(
            "fleetbed_generator_backlog_readings", "Readings taken and not yet uploaded", value=fleet.backlog_total()
        )


def serve_metrics(environment: Environment, host: str, port: int) -> Any:
    """Start the /metrics server; returns (server, thread) for shutdown."""
    registry = CollectorRegistry()
    registry.register(LocustCollector(environment))
    server = start_http_server(port, addr=host, registry=registry)
    log.info("Prometheus metrics of the load generator on http://%s:%s/metrics", host, port)
    return server
