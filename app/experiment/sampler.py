"""Resources of the service and the generator during a run, sampled every second into `resources.csv`.

The service's own `/metrics` is read (worker samples summed), so the evidence exists with or without Prometheus;
the generator's CPU comes from `/proc/<pid>/stat` of the Locust process. Columns are cumulative counters or
gauges as read; `analysis` turns them into rates per step.
"""

from __future__ import annotations

import csv
import os
import threading
import time
import urllib.request
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

# Column name -> (sample name, value kind); every sample of that name is summed over its labels.
SERVICE_SAMPLES: dict[str, str] = {
    "service_cpu_seconds": "process_cpu_seconds_total",
    "service_rss_bytes": "process_resident_memory_bytes",
    "pool_waiting": "fleetbed_db_pool_waiting_acquires",
    "pool_in_use": "fleetbed_db_pool_in_use_connections",
    "pool_max": "fleetbed_db_pool_max_connections",
    "pool_acquire_seconds_sum": "fleetbed_db_pool_acquire_duration_seconds_sum",
    "pool_acquire_count": "fleetbed_db_pool_acquire_duration_seconds_count",
    "commit_seconds_sum": "fleetbed_ingest_commit_duration_seconds_sum",
    "commit_count": "fleetbed_ingest_commit_duration_seconds_count",
    "gc_pause_seconds_sum": "python_gc_pause_seconds_sum",
    "loop_lag_seconds_sum": "fleetbed_event_loop_lag_seconds_sum",
    "loop_lag_count": "fleetbed_event_loop_lag_seconds_count",
    "request_seconds_sum": "fleetbed_http_request_duration_seconds_sum",
    "request_count": "fleetbed_http_request_duration_seconds_count",
}
COLUMNS = ["timestamp", *SERVICE_SAMPLES, "generator_cpu_seconds"]
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


# A saturated service answers its scrape late, and that is exactly when the evidence matters: wait for it.
SCRAPE_TIMEOUT_S = 10.0


def read_service_metrics(url: str, timeout_s: float = SCRAPE_TIMEOUT_S) -> dict[str, float]:
    with urllib.request.urlopen(url, timeout=timeout_s) as response:  # noqa: S310 (the run's own http URL)
        text = response.read().decode()
    wanted = {sample: column for column, sample in SERVICE_SAMPLES.items()}
    values = dict.fromkeys(SERVICE_SAMPLES, 0.0)
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            column = wanted.get(sample.name)
            if column is not None:
                values[column] += sample.value
    return values


def process_cpu_seconds(pid: int) -> float | None:
    """User + system CPU of a process and its waited-for children, or None once it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    # After the ")" of the command name: utime, stime, cutime, cstime are fields 12..15 (0-based from state).
    return sum(int(value) for value in fields[11:15]) / CLOCK_TICKS


class ResourceSampler:
    """A thread writing one row per `interval_s` to `path` until `stop()`."""

    def __init__(self, path: Path, metrics_url: str, interval_s: float = 1.0) -> None:
        self.path = path
        self.metrics_url = metrics_url
        self.interval_s = interval_s
        self.generator_pid: int | None = None
        self.latest: dict[str, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="resource-sampler", daemon=True)

    def start(self) -> ResourceSampler:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(SCRAPE_TIMEOUT_S + 5)

    def _run(self) -> None:
        with self.path.open("w", newline="") as out:
            writer = csv.DictWriter(out, COLUMNS)
            writer.writeheader()
            while not self._stop.is_set():
                started = time.monotonic()
                row = self._sample()
                if row is not None:
                    writer.writerow(row)
                    out.flush()
                    self.latest = row
                self._stop.wait(max(0.0, self.interval_s - (time.monotonic() - started)))

    def _sample(self) -> dict[str, float] | None:
        try:
            row = read_service_metrics(self.metrics_url)
        except (OSError, ValueError):
            return None  # the service is starting or stopping: no row rather than zeros
        row["timestamp"] = time.time()  # when the answer came: the counters are at least this recent
        generator = process_cpu_seconds(self.generator_pid) if self.generator_pid else None
        row["generator_cpu_seconds"] = generator if generator is not None else float("nan")
        return row
