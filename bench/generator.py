"""Generator efficiency: how many devices one Locust process can simulate at the original experiment's rate (one
poll and one measurement per device every 30 s) with schedule lag p99 <= 250 ms, against a bare endpoint.

Compares, in one run, the plain baseline (one FastHttpUser per device) with the fleet's grouped design
(FleetUser carrying --devices-per-user devices served by --connections worker greenlets, each on its own lean
keep-alive connection; each device keeps its own id, token, state and schedule), and optionally the grouped
design on FastHttpSession (--fasthttp). Each point runs in a fresh process pinned to CPU 0 (its open-file limit
raised, so the baseline is limited by CPU, not descriptors); the bare endpoint is pinned to CPU 1. A mode's
ladder stops at its first failing point. Prints a table, the capacities and their ratio, and the CPU cost per
request of each mode at its largest passing point.

    .venv/bin/python bench/generator.py [--interval 30] [--plain 5000,10000,...] [--grouped 25000,50000,...]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

from app.slo import DEFAULT_SLO, objective_limit
from app.stack.processes import free_port

HERE = Path(__file__).resolve().parent
LAG_LIMIT_MS = objective_limit(DEFAULT_SLO, "lag_p99") or 250.0  # a point passes at the default SLO's lag p99


def pin(pid: int, cpu: int) -> None:
    if hasattr(os, "sched_setaffinity") and cpu < (os.cpu_count() or 1):
        os.sched_setaffinity(pid, {cpu})


def wait_for_port(port: int, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"the bare endpoint did not listen on {port}")


def run_point(mode: str, devices: int, host: str, server_pid: int, args: argparse.Namespace) -> dict[str, object]:
    command = [
        sys.executable,
        str(HERE / "_generator_run.py"),
        mode,
        str(devices),
        host,
        "--server-pid",
        str(server_pid),
    ]
    command += ["--interval", str(args.interval), "--window", str(args.window)]
    command += ["--devices-per-user", str(args.devices_per_user), "--connections-per-user", str(args.connections)]
    # The run imports the fleet's modules as Locust does, as top-level modules of locustfiles/.
    env = {**os.environ, "PYTHONPATH": str(HERE.parent / "locustfiles")}
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    pin(process.pid, 0)
    stdout, stderr = process.communicate(timeout=args.interval * 3 + args.window + 600)
    lines = [line for line in stdout.splitlines() if line.startswith("{")]
    if process.returncode != 0 or not lines:
        return {"mode": mode, "devices": devices, "error": (stderr or stdout).strip().splitlines()[-1:]}
    result: dict[str, object] = json.loads(lines[-1])
    return result


def passed(result: dict[str, object]) -> bool:
    lag = result.get("lag_p99_ms")
    planned = float(result.get("planned_rps", 0) or 0)  # type: ignore[arg-type]
    achieved = float(result.get("achieved_rps", 0) or 0)  # type: ignore[arg-type]
    return (
        "error" not in result
        and lag is not None
        and float(lag) <= LAG_LIMIT_MS  # type: ignore[arg-type]
        and result.get("failures") == 0
        and achieved >= 0.9 * planned
    )


def fmt(value: object, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--interval", type=float, default=30.0, help="seconds between a device's cycles")
    parser.add_argument("--window", type=float, default=30.0, help="measured seconds per point (after warm-up)")
    parser.add_argument("--plain", default="5000,10000,15000,20000,25000", help="device counts for the baseline")
    parser.add_argument(
        "--grouped", default="50000,75000,100000,125000,150000", help="device counts for the grouped design"
    )
    parser.add_argument("--fasthttp", default="", help="device counts for the grouped design on FastHttpSession")
    parser.add_argument("--devices-per-user", type=int, default=500)
    parser.add_argument("--connections", type=int, default=20, help="connections per grouped user")
    args = parser.parse_args()

    port = free_port()
    server = subprocess.Popen(
        [sys.executable, str(HERE / "_bare_endpoint.py"), str(port), str(int(args.interval))],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    pin(server.pid, 1)
    try:
        wait_for_port(port)
        host = f"http://127.0.0.1:{port}"
        results: list[dict[str, object]] = []
        capacity: dict[str, int] = {}
        for mode, ladder in (("plain", args.plain), ("grouped", args.grouped), ("grouped-fasthttp", args.fasthttp)):
            for devices in (int(n) for n in ladder.split(",") if n):
                result = run_point(mode, devices, host, server.pid, args)
                result["ok"] = passed(result)
                results.append(result)
                print(json.dumps(result), file=sys.stderr, flush=True)
                if not result["ok"]:
                    break
                capacity[mode] = devices
    finally:
        server.terminate()
        server.wait()

    print(f"\none poll + one measurement per device every {args.interval:g} s; pass = lag p99 <= {LAG_LIMIT_MS:g} ms,")
    print("no failures, >= 90% of the planned rate; generator pinned to one core, bare endpoint on the other")
    print("(CPU: generator process; server: the bare endpoint, both as a share of one core over the window)\n")
    header = f"{'mode':<16} {'devices':>8} {'planned/s':>10} {'achieved/s':>10} {'lag p50':>8} {'lag p99':>8} "
    header += f"{'req p99':>8} {'CPU':>5} {'us/req':>7} {'server':>6} {'RSS MB':>7} {'KB/dev':>7} {'pass':>5}"
    print(header)
    for r in results:
        if "error" in r:
            print(f"{r['mode']:<16} {r['devices']:>8} error: {r['error']}")
            continue
        print(
            f"{r['mode']:<16} {r['devices']:>8} {fmt(r['planned_rps'], '.0f'):>10} {fmt(r['achieved_rps'], '.0f'):>10} "
            f"{fmt(r['lag_p50_ms'], '.0f'):>8} {fmt(r['lag_p99_ms'], '.0f'):>8} {fmt(r['latency_p99_ms'], '.0f'):>8} "
            f"{fmt(r['cpu'], '.0%'):>5} {fmt(cpu_us_per_request(r), '.0f'):>7} {fmt(r.get('server_cpu'), '.0%'):>6} "
            f"{fmt(r['rss_mb'], '.0f'):>7} {fmt(float(r['bytes_per_device']) / 1024, '.1f'):>7} "  # type: ignore[arg-type]
            f"{'yes' if r['ok'] else 'NO':>5}"
        )
    print(
        "\ndevices per process meeting the target (each ladder stops at its first failure, so these are lower bounds):"
    )
    for mode in ("plain", "grouped", "grouped-fasthttp"):
        if mode in capacity:
            best = max((r for r in results if r["mode"] == mode and r["ok"]), key=lambda r: int(r["devices"]))  # type: ignore[call-overload]
            print(f"  {mode:<16} {capacity[mode]:>8,}   CPU {cpu_us_per_request(best):.0f} us per request")
    plain, grouped = capacity.get("plain"), capacity.get("grouped")
    if plain and grouped:
        print(f"grouped / plain = {grouped / plain:.1f}x")


def cpu_us_per_request(result: dict[str, object]) -> float | None:
    achieved = float(result.get("achieved_rps") or 0)  # type: ignore[arg-type]
    return float(result["cpu"]) / achieved * 1e6 if achieved else None  # type: ignore[arg-type]


if __name__ == "__main__":
    main()
