"""Each device's own timetable: planned send times with jitter, and the lag between planned and actual.

The plan never waits for responses: the next planned time follows from the previous *planned* time, so a slow
server or a saturated generator shows up as schedule lag instead of silently lowering the request rate
(coordinated omission).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import NamedTuple


class Slot(NamedTuple):
    """The slot being served: its planned start, and how many earlier slots were given up as stale."""

    planned: float
    skipped: int


@dataclass(slots=True)
class Schedule:
    """Planned times on the `time.monotonic()` clock, one interval apart, each jittered by +/- `jitter` of it."""

    next_due: float
    jitter: float = 0.1

    @classmethod
    def starting(cls, now: float, interval_s: float, jitter: float, rng: random.Random) -> Schedule:
        """First slot at a random point of the first interval, so a fleet that starts at once spreads out."""
        return cls(next_due=now + rng.uniform(0.0, interval_s), jitter=jitter)

    def take(self, interval_s: float, now: float, rng: random.Random) -> Slot:
        """Serve the due slot and plan the next one. A device more than an interval behind gives up the slots it
        missed instead of sending a burst of stale cycles (a real device would not); they are counted as
        `skipped`, and the served slot's lag still shows how late it was."""
        served = self.next_due
        planned = served + interval_s * (1.0 + rng.uniform(-self.jitter, self.jitter))
        skipped = 0
        if planned < now - interval_s:
            skipped = int((now - served) // interval_s)
            planned = now + rng.uniform(0.0, interval_s * self.jitter)
        self.next_due = planned
        return Slot(served, skipped)

    def overdue(self, interval_s: float, now: float) -> int:
        """Slots more than an interval behind at `now` that nobody served (counted as given up when the device
        stops, so a device stuck behind a slow service still shows in the plan's count)."""
        return max(0, int((now - self.next_due) // interval_s))
