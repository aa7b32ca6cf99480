"""The per-address rate limit on `POST /login`: a token bucket for each client address, in each worker.

Logins are rare for a real device (one per token lifetime, or after a 401), so a client address that logs in
faster than the limit is registering rows in bulk or guessing. Each worker keeps its own buckets with its share of
the service-wide rate (the kernel spreads connections over the workers); the table of addresses is bounded.
"""

from __future__ import annotations

import math
from collections import OrderedDict

MAX_ADDRESSES = 100_000


class LoginRateLimit:
    def __init__(self, rate_per_s: float, burst: int, workers: int = 1) -> None:
        self.rate_per_s = rate_per_s / workers
        self.burst = max(1.0, burst / workers)
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # address -> (tokens, at)

    @property
    def enabled(self) -> bool:
        return self.rate_per_s > 0

    def take(self, address: str, now: float) -> int | None:
        """Take one login for `address`: None when allowed, else the whole seconds to wait (for Retry-After)."""
        if not self.enabled:
            return None
        tokens, at = self._buckets.pop(address, (self.burst, now))
        tokens = min(self.burst, tokens + (now - at) * self.rate_per_s)
        allowed = tokens >= 1.0
        if allowed:
            tokens -= 1.0
        self._buckets[address] = (tokens, now)
        if len(self._buckets) > MAX_ADDRESSES:
            self._buckets.popitem(last=False)  # the address idle longest: its bucket is full again by now
        return None if allowed else max(1, math.ceil((1.0 - tokens) / self.rate_per_s))
