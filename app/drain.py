"""The service's stop, bounded: one budget (`Settings.drain_timeout_s`) from the stop signal to the exit.

The budget is shared in order: requests in flight get `handler_timeout_s` of it (aiohttp's shutdown timeout),
then the cleanups (queued readings written, the command listener and the pool closed) get what is left, each step
logged with what it waits for and for how long. A database that is gone or hung cannot hold the stop longer: a
step out of time is abandoned (nothing acknowledged depends on it: a reading is acknowledged only after its commit),
and a watchdog ends the process shortly after the budget should anything still hang.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from collections.abc import Awaitable
from typing import TypeVar

log = logging.getLogger(__name__)

HANDLER_SHARE = 0.6  # of the budget, for requests in flight; the rest is for the cleanups
EXIT_RESERVE_S = 1.0  # of the budget, kept for what follows the cleanups (cancelled tasks ending, the exit)
_T = TypeVar("_T")


class Drain:
    def __init__(self, timeout_s: float) -> None:
        self.timeout_s = timeout_s
        self.waiting_for = "nothing yet"
        self._deadline: float | None = None

    @property
    def handler_timeout_s(self) -> float:
        return self.timeout_s * HANDLER_SHARE

    @property
    def aiohttp_shutdown_timeout_s(self) -> float:
        """aiohttp waits up to its shutdown timeout (rounded up to whole seconds) for handlers to finish, then as
        long again for the cancelled ones to end: half the handlers' share, rounded down, keeps both in it."""
        return max(1.0, float(int(self.handler_timeout_s / 2)))

    def begin(self) -> None:
        """The stop starts now (idempotent): the budget counts from here."""
        if self._deadline is None:
            self._deadline = time.monotonic() + self.timeout_s
            self.waiting_for = "requests in flight"
            log.info(
                "stopping: no new connections; waiting up to %.0f s for requests in flight",
                2 * self.aiohttp_shutdown_timeout_s,
            )

    def remaining_s(self) -> float:
        """What is left for the cleanups: the budget less a reserve for the exit itself."""
        if self._deadline is None:
            return self.timeout_s
        reserve = min(EXIT_RESERVE_S, self.timeout_s / 10)
        return max(0.0, self._deadline - reserve - time.monotonic())

    async def step(self, what: str, awaitable: Awaitable[_T]) -> bool:
        """Await `awaitable` within what is left of the budget; False (logged) when it ran out of time. Work out
        of time is cancelled and not waited for: its own cleanup may hang on the same database."""
        remaining = self.remaining_s()
        self.waiting_for = what
        log.info("stopping: waiting up to %.1f s for %s", remaining, what)
        started = time.monotonic()
        task = asyncio.ensure_future(awaitable)
        done, _ = await asyncio.wait({task}, timeout=remaining)
        if not done:
            task.cancel()
            log.warning(
                "stopping: gave up waiting for %s after %.1f s (the stop's budget is spent)",
                what, time.monotonic() - started,
            )  # fmt: skip
            return False
        task.result()
        return True

    def arm_watchdog(self) -> None:
        """End the process at the end of the budget if the stop is still not done, whatever blocks it."""

        def expire() -> None:
            log.error("stopping: still waiting for %s at the end of the %g s budget; exiting now", self.waiting_for,
                      self.timeout_s)  # fmt: skip
            logging.shutdown()
            os._exit(1)

        assert self._deadline is not None, "begin() first"
        timer = threading.Timer(self._deadline - time.monotonic(), expire)
        timer.daemon = True
        timer.start()
