"""Measurements made from Python rather than wrk: the batch writer against COPY, /stats latency, memory."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime, timedelta

import asyncpg
import numpy as np
import psutil

from app.backfill.history import COPY_COLUMNS, generate
from app.db.readings import Reading
from app.ingest import BatchWriter
from app.metrics.service import ServiceMetrics

EPOCH_2000 = datetime(2000, 1, 1, tzinfo=UTC)


FleetRequests = list[tuple[uuid.UUID, list[Reading]]]


def fleet_requests(devices: int = 1000, per_device: int = 200) -> FleetRequests:
    """One request per device per round, each with one reading: what a fleet sends."""
    history = generate(np.random.default_rng(9), devices, per_device, timedelta(seconds=30), datetime.now(UTC))
    ids = [uuid.UUID(bytes=bytes(raw)) for raw in history.device_ids]
    requests: FleetRequests = []
    for r in range(per_device):
        for d, device_id in enumerate(ids):
            requests.append((device_id, [Reading(
                EPOCH_2000 + timedelta(microseconds=int(history.times_us[d, r])),
                int(history.charge_now[d, r]), int(history.charge_full[d, r]), float(history.charge_rate[d, r]),
                float(history.ambient_temp[d, r]), float(history.water_temp[d, r]), int(history.water_level[d, r]),
            )]))  # fmt: skip
    return requests


async def register(url: str, requests: FleetRequests) -> None:
    """Register the requests' devices."""
    conn = await asyncpg.connect(url)
    await conn.execute("INSERT INTO device (id) SELECT unnest($1::uuid[])", list(dict.fromkeys(d for d, _ in requests)))
    await conn.close()


async def copy_rate(url: str, requests: FleetRequests) -> float:
    """Rows per second of asyncpg's COPY of the requests' readings (the ceiling: rows appended, nothing else)."""
    conn = await asyncpg.connect(url)
    records = [(device_id, *readings[0]) for device_id, readings in requests]
    started = time.perf_counter()
    await conn.copy_records_to_table("measurement", records=records, columns=list(COPY_COLUMNS))
    rate = len(records) / (time.perf_counter() - started)
    await conn.close()
    return rate


async def writer_rate(url: str, requests: FleetRequests, in_flight: int = 2000) -> float:
    """Rows per second of the BatchWriter fed the requests by `in_flight` concurrent clients, until all answered."""
    pool = await asyncpg.create_pool(url, min_size=4, max_size=4)
    assert pool is not None
    writer = BatchWriter(pool, ServiceMetrics(), writers=2, max_queued_readings=len(requests) + 1)
    writer.start()
    pending = iter(requests)

    async def client() -> None:
        for device_id, readings in pending:
            await writer.submit(device_id, readings)

    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(in_flight)))
    rate = len(requests) / (time.perf_counter() - started)
    await writer.close()
    await pool.close()
    return rate


async def writer_vs_copy(copy_url: str, writer_url: str) -> tuple[float, float]:
    """Rows per second: asyncpg's COPY of the rows vs the BatchWriter fed the same rows by concurrent requests."""
    requests = fleet_requests()
    for url in (copy_url, writer_url):
        await register(url, requests)
    return await copy_rate(copy_url, requests), await writer_rate(writer_url, requests)


async def stats_latency_side_by_side(
    services: dict[str, str], operator_token: str, requests: int = 1000
) -> dict[str, tuple[float, float]]:
    """p50 and p99 (ms) of GET /stats per service, asking them in turn so noise hits all of them alike."""
    import aiohttp

    headers = {"Authorization": f"Bearer {operator_token}"}
    timings: dict[str, list[float]] = {name: [] for name in services}
    async with aiohttp.ClientSession() as session:
        for _ in range(requests):
            for name, base in services.items():
                started = time.perf_counter()
                async with session.get(f"{base}/stats", headers=headers) as response:
                    await response.read()
                    assert response.status == 200, await response.text()
                timings[name].append((time.perf_counter() - started) * 1000)
    return {
        name: (float(np.percentile(values, 50)), float(np.percentile(values, 99))) for name, values in timings.items()
    }


async def memory_at_connections(
    port: int, pid: int, tokens: list[str], connections: int = 10_000
) -> tuple[float, float]:
    """Service RSS (MiB) idle and with `connections` open keep-alive device connections, each after one poll."""
    service = psutil.Process(pid)
    workers = service.children() or [service]
    idle = sum(p.memory_info().rss for p in workers) / 2**20
    streams = []
    for n in range(connections):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        request = f"GET /command HTTP/1.1\r\nHost: bench\r\nAuthorization: Bearer {tokens[n % len(tokens)]}\r\n\r\n"
        writer.write(request.encode())
        streams.append((reader, writer))
        if len(streams) % 500 == 0:
            await asyncio.gather(*(r.readuntil(b"}") for r, _ in streams[-500:]))
    await asyncio.sleep(1)
    loaded = sum(p.memory_info().rss for p in workers) / 2**20
    for _, writer in streams:
        writer.close()
    return idle, loaded
