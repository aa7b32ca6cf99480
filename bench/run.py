"""Run the benchmarks and print a table of ratios, each measured in this one run.

    .venv/bin/python -m bench.run            (needs wrk and taskset; about 5 minutes)

The service is pinned to core 0 and wrk to core 1; PostgreSQL shares both, as it would on a real 2-core host.
"""

from __future__ import annotations

import platform
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import psutil

from app.backfill import BackfillPlan, backfill
from bench import _fleet, _measure
from bench._wrk import get_script, post_script, run_wrk

SECONDS = 10
PORTS = {"service": _fleet.free_port(), "bare": _fleet.free_port(), "naive": _fleet.free_port()}


async def fill(url: str, plan: BackfillPlan) -> None:
    conn = await asyncpg.connect(url)
    try:
        await backfill(conn, plan, lambda n: None)
    finally:
        await conn.close()


def row(name: str, measured: str, ratio: str, goal: str) -> str:
    return f"| {name} | {measured} | {ratio} | {goal} |"


def verdict(ok: bool) -> str:
    return "met" if ok else "NOT met"


def main() -> None:
    scratch = Path(tempfile.mkdtemp(prefix="fleetbed-bench-lua-"))
    lines: list[str] = []
    started = time.monotonic()
    with _fleet.embedded_server() as server_url:
        url = _fleet.run(_fleet.fresh_database(server_url, "bench_api"))
        tokens = _fleet.run(_fleet.register_devices(url, 2000))
        get_lua = get_script(scratch / "get.lua", tokens)
        start_epoch = int((datetime.now(UTC) - timedelta(days=1)).timestamp())
        service_url = f"http://127.0.0.1:{PORTS['service']}"
        bare_url = f"http://127.0.0.1:{PORTS['bare']}"

        with _fleet.reference("bare", PORTS["bare"]):
            run_wrk(f"{bare_url}/command", None, seconds=2)
            bare_get = run_wrk(f"{bare_url}/command", None, SECONDS)
            bare_post = run_wrk(
                f"{bare_url}/measurement", post_script(scratch / "bare.lua", tokens, start_epoch), SECONDS
            )
        print(f"bare: GET {bare_get.requests_per_s:,.0f}/s, POST {bare_post.requests_per_s:,.0f}/s", flush=True)

        with _fleet.service(url, PORTS["service"]) as service:
            run_wrk(f"{service_url}/command", get_lua, seconds=3)  # warm the command cache
            command = run_wrk(f"{service_url}/command", get_lua, SECONDS)
            post = run_wrk(
                f"{service_url}/measurement", post_script(scratch / "post.lua", tokens, start_epoch), SECONDS
            )
            print(f"service: GET {command.requests_per_s:,.0f}/s, POST {post.requests_per_s:,.0f}/s", flush=True)
            idle_mib, loaded_mib = _fleet.run(_measure.memory_at_connections(PORTS["service"], service.pid, tokens))
            print(f"memory: {idle_mib:.0f} MiB idle, {loaded_mib:.0f} MiB at 10k connections", flush=True)

        with _fleet.reference("naive", PORTS["naive"], dsn=url):
            naive = run_wrk(
                f"{bare_url.replace(str(PORTS['bare']), str(PORTS['naive']))}/measurement",
                post_script(scratch / "naive.lua", tokens, start_epoch + 86_400 // 2),
                SECONDS,
            )
        print(f"naive: POST {naive.requests_per_s:,.0f}/s", flush=True)

        scaling_url = _fleet.run(_fleet.fresh_database(server_url, "bench_scaling"))
        scaling_tokens = _fleet.run(_fleet.register_devices(scaling_url, 2000))
        scaling = {}
        for workers in (1, 2):
            port = _fleet.free_port()
            with _fleet.service(scaling_url, port, workers=workers, pinned=False):
                script = post_script(scratch / f"scale{workers}.lua", scaling_tokens, start_epoch + workers * 20_000)
                scaling[workers] = run_wrk(f"http://127.0.0.1:{port}/measurement", script, SECONDS)
        print(f"scaling: {scaling[1].requests_per_s:,.0f}/s -> {scaling[2].requests_per_s:,.0f}/s", flush=True)

        copy_url = _fleet.run(_fleet.fresh_database(server_url, "bench_copy"))
        writer_url = _fleet.run(_fleet.fresh_database(server_url, "bench_writer"))
        copy_rate, writer_rate = _fleet.run(_measure.writer_vs_copy(copy_url, writer_url))
        print(f"writer: COPY {copy_rate:,.0f} rows/s, BatchWriter {writer_rate:,.0f} rows/s", flush=True)

        stats_url = _fleet.run(_fleet.fresh_database(server_url, "bench_stats"))
        latencies = {}
        now = datetime.now(UTC)
        for label, devices, readings in (("10k", 1000, 10), ("5M", 9990, 500)):
            _fleet.run(fill(stats_url, BackfillPlan(devices, readings, timedelta(seconds=30), now, seed=4)))
            port = _fleet.free_port()
            with _fleet.service(stats_url, port):
                latencies[label] = _fleet.run(_measure.stats_latency(f"http://127.0.0.1:{port}", _fleet.OPERATOR_TOKEN))
            print(f"stats at {label}: p50 {latencies[label][0]:.2f} ms, p99 {latencies[label][1]:.2f} ms", flush=True)

    post_ratio = post.requests_per_s / bare_post.requests_per_s
    post_vs_const = post.requests_per_s / bare_get.requests_per_s
    naive_ratio = post.requests_per_s / naive.requests_per_s
    get_ratio = command.requests_per_s / bare_get.requests_per_s
    writer_ratio = writer_rate / copy_rate
    stats_ratio = latencies["5M"][1] / latencies["10k"][1]
    lines += [
        f"fleetbed benchmarks, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {psutil.cpu_count()} cores, "
        f"{psutil.virtual_memory().total / 2**30:.0f} GiB, Python {platform.python_version()}, "
        f"{time.monotonic() - started:.0f} s",
        "",
        "| figure | measured | ratio | goal |",
        "|---|---|---|---|",
        row("POST /measurement (1 worker, durable ack) vs bare POST returning a constant",
            f"{post.requests_per_s:,.0f} vs {bare_post.requests_per_s:,.0f} req/s (p99 {post.p99_ms:.1f} ms)",
            f"{post_ratio:.2f}", f">= 0.6: {verdict(post_ratio >= 0.6)}"),
        row("POST /measurement vs bare GET returning a constant",
            f"{post.requests_per_s:,.0f} vs {bare_get.requests_per_s:,.0f} req/s", f"{post_vs_const:.2f}",
            "(for reference)"),
        row("POST /measurement vs naive (SELECT + INSERT per request)",
            f"{post.requests_per_s:,.0f} vs {naive.requests_per_s:,.0f} req/s", f"{naive_ratio:.1f}x",
            f">= 4x: {verdict(naive_ratio >= 4)}"),
        row("GET /command vs bare GET", f"{command.requests_per_s:,.0f} vs {bare_get.requests_per_s:,.0f} req/s",
            f"{get_ratio:.2f}", f">= 0.85: {verdict(get_ratio >= 0.85)}"),
        row("BatchWriter (1 reading per request) vs raw binary COPY, same rows",
            f"{writer_rate:,.0f} vs {copy_rate:,.0f} rows/s", f"{writer_ratio:.2f}",
            f">= 0.7: {verdict(writer_ratio >= 0.7)}"),
        row("GET /stats p99 at 5M vs 10k readings",
            f"{latencies['5M'][1]:.2f} vs {latencies['10k'][1]:.2f} ms", f"{stats_ratio:.2f}",
            f"<= 2x and <= 50 ms: {verdict(stats_ratio <= 2 and latencies['5M'][1] <= 50)}"),
        row("service RSS at 10,000 open device connections (1 worker)",
            f"{loaded_mib:.0f} MiB ({idle_mib:.0f} idle)", f"{(loaded_mib - idle_mib) * 1024 / 10_000:.1f} KiB/conn",
            "report"),
        row("POST /measurement, 2 workers vs 1 (unpinned; PostgreSQL and wrk share the 2 cores)",
            f"{scaling[2].requests_per_s:,.0f} vs {scaling[1].requests_per_s:,.0f} req/s",
            f"{scaling[2].requests_per_s / scaling[1].requests_per_s:.2f}", "report"),
    ]  # fmt: skip
    non_2xx = post.non_2xx + command.non_2xx + naive.non_2xx
    lines.append("")
    lines.append(f"non-2xx responses during the runs: {non_2xx}")
    print("\n" + "\n".join(lines))


if __name__ == "__main__":
    main()
