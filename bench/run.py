"""Run the benchmarks and print a table of ratios, each measured in this one run, on two servers side by side.

    .venv/bin/python -m bench.run            (needs wrk, taskset and `apt-get install postgresql`; ~10 minutes)

Two PostgreSQL servers run at once: the embedded 18 and Debian's 15 (the versions TimescaleDB installations run
on), each with its own service. The services and the reference servers are pinned to core 0 and wrk to core 1;
PostgreSQL shares both, as it would on a real 2-core host. This machine is shared and noisy, so every comparison
alternates its contestants over several rounds (A B C A B C ...; the bare endpoint and both servers' services in
one alternation) and compares medians, and the /stats latencies of the small and the large databases are sampled
in turn from services running side by side.
"""

from __future__ import annotations

import contextlib
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import psutil

from app.backfill import BackfillPlan, backfill
from app.stack.processes import free_port
from bench import _fleet, _measure
from bench._wrk import WrkResult, get_script, post_script, run_wrk
from tests.support.postgres import POSTGRES_15_BIN, postgres_15_missing

# FLEETBED_BENCH_QUICK=1: one short round of everything, to check the script itself (numbers meaningless).
QUICK = os.environ.get("FLEETBED_BENCH_QUICK") == "1"
ROUNDS = 1 if QUICK else 3
SECONDS = 2 if QUICK else 6
LARGE = (1000, 50) if QUICK else (10_000, 500)  # devices x readings of the large /stats database: 5M


async def fill(url: str, plan: BackfillPlan) -> None:
    conn = await asyncpg.connect(url)
    try:
        await backfill(conn, plan, lambda n: None)
    finally:
        await conn.close()


