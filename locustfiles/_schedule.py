"""Each device's own timetable: planned send times with jitter, and the lag between planned and actual.

The plan never waits for responses: the next planned time follows from the previous *planned* time, so a slow
server or a saturated generator shows up as schedule lag instead of silently lowering the request rate
(coordinated omission).
"""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(slots=True)
class Schedule:
    """Planned times on the `time.monotonic()` clock, one interval apart, each jittered by +/- `jitter` of it."""

    next_due: float
    jitter: float = 0.1

    @classmethod
    def starting(cls, now: float, interval_s: float, jitter: float, rng: random.Random) -> Schedule:
        """First slot at a random point of the first interval, so a fleet that starts at once spreads out."""
        return cls(next_due=now + rng.uniform(0.0, interval_s), jitter=jitter)

    def take(self, interval_s: float, now: float, rng: random.Random) -> float:
        """Serve the due slot: return its planned time (for measuring lag when the send really starts) and plan
        the next one. Slots more than an interval behind are dropped (a real device would not send a burst of
        stale polls); the lag of the slot served still shows how late it was."""
        served = self.next_due
        planned = served + interval_s * (1.0 + rng.uniform(-self.jitter, self.jitter))
        if planned < now - interval_s:
            planned = now + rng.uniform(0.0, interval_s * self.jitter)
        self.next_due = planned
        return served
