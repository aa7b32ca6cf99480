"""`fleetbed report --prometheus` on a one-hour run at 1 s resolution: how long it takes (goal: under 10 s).

The run is made up (tests/support/synthetic_prometheus.py: the Locust master, the service, node_exporter on two
hosts and postgres_exporter, under the real metric names), backfilled into a real Prometheus TSDB with
`promtool tsdb create-blocks-from openmetrics`, and reported by the real command in its own process, three times.

    .venv/bin/python bench/report_from_prometheus.py
"""

from __future__ import annotations

import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from app.stack.processes import free_port
from app.stack.prometheus_server import LocalPrometheus
from tests.support.synthetic_prometheus import SyntheticRun, backfill, config

SECONDS = 3600
ROUNDS = 3


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="fleetbed-bench-report-") as name:
        work = Path(name)
        start = math.floor(time.time()) - 4 * 3600
        run = SyntheticRun(start=start, seconds=SECONDS, steps=12, users_per_step=100, stress_from=8, plant="lock")
        started = time.monotonic()
        backfill(run, work / "tsdb", work)
        backfill_s = time.monotonic() - started
        with LocalPrometheus(config(work / "prometheus.yml"), work / "tsdb", free_port()) as prometheus:
            timings = []
            for round_ in range(ROUNDS):
                out = work / f"report-{round_}"
                started = time.monotonic()
                done = subprocess.run(
                    [sys.executable, "-m", "app", "report", "--prometheus", prometheus.url, "--from", str(start),
                     "--to", str(start + SECONDS - 1), "--out", str(out)],
                    capture_output=True, text=True, check=True,
                    env={**os.environ, "FLEETBED_DATA_DIR": str(work / "data")},
                )  # fmt: skip
                timings.append(time.monotonic() - started)
        rows = sum(1 for _ in (out / "locust_stats_history.csv").open()) - 1
        load = os.getloadavg()[0]
        print("| figure | measured |\n|---|---|")
        print(f"| run | {SECONDS} s at 1 s, 12 steps, {rows:,} Locust history rows |")
        print(f"| backfill (promtool) | {backfill_s:.1f} s |")
        print(f"| `fleetbed report --prometheus`, median of {ROUNDS} (whole process) | "
              f"{statistics.median(timings):.1f} s (all: {', '.join(f'{t:.1f}' for t in timings)}) |")  # fmt: skip
        print(f"| goal | under 10 s: {'met' if statistics.median(timings) < 10 else 'not met'} |")
        print(f"| load average during the run | {load:.1f} on {os.cpu_count()} cores |")
        print(f"| verdict | {done.stdout.strip()} |")


if __name__ == "__main__":
    main()
