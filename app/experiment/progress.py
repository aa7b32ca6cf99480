"""The live line of a running experiment: devices, requests/s, p95, failures and time left.

Read from the Locust master's `/metrics` (the fleet's generator metrics): rates and p95 over the last few
seconds, from the differences of its counters and histogram buckets. On a terminal the line is redrawn in place;
elsewhere a line is printed every `PLAIN_EVERY_S`.
"""

from __future__ import annotations

import math
import time
import urllib.request
from collections import deque
from dataclasses import dataclass
from typing import IO

from prometheus_client.parser import text_string_to_metric_families

WINDOW_S = 5.0
PLAIN_EVERY_S = 10.0


@dataclass(frozen=True)
class GeneratorSample:
    at: float
    devices: float
    requests: float
    failures: float
    buckets: dict[float, float]  # upper bound (s) -> cumulative count, all requests


def read_generator(url: str) -> GeneratorSample:
    with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 (a local http URL)
        text = response.read().decode()
    devices = requests = failures = 0.0
    buckets: dict[float, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "fleetbed_generator_devices":
                devices = sample.value
            elif sample.name == "locust_requests_total":
                requests += sample.value
            elif sample.name == "locust_failures_total":
                failures += sample.value
            elif sample.name == "locust_request_duration_seconds_bucket":
                bound = float(sample.labels["le"])
                buckets[bound] = buckets.get(bound, 0.0) + sample.value
    return GeneratorSample(time.monotonic(), devices, requests, failures, buckets)


def p95_seconds(newer: GeneratorSample, older: GeneratorSample) -> float:
    bounds = sorted(newer.buckets)
    counts = [newer.buckets[b] - older.buckets.get(b, 0.0) for b in bounds]
    if not counts or counts[-1] <= 0:
        return math.nan
    target = 0.95 * counts[-1]
    return next(bound for bound, count in zip(bounds, counts, strict=True) if count >= target)


class ProgressLine:
    def __init__(self, metrics_url: str, stream: IO[str], duration_s: float | None) -> None:
        self.metrics_url = metrics_url
        self.stream = stream
        self.tty = stream.isatty()
        self.duration_s = duration_s
        self.started = time.monotonic()
        self.samples: deque[GeneratorSample] = deque()
        self.last_plain = 0.0
        self.text = ""

    def update(self) -> None:
        try:
            sample = read_generator(self.metrics_url)
        except (OSError, ValueError):
            return
        self.samples.append(sample)
        while len(self.samples) > 2 and sample.at - self.samples[0].at > WINDOW_S:
            self.samples.popleft()
        older = self.samples[0]
        span = max(1e-9, sample.at - older.at)
        rate = (sample.requests - older.requests) / span if span > 0.5 else math.nan
        p95 = p95_seconds(sample, older)
        elapsed = sample.at - self.started
        left = "until failure" if self.duration_s is None else f"{max(0.0, self.duration_s - elapsed):.0f} s left"
        p95_text = "-" if math.isnan(p95) else (f"<= {p95 * 1000:.0f} ms" if math.isfinite(p95) else "> 30 s")
        rate_text = "-" if math.isnan(rate) else f"{rate:.1f}"
        self.text = (
            f"{sample.devices:,.0f} devices | {rate_text} req/s | p95 {p95_text} | "
            f"{sample.failures:,.0f} failures of {sample.requests:,.0f} | {left}"
        )
        if self.tty:
            self.stream.write("\r\033[K" + self.text)
            self.stream.flush()
        elif sample.at - self.last_plain >= PLAIN_EVERY_S:
            self.last_plain = sample.at
            self.stream.write(self.text + "\n")
            self.stream.flush()

    def finish(self) -> None:
        if self.tty and self.text:
            self.stream.write("\n")
            self.stream.flush()
