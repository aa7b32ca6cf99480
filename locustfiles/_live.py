"""The fleet's figures as they are now, on the master: the last few seconds (`recent`), and the open window
judged so far. One sample a second feeds the Fleet tab of the web UI, the master's /metrics (read by
`fleetbed experiment`'s live line) and the fleet's history CSV, all with the definitions of `app.slo`.
"""

from __future__ import annotations

import csv
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from app.slo import Figures, Window, WindowVerdict

RECENT_S = 10.0
HISTORY_SUFFIX = "_fleet_history.csv"
HISTORY_COLUMNS = (
    "Timestamp", "Users", "Devices", "Requests/s", "Request p50 ms", "Request p95 ms", "Request p99 ms",
    "Failures/s", "Slots due", "Slots given up", "Lag p50 ms", "Lag p95 ms", "Lag p99 ms", "Backlog readings",
    "Window devices", "Window judged",
)  # fmt: skip


@dataclass(frozen=True)
class Recent:
    """The figures of the last `seconds` (up to RECENT_S)."""

    seconds: float
    figures: Figures

    def per_second(self, count: int) -> float:
        return count / self.seconds if self.seconds > 0 else 0.0


@dataclass(frozen=True)
class LiveState:
    """What the fleet looks like this second: the fleet, the last seconds' figures, the open window judged so far
    (`verdict.checks` is None while it warms up, and empty without objectives)."""

    at: float
    users: int
    devices: int
    recent: Recent
    total: Figures
    backlog_readings: int
    window: Window | None
    verdict: WindowVerdict | None

    def history_row(self) -> list[object]:
        recent = self.recent.figures
        return [
            round(self.at, 3),
            self.users,
            self.devices,
            round(self.recent.per_second(recent.request_count()), 3),
            recent.latency_ms(50),
            recent.latency_ms(95),
            recent.latency_ms(99),
            round(self.recent.per_second(recent.failure_count()), 3),
            self.total.slots.due,
            self.total.slots.given_up,
            recent.lag_ms(50),
            recent.lag_ms(95),
            recent.lag_ms(99),
            self.backlog_readings,
            "" if self.window is None else self.window.devices,
            "" if self.window is None else int(self.window.is_judged),
        ]


class LiveFigures:
    """Cumulative figures sampled once a second; `recent()` is the difference over the last RECENT_S."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self.samples: deque[tuple[float, Figures]] = deque()

    def reset(self) -> None:
        self.samples.clear()

    def add(self, figures: Figures) -> None:
        now = self.clock()
        self.samples.append((now, figures))
        while len(self.samples) > 2 and now - self.samples[1][0] >= RECENT_S:
            self.samples.popleft()

    def recent(self) -> Recent:
        if len(self.samples) < 2:
            return Recent(0.0, Figures())
        (first, older), (last, newer) = self.samples[0], self.samples[-1]
        return Recent(last - first, newer.minus(older))


class HistoryWriter:
    """`<--csv prefix>_fleet_history.csv`: one row a second, next to Locust's own stats history."""

    def __init__(self, prefix: str) -> None:
        self.path = Path(f"{prefix}{HISTORY_SUFFIX}")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.file: IO[str] = self.path.open("w", newline="")
        self.writer = csv.writer(self.file)
        self.writer.writerow(HISTORY_COLUMNS)
        self.file.flush()

    def write(self, row: list[object]) -> None:
        self.writer.writerow(["" if value is None else value for value in row])
        self.file.flush()

    def close(self) -> None:
        self.file.close()
