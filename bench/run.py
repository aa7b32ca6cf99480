"""Run the benchmarks and print a table of ratios, each measured in this one run.

    .venv/bin/python -m bench.run            (needs wrk and taskset; about 5 minutes)

The service and the reference servers are pinned to core 0 and wrk to core 1; PostgreSQL shares both, as it
would on a real 2-core host. This machine is shared and noisy, so every comparison alternates its contestants
over several rounds (A B A B ...) and compares medians, and the /stats latencies of the small and the large
database are sampled in turn from two services running side by side.
"""

from __future__ import annotations

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


def row(name: str, measured: str, ratio: str, goal: str) -> str:
    return f"| {name} | {measured} | {ratio} | {goal} |"


def verdict(ok: bool) -> str:
    return "met" if ok else "NOT met"


def main() -> None:
    scratch = Path(tempfile.mkdtemp(prefix="fleetbed-bench-lua-"))
    started = time.monotonic()
    start_epoch = int((datetime.now(UTC) - timedelta(days=2)).timestamp())
    with _fleet.embedded_server() as server_url:
        url = _fleet.run(_fleet.fresh_database(server_url, "bench_api"))
        naive_url = _fleet.run(_fleet.fresh_database(server_url, "bench_naive"))
        tokens = _fleet.run(_fleet.register_devices(url, 2000))
        naive_tokens = _fleet.run(_fleet.register_devices(naive_url, 2000))
        get_lua = get_script(scratch / "get.lua", tokens)
        ports = {name: free_port() for name in ("bare", "service", "naive")}
        base = {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}

        def post(name: str, device_tokens: list[str]) -> Callable[[int], WrkResult]:
            def run(round_number: int) -> WrkResult:
                # Every round its own hour of readings: nothing is a duplicate of an earlier round.
                script = post_script(
                    scratch / f"{name}{round_number}.lua", device_tokens, start_epoch + 3600 * round_number
                )
                return run_wrk(f"{base[name]}/measurement", script, SECONDS)

            return run

        with (
            _fleet.reference("bare", ports["bare"]),
            _fleet.service(url, ports["service"]) as service,
            _fleet.reference("naive", ports["naive"], dsn=naive_url),
        ):
            run_wrk(f"{base['service']}/command", get_lua, seconds=3)  # warm the command cache and token memory
            gets = alternate(
                {
                    "bare": lambda _: run_wrk(f"{base['bare']}/command", None, SECONDS),
                    "service": lambda _: run_wrk(f"{base['service']}/command", get_lua, SECONDS),
                }
            )
            print(f"GET: bare {gets['bare'].requests_per_s:,.0f}/s, service {gets['service'].requests_per_s:,.0f}/s",
                  flush=True)  # fmt: skip
            posts = alternate(
                {
                    "bare": post("bare", tokens),
                    "service": post("service", tokens),
                    "naive": post("naive", naive_tokens),
                }
            )
            print("POST: " + ", ".join(f"{k} {v.requests_per_s:,.0f}/s" for k, v in posts.items()), flush=True)
            idle_mib, loaded_mib = _fleet.run(_measure.memory_at_connections(ports["service"], service.pid, tokens))
            print(f"memory: {idle_mib:.0f} MiB idle, {loaded_mib:.0f} MiB at 10k connections", flush=True)

        scaling_url = _fleet.run(_fleet.fresh_database(server_url, "bench_scaling"))
        scaling_tokens = _fleet.run(_fleet.register_devices(scaling_url, 2000))
        scaling: dict[int, list[float]] = {1: [], 2: []}
        for round_number in range(ROUNDS):
            for workers in (1, 2):
                port = free_port()
                with _fleet.service(scaling_url, port, workers=workers, pinned=False):
                    script = post_script(
                        scratch / f"scale{workers}-{round_number}.lua", scaling_tokens,
                        start_epoch + 86_400 + 3600 * (2 * round_number + workers),
                    )  # fmt: skip
                    scaling[workers].append(
                        run_wrk(f"http://127.0.0.1:{port}/measurement", script, SECONDS).requests_per_s
                    )
        one, two = statistics.median(scaling[1]), statistics.median(scaling[2])
        print(f"scaling: {one:,.0f}/s -> {two:,.0f}/s", flush=True)

        copy_rates, writer_rates = [], []
        for round_number in range(ROUNDS):
            copy_url = _fleet.run(_fleet.fresh_database(server_url, f"bench_copy{round_number}"))
            writer_url = _fleet.run(_fleet.fresh_database(server_url, f"bench_writer{round_number}"))
            copy_rate, writer_rate = _fleet.run(_measure.writer_vs_copy(copy_url, writer_url))
            copy_rates.append(copy_rate)
            writer_rates.append(writer_rate)
        copy_rate, writer_rate = statistics.median(copy_rates), statistics.median(writer_rates)
        print(f"writer: COPY {copy_rate:,.0f} rows/s, BatchWriter {writer_rate:,.0f} rows/s", flush=True)

        small_url = _fleet.run(_fleet.fresh_database(server_url, "bench_stats_10k"))
        large_url = _fleet.run(_fleet.fresh_database(server_url, "bench_stats_5m"))
        now = datetime.now(UTC)
        _fleet.run(fill(small_url, BackfillPlan(1000, 10, timedelta(seconds=30), now, seed=4)))
        _fleet.run(fill(large_url, BackfillPlan(*LARGE, timedelta(seconds=30), now, seed=4)))
        small_port, large_port = free_port(), free_port()
        with _fleet.service(small_url, small_port), _fleet.service(large_url, large_port):
            latencies = _fleet.run(
                _measure.stats_latency_side_by_side(
                    {"10k": f"http://127.0.0.1:{small_port}", "5M": f"http://127.0.0.1:{large_port}"},
                    _fleet.OPERATOR_TOKEN,
                )
            )
        for label, (p50, p99) in latencies.items():
            print(f"stats at {label}: p50 {p50:.2f} ms, p99 {p99:.2f} ms", flush=True)

    bare_get, command = gets["bare"], gets["service"]
    bare_post, service_post, naive = posts["bare"], posts["service"], posts["naive"]
    post_ratio = service_post.requests_per_s / bare_post.requests_per_s
    naive_ratio = service_post.requests_per_s / naive.requests_per_s
    get_ratio = command.requests_per_s / bare_get.requests_per_s
    writer_ratio = writer_rate / copy_rate
    stats_ratio = latencies["5M"][1] / latencies["10k"][1]
    lines = [
        f"fleetbed benchmarks, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {psutil.cpu_count()} cores, "
        f"{psutil.virtual_memory().total / 2**30:.0f} GiB, Python {platform.python_version()}, "
        f"{time.monotonic() - started:.0f} s, medians of {ROUNDS} alternating rounds",
        "",
        "| figure | measured | ratio | goal |",
        "|---|---|---|---|",
        row("POST /measurement (1 worker, durable ack) vs bare POST returning a constant",
            f"{service_post.requests_per_s:,.0f} vs {bare_post.requests_per_s:,.0f} req/s "
            f"(p99 {service_post.p99_ms:.1f} ms)",
            f"{post_ratio:.2f}", f">= 0.6: {verdict(post_ratio >= 0.6)}"),
        row("POST /measurement vs naive (SELECT + INSERT per request)",
            f"{service_post.requests_per_s:,.0f} vs {naive.requests_per_s:,.0f} req/s", f"{naive_ratio:.1f}x",
            f">= 4x: {verdict(naive_ratio >= 4)}"),
        row("GET /command vs bare GET", f"{command.requests_per_s:,.0f} vs {bare_get.requests_per_s:,.0f} req/s",
            f"{get_ratio:.2f}", f">= 0.85: {verdict(get_ratio >= 0.85)}"),
        row("BatchWriter (1 reading per request) vs asyncpg COPY of the same rows",
            f"{writer_rate:,.0f} vs {copy_rate:,.0f} rows/s", f"{writer_ratio:.2f}",
            f">= 0.7: {verdict(writer_ratio >= 0.7)}"),
        row("GET /stats p99 at 5M vs 10k readings",
            f"{latencies['5M'][1]:.2f} vs {latencies['10k'][1]:.2f} ms", f"{stats_ratio:.2f}",
            f"<= 2x and <= 50 ms: {verdict(stats_ratio <= 2 and latencies['5M'][1] <= 50)}"),
        row("service RSS at 10,000 open device connections (1 worker)",
            f"{loaded_mib:.0f} MiB ({idle_mib:.0f} idle)", f"{(loaded_mib - idle_mib) * 1024 / 10_000:.1f} KiB/conn",
            "report"),
        row("POST /measurement, 2 workers vs 1 (unpinned; PostgreSQL and wrk share the 2 cores)",
            f"{two:,.0f} vs {one:,.0f} req/s", f"{two / one:.2f}", "report"),
    ]  # fmt: skip
    non_2xx = service_post.non_2xx + command.non_2xx + naive.non_2xx
    lines += ["", f"non-2xx responses in the median rounds: {non_2xx}"]
    print("\n" + "\n".join(lines))


if __name__ == "__main__":
    main()
