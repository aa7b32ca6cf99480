"""Group commit for POST /measurement: readings from concurrent requests are written together.

Each request hands its readings to the `BatchWriter` and waits; a writer task takes everything queued (up to a
batch limit), stores it in one transaction, and answers every request in the batch only after the commit, so
an acknowledgement stays durable. There is no timer: while one batch commits the next one fills, so batches
grow with load on their own (one reading at a time when idle, thousands under pressure).

Devices are spread over `writers` tasks by id, so one device's readings are always written by the same task,
in order. The queue is bounded: when it holds `max_queued_readings`, new requests get 503 with Retry-After at
once instead of growing memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from app.database_errors import classify, is_database_error
from app.db import TOTALS_SHARDS
from app.db.devices import unregistered_devices
from app.db.measurements import BatchOutcome, StoreResult, store_batch
from app.db.readings import Reading
from app.errors import InternalError, Unauthorized, Unavailable
from app.metrics.service import ServiceMetrics

log = logging.getLogger(__name__)

WHERE = "POST /measurement (ingest writer)"
UNREGISTERED = (
    "this device is not registered (the database may have been restored from a backup or replaced); "
    "log in again with POST /login"
)
# Errors after which a batch is worth one more try: the database chose it as a victim, not our data.
RETRYABLE = (asyncpg.DeadlockDetectedError, asyncpg.SerializationError)


@dataclass
class PendingRequest:
    device_id: uuid.UUID
    readings: list[Reading]
    future: asyncio.Future[StoreResult] = field(repr=False)
    enqueued_at: float = 0.0


class BatchWriter:
    def __init__(
        self,
        pool: asyncpg.Pool,
        metrics: ServiceMetrics,
        *,
        writers: int = 2,
        max_batch_readings: int = 5000,
        max_queued_readings: int = 50_000,
        max_wait_s: float = 10.0,
    ) -> None:
        self.pool = pool
        self.metrics = metrics
        self.max_batch_readings = max_batch_readings
        self.max_queued_readings = max_queued_readings
        self.max_wait_s = max_wait_s
        self.queued_readings = 0
        self._queues: list[deque[PendingRequest]] = [deque() for _ in range(writers)]
        self._wakeups = [asyncio.Event() for _ in range(writers)]
        self._shards = [(os.getpid() * writers + n) % TOTALS_SHARDS for n in range(writers)]
        self._tasks: list[asyncio.Task[None]] = []
        self._writing: list[list[PendingRequest]] = [[] for _ in range(writers)]
        self._connections: list[PoolConnectionProxy[Any] | None] = [None] * writers
        self._expiry: asyncio.Task[None] | None = None
        self._closing = False

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._run(n), name=f"ingest-writer-{n}") for n in range(len(self._queues))]
        self._expiry = asyncio.create_task(self._expire_waiting(), name="ingest-expiry")

    async def submit(self, device_id: uuid.UUID, readings: list[Reading]) -> StoreResult:
        """Queue the readings and wait until they are committed (or raise `Unavailable`)."""
        if self._closing:
            raise Unavailable("the service is shutting down; retry on another instance or in a moment", 1)
        if self.queued_readings + len(readings) > self.max_queued_readings:
            self.metrics.ingest_rejected.inc(len(readings))
            raise Unavailable("the ingest queue is full; retry after the delay in Retry-After", 1)
        lane = device_id.int % len(self._queues)
        loop = asyncio.get_running_loop()
        request = PendingRequest(device_id, readings, loop.create_future(), loop.time())
        self._queues[lane].append(request)
        self.queued_readings += len(readings)
        self._wakeups[lane].set()
        return await request.future

    async def _expire_waiting(self) -> None:
        """Answer 503 to requests that waited in a queue longer than `max_wait_s`; they are not written.

        Queues are first in, first out, so the expired requests are at their heads: one sweep costs what expired.
        A request in a batch being written is answered 503 too when it has waited that long; its readings may still
        commit, and the device's retry is then acknowledged as a duplicate.
        """
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(min(0.5, self.max_wait_s / 4))
            deadline = loop.time() - self.max_wait_s
            for batch in self._writing:
                for request in batch:
                    if request.enqueued_at < deadline and not request.future.done():
                        request.future.set_exception(
                            Unavailable("the database is not keeping up; retry after the delay in Retry-After", 2)
                        )
            for queue in self._queues:
                while queue and queue[0].enqueued_at < deadline:
                    request = queue.popleft()
                    self.queued_readings -= len(request.readings)
                    self.metrics.ingest_rejected.inc(len(request.readings))
                    if not request.future.done():
                        request.future.set_exception(
                            Unavailable("the database is not keeping up; retry after the delay in Retry-After", 2)
                        )

    async def close(self) -> None:
        """Refuse new work, write everything already queued, stop the writers."""
        self._closing = True
        for wakeup in self._wakeups:
            wakeup.set()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._expiry is not None:
            self._expiry.cancel()
            await asyncio.gather(self._expiry, return_exceptions=True)
        for lane in range(len(self._connections)):
            await self._drop_connection(lane)

    def _take_batch(self, lane: int) -> list[PendingRequest]:
        queue = self._queues[lane]
        batch: list[PendingRequest] = []
        size = 0
        dropped = 0
        while queue and (not batch or size + len(queue[0].readings) <= self.max_batch_readings):
            request = queue.popleft()
            if request.future.done():  # answered already (expired while queued): not written
                dropped += len(request.readings)
                continue
            batch.append(request)
            size += len(request.readings)
        self.queued_readings -= size + dropped
        self.metrics.ingest_queue_readings.set(self.queued_readings)
        return batch

    async def _run(self, lane: int) -> None:
        while True:
            if not self._queues[lane]:
                if self._closing:
                    return
                self._wakeups[lane].clear()
                await self._wakeups[lane].wait()
                continue
            batch = self._take_batch(lane)
            if not batch:
                continue
            self._writing[lane] = batch
            try:
                await self._write(batch, lane)
            except Exception as exc:  # the writer must outlive any one batch, and answer every request in it
                log.exception("ingest writer %d failed a batch", lane)
                self._fail(batch, exc)
            finally:
                self._writing[lane] = []

    async def _write(self, batch: list[PendingRequest], lane: int) -> None:
        shard = self._shards[lane]
        device_ids = [r.device_id for r in batch for _ in r.readings]
        readings = [reading for r in batch for reading in r.readings]
        started = time.perf_counter()
        try:
            outcome = await self._store_with_retry(lane, device_ids, readings, shard)
        except Exception as exc:  # answered here, request by request: one request's fault never fails another
            await self._write_failed(batch, lane, exc)
            return
        self.metrics.ingest_commit_duration.observe(time.perf_counter() - started)
        self.metrics.ingest_batch_size.observe(len(readings))
        self.metrics.readings_stored.inc(outcome.inserted)
        self._answer(batch, outcome)

    async def _write_failed(self, batch: list[PendingRequest], lane: int, error: Exception) -> None:
        """Answer a batch whose write failed: 503 for all of it when the database is the cause; otherwise find
        the requests at fault (401 for a device no longer registered, 500 for a bug) and store the others."""
        unavailable = classify(error)
        if unavailable is not None:
            self.metrics.database_faults.report(error, WHERE)
            self._fail(batch, unavailable)
            return
        if isinstance(error, asyncpg.ForeignKeyViolationError):
            gone = await self._unregistered(lane, batch)
            if gone:
                self._fail([r for r in batch if r.device_id in gone], Unauthorized(UNREGISTERED))
                rest = [r for r in batch if r.device_id not in gone]
                if rest:
                    await self._write(rest, lane)
                return
        if len(batch) == 1:
            if is_database_error(error):
                self.metrics.database_faults.report(error, WHERE)
            else:
                log.error("unexpected error in %s", WHERE, exc_info=error)
            self._fail(batch, InternalError())
            return
        # Something in the batch the database refuses: write each request alone, so only it fails.
        log.warning("a batch of %d requests failed (%r); writing them one by one", len(batch), error)
        for request in batch:
            await self._write([request], lane)

    async def _unregistered(self, lane: int, batch: list[PendingRequest]) -> set[uuid.UUID]:
        """The batch's devices that have no `device` row (none when that cannot be told now)."""
        try:
            conn = await self._connection(lane)
            return await unregistered_devices(conn, list({r.device_id for r in batch}))
        except Exception:  # the request-by-request fallback then answers each request on its own
            await self._drop_connection(lane)
            return set()

    async def _store_with_retry(
        self, lane: int, device_ids: list[uuid.UUID], readings: list[Reading], shard: int
    ) -> BatchOutcome:
        for attempt in range(3):
            conn = await self._connection(lane)
            try:
                return await store_batch(conn, device_ids, readings, shard)
            except RETRYABLE:
                if attempt == 2:
                    raise
                await asyncio.sleep(0.01 * (attempt + 1))
            except asyncpg.InternalClientError:
                # The connection's protocol state broke on a server's goodbye (shutdown, restart) that reached it
                # while idle; the pool's other idle connections heard it too: replace them all, then try again.
                await self._drop_connection(lane)
                await self.pool.expire_connections()
                if attempt == 2:
                    raise
            except BaseException:
                await self._drop_connection(lane)  # broken or in an unknown state: take a fresh one next time
                raise
        raise AssertionError("unreachable")

    async def _connection(self, lane: int) -> PoolConnectionProxy[Any]:
        """The lane's own connection, kept between batches (no acquire and reset per batch)."""
        conn = self._connections[lane]
        if conn is not None and not self._usable(conn):
            conn = self._connections[lane] = None
        if conn is None:
            conn = self._connections[lane] = await self.pool.acquire(timeout=self.max_wait_s)
        return conn

    @staticmethod
    def _usable(conn: PoolConnectionProxy[Any]) -> bool:
        # The pool takes back a connection that broke (e.g. the database restarted): the proxy then refuses use.
        try:
            return not conn.is_closed()
        except asyncpg.InterfaceError:
            return False

    async def _drop_connection(self, lane: int) -> None:
        conn, self._connections[lane] = self._connections[lane], None
        if conn is not None and self._usable(conn):
            with contextlib.suppress(Exception):
                await self.pool.release(conn, timeout=1)

    @staticmethod
    def _answer(batch: list[PendingRequest], outcome: BatchOutcome) -> None:
        if not outcome.duplicate_positions:
            for request in batch:
                if not request.future.done():
                    request.future.set_result(
                        StoreResult(received=len(request.readings), inserted=len(request.readings))
                    )
            return
        offset = 0
        for request in batch:
            count = len(request.readings)
            duplicates = sum(1 for p in range(offset, offset + count) if p in outcome.duplicate_positions)
            offset += count
            if not request.future.done():  # the client may have gone away; its readings are stored anyway
                request.future.set_result(StoreResult(received=count, inserted=count - duplicates))

    @staticmethod
    def _fail(batch: list[PendingRequest], error: Exception) -> None:
        for request in batch:
            if not request.future.done():
                request.future.set_exception(error)
