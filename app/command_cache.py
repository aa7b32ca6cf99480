"""Standing commands in memory, so GET /command needs no database round trip in the common case.

Correct across worker processes: every change of a command sends a NOTIFY on `app.db.devices.COMMAND_CHANNEL`
(payload: the device id) in the transaction that makes it, and each process listens on its own connection and
drops that entry. While the listening connection is down, the cache stores nothing (every poll reads the
database), and it starts empty when the connection comes back, so a missed notification can never leave a stale
command behind.

A read that raced an invalidation is not stored: `generation` counts invalidations, and a value read from the
database is kept only if no invalidation happened since the read began.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections import OrderedDict
from typing import Any

import asyncpg

from app.db.devices import COMMAND_CHANNEL, Command

log = logging.getLogger(__name__)

RECONNECT_DELAY_S = 1.0
HEALTH_CHECK_INTERVAL_S = 10.0


class CommandCache:
    """device id -> its standing command, or None for the fleet default; least recently used entries go first."""

    def __init__(self, max_entries: int = 500_000) -> None:
        self.max_entries = max_entries
        self.generation = 0
        self.listening = False
        self._entries: OrderedDict[uuid.UUID, Command | None] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def lookup(self, device_id: uuid.UUID) -> tuple[bool, Command | None]:
        """(found, command): found is False when the database must be asked."""
        if device_id not in self._entries:
            return False, None
        self._entries.move_to_end(device_id)
        return True, self._entries[device_id]

    def store(self, device_id: uuid.UUID, command: Command | None, read_generation: int) -> None:
        if not self.listening or read_generation != self.generation:
            return
        self._entries[device_id] = command
        if len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)

    def invalidate(self, device_id: uuid.UUID) -> None:
        self.generation += 1
        self._entries.pop(device_id, None)

    def clear(self) -> None:
        self.generation += 1
        self._entries.clear()

    def _on_notification(self, connection: Any, pid: int, channel: str, payload: object) -> None:
        try:
            self.invalidate(uuid.UUID(str(payload)))
        except ValueError:
            self.clear()

    async def listen(self, dsn: str) -> None:
        """Keep a LISTEN connection open for as long as the task runs, reconnecting when it drops."""
        failures = 0
        while True:
            try:
                await self._listen_once(dsn)
                failures = 0
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if failures == 0:  # once per outage, not once per reconnect attempt
                    log.warning("command cache listener disconnected (%r); caching paused until it reconnects", exc)
                failures += 1
            await asyncio.sleep(RECONNECT_DELAY_S)

    async def _listen_once(self, dsn: str) -> None:
        lost = asyncio.Event()
        conn = await asyncpg.connect(dsn)
        try:
            conn.add_termination_listener(lambda _: lost.set())
            await conn.add_listener(COMMAND_CHANNEL, self._on_notification)
            self.clear()
            self.listening = True
            while not lost.is_set():
                try:
                    await asyncio.wait_for(lost.wait(), HEALTH_CHECK_INTERVAL_S)
                except TimeoutError:
                    # A connection that died without a FIN is only found by using it.
                    await conn.execute("SELECT 1", timeout=HEALTH_CHECK_INTERVAL_S)
        finally:
            self.listening = False
            self.clear()
            if not conn.is_closed():
                conn.terminate()
