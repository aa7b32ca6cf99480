"""The live line of a running experiment: devices, requests/s, p95, failures, schedule lag, the SLO so far and
time left.

Read from the Locust master's `/metrics`, whose `fleetbed_generator_recent_*` gauges are the last 10 s with the
SLO's definitions (`app.slo`): exact percentiles of the HTTP requests and of the devices' slots, not histogram
bucket bounds. On a terminal the line is redrawn in place; elsewhere a line is printed every `PLAIN_EVERY_S`.
"""

from __future__ import annotations

import math
import time
import urllib.request
from dataclasses import dataclass
from typing import IO

from prometheus_client.parser import text_string_to_metric_families

PLAIN_EVERY_S = 10.0


@dataclass(frozen=True)
class GeneratorSample:
    devices: float
    requests: float  # since the start
    failures: float  # since the start
    rate: float  # requests a second, last 10 s (NaN: not measured yet)
    p95_ms: float  # last 10 s
    lag_p99_ms: float  # last 10 s
    slo_met: bool | None  # the open window so far; None while it warms up or without objectives


def parse_generator(text: str) -> GeneratorSample:
    devices = requests = failures = 0.0
    rate = p95 = lag = math.nan
    slo_met: bool | None = None
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            name, labels = sample.name, sample.labels
            if name == "fleetbed_generator_devices":
                devices = sample.value
            elif name == "locust_requests_total":
                requests += sample.value
            elif name == "locust_failures_total":
                failures += sample.value
            elif name == "fleetbed_generator_recent_requests_per_second":
                rate = sample.value
            elif name == "fleetbed_generator_recent_request_seconds" and labels.get("quantile") == "0.95":
                p95 = sample.value * 1000.0
            elif name == "fleetbed_generator_recent_schedule_lag_seconds" and labels.get("quantile") == "0.99":
                lag = sample.value * 1000.0
            elif name == "fleetbed_generator_window_slo_met":
                slo_met = sample.value >= 1.0
    return GeneratorSample(devices, requests, failures, rate, p95, lag, slo_met)


def read_generator(url: str) -> GeneratorSample:
    with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 (a local http URL)
        return parse_generator(response.read().decode())


def _ms(value: float) -> str:
    if math.isnan(value):
        return "-"
    return f"{value:,.0f} ms" if value < 10_000 else f"{value / 1000:,.1f} s"


def line(sample: GeneratorSample, left: str) -> str:
    rate = "-" if math.isnan(sample.rate) else f"{sample.rate:,.1f}"
    slo = "" if sample.slo_met is None else f" | SLO {'met' if sample.slo_met else 'BROKEN'} so far"
    return (
        f"{sample.devices:,.0f} devices | {rate} req/s | p95 {_ms(sample.p95_ms)} | "
        f"{sample.failures:,.0f} failures of {sample.requests:,.0f} | lag p99 {_ms(sample.lag_p99_ms)}{slo} | {left}"
    )


class ProgressLine:
    def __init__(self, metrics_url: str, stream: IO[str], duration_s: float | None) -> None:
        self.metrics_url = metrics_url
        self.stream = stream
        self.tty = stream.isatty()
        self.duration_s = duration_s
        self.started = time.monotonic()
        self.last_plain = 0.0
        self.text = ""

    def update(self, status: str | None = None) -> None:
        """Redraw (or print) the line; `status` replaces the time left (a capacity search has no planned end)."""
        try:
            sample = read_generator(self.metrics_url)
        except (OSError, ValueError):
            return
        now = time.monotonic()
        elapsed = now - self.started
        if status is None:
            status = "until failure" if self.duration_s is None else f"{max(0.0, self.duration_s - elapsed):.0f} s left"
        self.text = line(sample, status)
        if self.tty:
            self.stream.write("\r\033[K" + self.text)
            self.stream.flush()
        elif now - self.last_plain >= PLAIN_EVERY_S:
            self.last_plain = now
            self.stream.write(self.text + "\n")
            self.stream.flush()

    def finish(self) -> None:
        if self.tty and self.text:
            self.stream.write("\n")
            self.stream.flush()
