"""One benchmark point, in its own process: simulate N devices against the bare endpoint with Locust as a library,
warm up (spawn, log in, one full interval), then measure one window. Prints one JSON line.

Modes: `plain` is the baseline, one FastHttpUser per device sleeping until each planned slot of its own
schedule; `grouped` is the fleet's FleetUser carrying --devices-per-user devices served by
--connections-per-user workers, each on its own lean connection; `grouped-fasthttp` is the same with the
workers sharing the user's FastHttpSession.
"""

import argparse
import json
import os
import random
import resource
import time
from pathlib import Path

import gevent
from _device import SimulatedDevice
from _fleet_stats import fleet_stats
from _fleet_user import FleetUser
from locust import FastHttpUser, constant, task
from locust.env import Environment

from app.slo import percentile


def rss_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of another process (the endpoint), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def plain_user(interval_s: float) -> type[FastHttpUser]:
    class PlainKettle(FastHttpUser):
        """The baseline: one user, one connection, one greenlet per device, sleeping until its next slot."""

        wait_time = constant(0)

        def on_start(self) -> None:
            self.device = SimulatedDevice(random.Random(), interval_s, 0.1)

        @task
        def cycle(self) -> None:
            gevent.sleep(max(0.0, self.device.schedule.next_due - time.monotonic()))
            now = time.monotonic()
            slot = self.device.schedule.take(interval_s, now, random)  # type: ignore[arg-type]
            fleet = fleet_stats(self.environment)
            fleet.gave_up(slot.skipped, (now - slot.planned) * 1000.0)  # counted as in the grouped design
            self.device.cycle(self.client, slot.planned, fleet.served)

    return PlainKettle


def grouped_user() -> type[FleetUser]:
    class GroupedKettle(FleetUser):
        pass

    return GroupedKettle


def raise_open_file_limit() -> None:
    """One connection per device in the baseline: let descriptors, not CPU, never be what stops it."""
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    for wanted in (1 << 20, hard):
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, wanted))
            return
        except (ValueError, OSError):
            continue


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=["plain", "grouped", "grouped-fasthttp"])
    parser.add_argument("devices", type=int)
    parser.add_argument("host")
    parser.add_argument("--interval", type=float, default=30.0)
    parser.add_argument("--devices-per-user", type=int, default=500)
    parser.add_argument("--connections-per-user", type=int, default=20)
    parser.add_argument("--window", type=float, default=30.0)
    parser.add_argument("--server-pid", type=int, default=0)
    args = parser.parse_args()
    raise_open_file_limit()

    per_user = 1 if args.mode == "plain" else args.devices_per_user
    options = argparse.Namespace(
        devices_per_user=per_user, connections_per_user=args.connections_per_user,
        device_interval=args.interval, device_jitter=0.1,
        http_client="fasthttp" if args.mode == "grouped-fasthttp" else "lean",
    )  # fmt: skip
    user = plain_user(args.interval) if args.mode == "plain" else grouped_user()
    environment = Environment(user_classes=[user], host=args.host, parsed_options=options)
    runner = environment.create_local_runner()
    users = -(-args.devices // per_user)
    rss_before = rss_bytes()
    started = time.monotonic()
    runner.start(users, spawn_rate=2_000 if args.mode == "plain" else 50)
    while runner.user_count < users:
        gevent.sleep(0.5)
    spawn_s = time.monotonic() - started
    gevent.sleep(args.interval + 5)
    runner.stats.reset_all()
    fleet = fleet_stats(environment)
    fleet.reset()
    server_start = process_cpu_seconds(args.server_pid) if args.server_pid else 0.0
    cpu_start, window_start = cpu_seconds(), time.monotonic()
    gevent.sleep(args.window)
    elapsed = time.monotonic() - window_start
    cpu = (cpu_seconds() - cpu_start) / elapsed
    server_cpu = (process_cpu_seconds(args.server_pid) - server_start) / elapsed if args.server_pid else None
    slots = fleet.slots()
    requests = list(runner.stats.entries.values())
    result = {
        "mode": args.mode,
        "devices": users * per_user,
        "planned_rps": users * per_user * 2 / args.interval,
        "achieved_rps": sum(e.num_requests for e in requests) / elapsed,
        "failures": sum(e.num_failures for e in requests) + slots.given_up,
        "lag_p50_ms": percentile(slots.lag, 50),
        "lag_p99_ms": percentile(slots.lag, 99),
        "latency_p99_ms": max((e.get_response_time_percentile(0.99) for e in requests if e.num_requests), default=None),
        "cpu": cpu,
        "server_cpu": server_cpu,
        "rss_mb": rss_bytes() / 2**20,
        "bytes_per_device": (rss_bytes() - rss_before) / (users * per_user),
        "spawn_s": spawn_s,
        "errors": sorted(
            (e.occurrences, f"{e.method} {e.name}: {e.error}"[:160]) for e in runner.stats.errors.values()
        )[-3:],
    }
    runner.quit()
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