def alternate(contestants: dict[str, Callable[[int], WrkResult]]) -> dict[str, WrkResult]:
    """Run each contestant once per round, in turn; return each one's median round (by requests/s)."""
    results: dict[str, list[WrkResult]] = {name: [] for name in contestants}
    for round_number in range(ROUNDS):
        for name, run in contestants.items():
            results[name].append(run(round_number))
    return {name: sorted(runs, key=lambda r: r.requests_per_s)[len(runs) // 2] for name, runs in results.items()}


# The servers compared, by column: label -> bin directory (None: the embedded server).
SERVERS = {"18": None, "15": POSTGRES_15_BIN}


def row(name: str, cells: list[str], goal: str) -> str:
    return f"| {name} | " + " | ".join(cells) + f" | {goal} |"


def verdict(ok: bool) -> str:
    return "met" if ok else "NOT met"


def goal_cells(ratios: dict[str, float], measured: dict[str, str], goal: float, at_least: bool = True) -> list[str]:
    """One cell per server: what was measured, the ratio, and whether it meets the goal."""
    return [
        f"{measured[v]} = **{ratios[v]:.2f}** {verdict(ratios[v] >= goal if at_least else ratios[v] <= goal)}"
        for v in SERVERS
    ]


def main() -> None:
    missing = postgres_15_missing()
    if missing:
        raise SystemExit(missing)
    scratch = Path(tempfile.mkdtemp(prefix="fleetbed-bench-lua-"))
    started = time.monotonic()
    start_epoch = int((datetime.now(UTC) - timedelta(days=2)).timestamp())
    with contextlib.ExitStack() as stack:
        servers = {v: stack.enter_context(_fleet.embedded_server(binaries)) for v, binaries in SERVERS.items()}
        urls = {v: _fleet.run(_fleet.fresh_database(server, "bench_api")) for v, server in servers.items()}
        naive_urls = {v: _fleet.run(_fleet.fresh_database(server, "bench_naive")) for v, server in servers.items()}
        tokens = {v: _fleet.run(_fleet.register_devices(url, 2000)) for v, url in urls.items()}
        naive_tokens = {v: _fleet.run(_fleet.register_devices(url, 2000)) for v, url in naive_urls.items()}
        get_lua = {v: get_script(scratch / f"get{v}.lua", tokens[v]) for v in SERVERS}
        names = ["bare", *(f"service{v}" for v in SERVERS), *(f"naive{v}" for v in SERVERS)]
        ports = {name: free_port() for name in names}
        base = {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}

        def post(name: str, device_tokens: list[str]) -> Callable[[int], WrkResult]:
            def run(round_number: int) -> WrkResult:
                # Every round its own hour of readings: nothing is a duplicate of an earlier round.
                script = post_script(
                    scratch / f"{name}{round_number}.lua", device_tokens, start_epoch + 3600 * round_number
                )
                return run_wrk(f"{base[name]}/measurement", script, SECONDS)

            return run

        def get(name: str, script: Path | None) -> Callable[[int], WrkResult]:
            return lambda _: run_wrk(f"{base[name]}/command", script, SECONDS)

        with contextlib.ExitStack() as processes:
            processes.enter_context(_fleet.reference("bare", ports["bare"]))
            services = {v: processes.enter_context(_fleet.service(urls[v], ports[f"service{v}"])) for v in SERVERS}
            for v in SERVERS:
                processes.enter_context(_fleet.reference("naive", ports[f"naive{v}"], dsn=naive_urls[v]))
            for v in SERVERS:  # warm the command caches and token memories
                run_wrk(f"{base[f'service{v}']}/command", get_lua[v], seconds=3)
            gets = alternate(
                {"bare": get("bare", None), **{f"service{v}": get(f"service{v}", get_lua[v]) for v in SERVERS}}
            )
            print("GET: " + ", ".join(f"{k} {r.requests_per_s:,.0f}/s" for k, r in gets.items()), flush=True)
            posts = alternate(
                {
                    "bare": post("bare", tokens["18"]),
                    **{f"service{v}": post(f"service{v}", tokens[v]) for v in SERVERS},
                    **{f"naive{v}": post(f"naive{v}", naive_tokens[v]) for v in SERVERS},
                }
            )
            print("POST: " + ", ".join(f"{k} {r.requests_per_s:,.0f}/s" for k, r in posts.items()), flush=True)
            idle_mib, loaded_mib = _fleet.run(
                _measure.memory_at_connections(ports["service18"], services["18"].pid, tokens["18"])
            )
            print(f"memory: {idle_mib:.0f} MiB idle, {loaded_mib:.0f} MiB at 10k connections", flush=True)

        scaling_urls = {v: _fleet.run(_fleet.fresh_database(server, "bench_scaling")) for v, server in servers.items()}
        scaling_tokens = {v: _fleet.run(_fleet.register_devices(url, 2000)) for v, url in scaling_urls.items()}
        scaling_rates: dict[tuple[str, int], list[float]] = {(v, w): [] for v in SERVERS for w in (1, 2)}
        for round_number in range(ROUNDS):
            for v in SERVERS:
                for workers in (1, 2):
                    port = free_port()
                    with _fleet.service(scaling_urls[v], port, workers=workers, pinned=False):
                        script = post_script(
                            scratch / f"scale{v}-{workers}-{round_number}.lua", scaling_tokens[v],
                            start_epoch + 86_400 + 3600 * (2 * round_number + workers),
                        )  # fmt: skip
                        scaling_rates[v, workers].append(
                            run_wrk(f"http://127.0.0.1:{port}/measurement", script, SECONDS).requests_per_s
                        )
        scaling = {key: statistics.median(rates) for key, rates in scaling_rates.items()}
        print("scaling: " + ", ".join(f"PG{v} {w}w {r:,.0f}/s" for (v, w), r in scaling.items()), flush=True)

        copy_rates: dict[str, list[float]] = {v: [] for v in SERVERS}
        writer_rates: dict[str, list[float]] = {v: [] for v in SERVERS}
        for round_number in range(ROUNDS):
            for v, server in servers.items():
                copy_url = _fleet.run(_fleet.fresh_database(server, f"bench_copy{round_number}"))
                writer_url = _fleet.run(_fleet.fresh_database(server, f"bench_writer{round_number}"))
                copy_rate, writer_rate = _fleet.run(_measure.writer_vs_copy(copy_url, writer_url))
                copy_rates[v].append(copy_rate)
                writer_rates[v].append(writer_rate)
        copy = {v: statistics.median(rates) for v, rates in copy_rates.items()}
        writer = {v: statistics.median(rates) for v, rates in writer_rates.items()}
        for v in SERVERS:
            print(f"writer on PG{v}: COPY {copy[v]:,.0f} rows/s, BatchWriter {writer[v]:,.0f} rows/s", flush=True)

        now = datetime.now(UTC)
        stats_bases: dict[str, str] = {}
        for v, server in servers.items():
            small_url = _fleet.run(_fleet.fresh_database(server, "bench_stats_10k"))
            large_url = _fleet.run(_fleet.fresh_database(server, "bench_stats_5m"))
            _fleet.run(fill(small_url, BackfillPlan(1000, 10, timedelta(seconds=30), now, seed=4)))
            _fleet.run(fill(large_url, BackfillPlan(*LARGE, timedelta(seconds=30), now, seed=4)))
            for size, url in (("10k", small_url), ("5M", large_url)):
                port = free_port()
                stack.enter_context(_fleet.service(url, port))
                stats_bases[f"{v}/{size}"] = f"http://127.0.0.1:{port}"
        latencies = _fleet.run(_measure.stats_latency_side_by_side(stats_bases, _fleet.OPERATOR_TOKEN))
        for label, (p50, p99) in latencies.items():
            print(f"stats on PG{label}: p50 {p50:.2f} ms, p99 {p99:.2f} ms", flush=True)

    print("\n" + "\n".join(table(gets, posts, copy, writer, latencies, scaling, (idle_mib, loaded_mib), started)))
    print("\nmachine load (1, 5, 15 min) at the end: " + " ".join(f"{load:.2f}" for load in os.getloadavg()))


def table(
    gets: dict[str, WrkResult],
    posts: dict[str, WrkResult],
    copy: dict[str, float],
    writer: dict[str, float],
    latencies: dict[str, tuple[float, float]],
    scaling: dict[tuple[str, int], float],
    memory: tuple[float, float],
    started: float,
) -> list[str]:
    service = {v: posts[f"service{v}"] for v in SERVERS}
    command = {v: gets[f"service{v}"] for v in SERVERS}
    post_ratio = {v: service[v].requests_per_s / posts["bare"].requests_per_s for v in SERVERS}
    naive_ratio = {v: service[v].requests_per_s / posts[f"naive{v}"].requests_per_s for v in SERVERS}
    get_ratio = {v: command[v].requests_per_s / gets["bare"].requests_per_s for v in SERVERS}
    writer_ratio = {v: writer[v] / copy[v] for v in SERVERS}
    stats_ratio = {v: latencies[f"{v}/5M"][1] / latencies[f"{v}/10k"][1] for v in SERVERS}
    pg15_vs_18 = service["15"].requests_per_s / service["18"].requests_per_s
    idle_mib, loaded_mib = memory
    rps = {k: f"{r.requests_per_s:,.0f}" for k, r in posts.items()}
    get_rps = {k: f"{r.requests_per_s:,.0f}" for k, r in gets.items()}
    lines = [
        f"fleetbed benchmarks, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {psutil.cpu_count()} cores, "
        f"{psutil.virtual_memory().total / 2**30:.0f} GiB, Python {platform.python_version()}, "
        f"{time.monotonic() - started:.0f} s, medians of {ROUNDS} alternating rounds",
        "",
        "| figure | PostgreSQL 18 (embedded) | PostgreSQL 15 (Debian) | goal |",
        "|---|---|---|---|",
        row("POST /measurement (1 worker, durable ack) vs bare POST returning a constant, req/s",
            goal_cells(post_ratio, {v: f"{rps[f'service{v}']} vs {rps['bare']} (p99 {service[v].p99_ms:.1f} ms)"
                                    for v in SERVERS}, 0.6), ">= 0.6"),
        row("POST /measurement on PostgreSQL 15 vs on 18",
            ["", f"{rps['service15']} vs {rps['service18']} = **{pg15_vs_18:.2f}** {verdict(pg15_vs_18 >= 0.85)}"],
            ">= 0.85"),
        row("POST /measurement vs naive (SELECT + INSERT per request), req/s",
            [f"{rps[f'service{v}']} vs {rps[f'naive{v}']} = **{naive_ratio[v]:.1f}x** {verdict(naive_ratio[v] >= 4)}"
             for v in SERVERS], ">= 4x"),
        row("GET /command vs bare GET, req/s",
            goal_cells(get_ratio, {v: f"{get_rps[f'service{v}']} vs {get_rps['bare']}" for v in SERVERS}, 0.85),
            ">= 0.85"),
        row("BatchWriter (1 reading per request) vs asyncpg COPY of the same rows, rows/s",
            goal_cells(writer_ratio, {v: f"{writer[v]:,.0f} vs {copy[v]:,.0f}" for v in SERVERS}, 0.5), ">= 0.5"),
        row("GET /stats p99 at 5M vs 10k readings, ms",
            [f"{latencies[f'{v}/5M'][1]:.2f} vs {latencies[f'{v}/10k'][1]:.2f} = **{stats_ratio[v]:.2f}** "
             f"{verdict(stats_ratio[v] <= 2 and latencies[f'{v}/5M'][1] <= 50)}" for v in SERVERS],
            "<= 2x and <= 50 ms"),
        row("service RSS at 10,000 open device connections (1 worker)",
            [f"{loaded_mib:.0f} MiB ({idle_mib:.0f} idle) = {(loaded_mib - idle_mib) * 1024 / 10_000:.1f} KiB/conn",
             "(same service)"], "report"),
        row("POST /measurement, 2 workers vs 1 (unpinned; PostgreSQL and wrk share the 2 cores), req/s",
            [f"{scaling[v, 2]:,.0f} vs {scaling[v, 1]:,.0f} = {scaling[v, 2] / scaling[v, 1]:.2f}" for v in SERVERS],
            "report"),
    ]  # fmt: skip
    non_2xx = sum(r.non_2xx for results in (gets, posts) for name, r in results.items() if name != "bare")
    lines += ["", f"non-2xx responses in the median rounds: {non_2xx}"]
    return lines


if __name__ == "__main__":
    main()
