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
    fleetbed_generator_recent_requests_per_second  gauge    HTTP requests a second over the last 10 s
    fleetbed_generator_recent_failures_per_second  gauge    failed HTTP requests a second over the last 10 s
    fleetbed_generator_recent_request_seconds{quantile}        gauge  exact percentiles (0.5, 0.95, 0.99) of
    fleetbed_generator_recent_schedule_lag_seconds{quantile}   gauge  the last 10 s (not bucket bounds)
    fleetbed_generator_window_slo_met              gauge    the open window's SLO so far: 1 met, 0 broken (absent
                                                            while it warms up, or without --slo)
    process_cpu_seconds_total                      counter  CPU of this process (the master, or the one local
                                                            process), with the other process_* figures
    fleetbed_generator_busiest_worker_cpu_cores    gauge    the busiest worker's CPU, as workers report it to the
                                                            master (every few seconds); absent without workers
    fleetbed_generator_workers_cpu_cores           gauge    all workers' CPU together; absent without workers

Each Locust process runs on one core, so the busiest one's CPU says whether the generator itself was the limit.

Names (`name`) are Locust request names (URL templates), so labels stay bounded. The `locust_*` families are
HTTP requests only; the slots and the backlog are the fleet's own figures (`_fleet_stats`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any

from _fleet_stats import fleet_stats
from _live import LiveState
from locust.env import Environment
from prometheus_client import CollectorRegistry, ProcessCollector, start_http_server
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


QUANTILES = (50, 95, 99)


class LocustCollector(Collector):
    def __init__(self, environment: Environment, state: Callable[[], LiveState | None]) -> None:
        self.environment = environment
        self.state = state

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
        if clients is not None and len(clients):
            # Locust's own figure: each worker's process CPU in percent of one core, sent with its heartbeat.
            cores = [float(getattr(worker, "cpu_usage", 0) or 0) / 100.0 for worker in clients.values()]
            yield GaugeMetricFamily(
                "fleetbed_generator_busiest_worker_cpu_cores", "The busiest worker's CPU, cores", value=max(cores)
            )
            yield GaugeMetricFamily("fleetbed_generator_workers_cpu_cores", "All workers' CPU, cores", value=sum(cores))

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
        yield from self.collect_live()

    def collect_live(self) -> Iterator[Metric]:
        state = self.state()
        if state is None:
            return
        recent = state.recent.figures
        yield GaugeMetricFamily(
            "fleetbed_generator_recent_requests_per_second",
            "HTTP requests a second over the last 10 s",
            value=state.recent.per_second(recent.request_count()),
        )
        yield GaugeMetricFamily(
            "fleetbed_generator_recent_failures_per_second",
            "Failed HTTP requests a second over the last 10 s",
            value=state.recent.per_second(recent.failure_count()),
        )
        latency = GaugeMetricFamily(
            "fleetbed_generator_recent_request_seconds", "Request latency percentiles, last 10 s", labels=["quantile"]
        )
        lag = GaugeMetricFamily(
            "fleetbed_generator_recent_schedule_lag_seconds", "Schedule lag percentiles, last 10 s", labels=["quantile"]
        )
        for percent in QUANTILES:
            label = [f"{percent / 100:g}"]
            if (value := recent.latency_ms(percent)) is not None:
                latency.add_metric(label, value / 1000.0)
            if (value := recent.lag_ms(percent)) is not None:
                lag.add_metric(label, value / 1000.0)
        yield from (latency, lag)
        verdict = state.verdict
        if verdict is not None and verdict.checks:
            yield GaugeMetricFamily(
                "fleetbed_generator_window_slo_met", "The open window's SLO so far", value=int(bool(verdict.passed))
            )


def serve_metrics(environment: Environment, host: str, port: int, state: Callable[[], LiveState | None]) -> Any:
    """Start the /metrics server; returns (server, thread) for shutdown."""
    registry = CollectorRegistry()
    registry.register(LocustCollector(environment, state))
    ProcessCollector(registry=registry)  # process_cpu_seconds_total of the master (or the one local process)
    server = start_http_server(port, addr=host, registry=registry)
    log.info("Prometheus metrics of the load generator on http://%s:%s/metrics", host, port)
    return server
