"""Resources of the service and the generator during a run, sampled every second into `resources.csv`, and this
machine's own figures into `hosts.csv` (host "local", see `app.experiment.hosts`).

The service's own `/metrics` is read (worker samples summed), so the evidence exists with or without Prometheus;
the generator's CPU comes from `/proc/<pid>/stat` of the Locust process. Columns are cumulative counters or
gauges as read; `analysis` turns them into rates per step. The machine's figures (CPU by mode, memory, swap,
disks, network, and PostgreSQL's processes when the database runs here) come from /proc, as rates already.
"""

from __future__ import annotations

import csv
import math
import os
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from app.experiment.hosts import HOSTS_FILE, write_rows

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


LOCAL_HOST = "local"
_BUSY_MODES = (0, 1, 2, 5, 6, 7)  # user, nice, system, irq, softirq, steal of /proc/stat's cpu line
_IOWAIT_MODE = 4


def _cpu_modes() -> tuple[int, float, float]:
    """(cores, busy seconds, I/O wait seconds) of the whole machine so far."""
    cores, busy, iowait = 0, 0.0, 0.0
    for line in Path("/proc/stat").read_text().splitlines():
        if line.startswith("cpu "):
            ticks = [int(value) for value in line.split()[1:]]
            busy = sum(ticks[index] for index in _BUSY_MODES if index < len(ticks)) / CLOCK_TICKS
            iowait = ticks[_IOWAIT_MODE] / CLOCK_TICKS
        elif line.startswith("cpu"):
            cores += 1
    return cores, busy, iowait


def _memory() -> tuple[float, float]:
    """(available share of memory, pages swapped in + out so far)."""
    info = {}
    for line in Path("/proc/meminfo").read_text().splitlines():
        name, _, rest = line.partition(":")
        info[name] = float(rest.split()[0])
    swapped = 0.0
    for line in Path("/proc/vmstat").read_text().splitlines():
        name, _, value = line.partition(" ")
        if name in ("pswpin", "pswpout"):
            swapped += float(value)
    return info.get("MemAvailable", math.nan) / max(1.0, info.get("MemTotal", 1.0)), swapped


def _disks() -> dict[str, tuple[float, float, float]]:
    """Per block device: (I/Os completed, seconds spent on them, seconds the device was busy) so far."""
    disks = {}
    for line in Path("/proc/diskstats").read_text().splitlines():
        fields = line.split()
        if len(fields) >= 14 and not fields[2].startswith("ram"):
            ios = float(fields[3]) + float(fields[7])
            disks[fields[2]] = (ios, (float(fields[6]) + float(fields[10])) / 1000, float(fields[12]) / 1000)
    return disks


def _network_bytes() -> float:
    total = 0.0
    for line in Path("/proc/net/dev").read_text().splitlines()[2:]:
        name, _, counters = line.partition(":")
        if name.strip() != "lo":
            fields = counters.split()
            total += float(fields[0]) + float(fields[8])
    return total


def _postgres_cpu_seconds() -> float:
    """CPU of every process named `postgres` here (the postmaster's waited-for children included)."""
    total = 0.0
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if stat[stat.find("(") + 1 : stat.rfind(")")] == "postgres":
                total += sum(int(v) for v in stat.rsplit(")", 1)[1].split()[11:15]) / CLOCK_TICKS
    return total


class LocalHostProbe:
    """This machine's figures as rates since the previous reading: one row per quantity per `read()`."""

    def __init__(self, database_here: bool) -> None:
        self.database_here = database_here
        self._previous: dict[str, float] = {}
        self._previous_disks: dict[str, tuple[float, float, float]] = {}
        self._previous_at = math.nan

    def read(self) -> Iterator[tuple[str, float]]:
        now = time.monotonic()
        cores, busy, iowait = _cpu_modes()
        available, swapped = _memory()
        counters = {"cpu_busy_cores": busy, "cpu_iowait_cores": iowait, "swap_pages_per_s": swapped,
                    "net_bytes_per_s": _network_bytes()}  # fmt: skip
        if self.database_here:
            counters["postgres_cpu_cores"] = _postgres_cpu_seconds()
        disks = _disks()
        elapsed = now - self._previous_at
        yield "cpu_cores", float(cores)
        yield "mem_available_ratio", available
        if math.isfinite(elapsed) and elapsed > 0:
            for name, value in counters.items():
                yield name, max(0.0, value - self._previous.get(name, value)) / elapsed
            util, await_ms = 0.0, math.nan
            for disk, (ios, io_seconds, busy_seconds) in disks.items():
                before = self._previous_disks.get(disk, (ios, io_seconds, busy_seconds))
                disk_util = (busy_seconds - before[2]) / elapsed
                if disk_util >= util and ios > before[0]:
                    util, await_ms = disk_util, 1000 * (io_seconds - before[1]) / (ios - before[0])
            yield "disk_util", min(1.0, util)
            yield "disk_await_ms", await_ms
        self._previous, self._previous_disks, self._previous_at = counters, disks, now


class ResourceSampler:
    """A thread writing one row per `interval_s` to `path` until `stop()`."""

    def __init__(
        self, path: Path, metrics_url: str, interval_s: float = 1.0, host_probe: LocalHostProbe | None = None
    ) -> None:
        self.path = path
        self.host_probe = host_probe
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
                self._sample_host()
                row = self._sample()
                if row is not None:
                    writer.writerow(row)
                    out.flush()
                    self.latest = row
                self._stop.wait(max(0.0, self.interval_s - (time.monotonic() - started)))

    def _sample_host(self) -> None:
        if self.host_probe is None:
            return
        when = time.time()
        try:
            readings = list(self.host_probe.read())
        except (OSError, ValueError, IndexError):
            return  # not a Linux /proc: the report names the machine's figures as unseen
        write_rows(self.path.parent / HOSTS_FILE, ((when, LOCAL_HOST, q, v) for q, v in readings), append=True)

    def _sample(self) -> dict[str, float] | None:
        try:
            row = read_service_metrics(self.metrics_url)
        except (OSError, ValueError):
            return None  # the service is starting or stopping: no row rather than zeros
        row["timestamp"] = time.time()  # when the answer came: the counters are at least this recent
        generator = process_cpu_seconds(self.generator_pid) if self.generator_pid else None
        row["generator_cpu_seconds"] = generator if generator is not None else float("nan")
        return row


def database_is_local(database_url: str) -> bool:
    """Whether the database URL points at this machine (a socket, localhost or a loopback address)."""
    host = urllib.parse.urlsplit(database_url).hostname or ""
    return host in ("", "localhost") or host.startswith("127.") or host == "::1" or host.startswith("/")


def local_host_roles(database_url: str) -> tuple[dict[str, list[str]], list[str]]:
    """The roles of this machine in a local experiment, and what the local sampler cannot see."""
    here = database_is_local(database_url)
    roles = {LOCAL_HOST: ["service", "generator", *(["database"] if here else [])]}
    unseen = [
        "PostgreSQL's wait events, commits and WAL timing (no postgres_exporter in a local experiment; "
        "`fleetbed report --prometheus` reads them from a deployment's postgres_exporter)"
    ]
    if not here:
        where = urllib.parse.urlsplit(database_url).hostname
        unseen.insert(0, f"the database host {where}: its CPU, memory and disks (run node_exporter there)")
    return roles, unseen
