"""Overload and slow clients: excess load is shed with 503 + Retry-After, latency and memory stay bounded,
slow or stalled clients are cut off, and the service returns to normal when the pressure ends."""

from __future__ import annotations

import asyncio
import tempfile
import time
from datetime import timedelta

import aiohttp
import asyncpg
import psutil
import pytest

from tests.support.devices import BASE_TIME, reading
from tests.support.processes import free_port, running_fleetbed

pytestmark = pytest.mark.slow


def env_for(pg_url: str, port: int, **extra: str) -> dict[str, str]:
    return {
        "FLEETBED_DATABASE_URL": pg_url,
        "FLEETBED_DATA_DIR": tempfile.mkdtemp(),
        "FLEETBED_PORT": str(port),
        **extra,
    }


async def test_arrivals_faster_than_commits_are_shed_and_the_service_recovers(pg_url: str) -> None:
    port = free_port()
    env = env_for(pg_url, port, FLEETBED_INGEST_QUEUE_READINGS="2000", FLEETBED_INGEST_WAIT_S="3")
    base = f"http://127.0.0.1:{port}"
    with running_fleetbed(["serve"], env, port) as service:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=200)) as session:
            async with session.post(f"{base}/login") as response:
                token = (await response.json())["token"]
            headers = {"Authorization": f"Bearer {token}"}
            batch = [reading(BASE_TIME + timedelta(seconds=i)) for i in range(500)]
            rss_before = psutil.Process(service.pid).memory_info().rss

            # Stall the database's commits: every ingest transaction waits on this lock.
            blocker = await asyncpg.connect(pg_url)
            tx = blocker.transaction()
            await tx.start()
            await blocker.execute("LOCK TABLE fleet_totals IN EXCLUSIVE MODE")

            async def post(n: int) -> tuple[int, float, str | None]:
                started = time.monotonic()
                shifted = [
                    {**r, "time": (BASE_TIME - timedelta(minutes=10 * n, seconds=i)).isoformat()}
                    for i, r in enumerate(batch)
                ]
                async with session.post(f"{base}/measurement", json=shifted, headers=headers) as response:
                    body = await response.read()
                    assert response.status != 422, body
                    return response.status, time.monotonic() - started, response.headers.get("Retry-After")

            results = await asyncio.gather(*(post(n) for n in range(200)))
            rss_during = psutil.Process(service.pid).memory_info().rss
            await tx.rollback()
            await blocker.close()

            statuses = [status for status, _, _ in results]
            print(
                f"overload: {statuses.count(201)} accepted, {statuses.count(503)} shed, slowest answer "
                f"{max(seconds for _, seconds, _ in results):.2f} s, RSS +{(rss_during - rss_before) / 2**20:.1f} MiB"
            )
            assert set(statuses) <= {201, 503}
            assert statuses.count(503) >= 190, "at most the queue's worth waits; the rest is shed"
            assert all(retry for status, _, retry in results if status == 503), "every 503 carries Retry-After"
            assert max(seconds for _, seconds, _ in results) < 3 + 2, "nobody waits longer than the ingest wait"
            assert rss_during - rss_before < 200 * 2**20, "memory stays bounded under 100,000 refused readings"

            # Pressure gone: once the queued work is written, normal service again.
            for attempt in range(75):  # up to 15 s
                recovered = await post(200 + attempt)  # times not sent before, all within the accepted age
                if recovered[0] == 201:
                    break
                await asyncio.sleep(0.2)
            assert recovered[0] == 201
            assert recovered[1] < 2


async def closed_by_server(reader: asyncio.StreamReader) -> bool:
    try:
        return await asyncio.wait_for(reader.read(), 10) == b""
    except ConnectionError:
        return True


async def test_slow_and_stalled_clients_are_cut_off(pg_url: str) -> None:
    port = free_port()
    env = env_for(pg_url, port, FLEETBED_KEEPALIVE_TIMEOUT_S="2", FLEETBED_BODY_TIMEOUT_S="2")
    with running_fleetbed(["serve"], env, port):
        # Headers trickled in forever, and a connection that never says anything.
        trickler = await asyncio.open_connection("127.0.0.1", port)
        silent = await asyncio.open_connection("127.0.0.1", port)
        trickler[1].write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        started = time.monotonic()
        for _ in range(8):
            await asyncio.sleep(0.5)
            try:
                trickler[1].write(b"X")
                await trickler[1].drain()
            except ConnectionError:
                break
        assert await closed_by_server(silent[0]), "a silent connection is closed"
        assert await closed_by_server(trickler[0]), "a trickling one too"
        assert time.monotonic() - started < 8

        # A body that stalls after its headers: 408 with the JSON error, within the body timeout.
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        async with aiohttp.ClientSession() as session, session.post(f"http://127.0.0.1:{port}/login") as response:
            token = (await response.json())["token"]
        writer.write(
            f"POST /measurement HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n"
            'Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"time":'.encode()
        )
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(4096), 10)
        assert b" 408 " in answer.split(b"\r\n", 1)[0]
        assert b"request_timeout" in answer
        for _, stream_writer in (trickler, silent, (reader, writer)):
            stream_writer.close()

        # Meanwhile everyone else was served.
        async with aiohttp.ClientSession() as session, session.get(f"http://127.0.0.1:{port}/healthz") as response:
            assert response.status == 200
