"""The capacity search of `fleetbed experiment`: how many devices before the SLO breaks, in a few minutes.

Geometric steps (`factor` times more devices each) up to the first fleet that breaks the SLO, then `refinements`
bisections between the largest fleet that held and the smallest that broke, then a confirmation step at the
capacity found (a broken confirmation lowers the capacity and the next one down is confirmed). The fleet follows
the target this module writes to a file (the locustfile's `follow` shape). Each step waits until the fleet has
spawned, then `settle_s` more (longer after a broken step, whose backlog must drain), and is judged over the next
`judge_s` seconds with the report's own figures (`analysis.figures`) on the window the report will judge
afterwards: the search and the report cannot disagree about a step.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from app.experiment.analysis import StepFigures, capacity, figures, parse_slo
from app.experiment.records import (
    HISTORY_FILE,
    RESOURCES_FILE,
    RunDirectoryError,
    RunRecords,
    read_history,
    read_resources,
)

SPAWN_TIMEOUT_S = 20.0  # a fleet that does not reach its target by then is judged as it stands
AFTER_BREAK_SETTLE_FACTOR = 2.0


@dataclass(frozen=True)
class SearchPlan:
    start_devices: int = 200
    factor: float = 2.0
    refinements: int = 3
    resolution: float = 0.1  # bisections stop once the gap between held and broke is this small a share
    settle_s: float = 4.0
    judge_s: float = 12.0
    confirm_s: float = 20.0
    max_devices: int = 0  # 0: no cap
    min_devices: int = 10
    max_steps: int = 12


def round_devices(devices: float, per_user: int) -> int:
    """Two significant digits, in whole users: 1,187 becomes 1,200."""
    if devices <= 0:
        return per_user
    magnitude = int(10 ** max(0, math.floor(math.log10(devices)) - 1))
    rounded = max(1, round(devices / magnitude)) * magnitude
    return max(per_user, math.ceil(rounded / per_user) * per_user)


@dataclass
class _Step:
    devices: int
    role: str
    target_set_at: float
    judge_s: float
    settle_s: float
    start: float | None = None  # judged window, in the history's clock (Unix seconds)


@dataclass
class CapacitySearch:
    """Steers the fleet step by step; `poll()` once a second until it returns False."""

    plan: SearchPlan
    out: Path
    target_file: Path
    devices_per_user: int
    slo: str
    record: dict[str, Any]  # the run's plan: gets "steps" (the judged windows) as they are judged
    judged: list[StepFigures] = field(default_factory=list)
    done: bool = False
    _step: _Step | None = None
    _confirmations: int = 0

    def start(self) -> None:
        self.record["steps"] = []
        self._begin(round_devices(self.plan.start_devices, self.devices_per_user), "search", previous_broke=False)

    def _users(self, devices: int) -> int:
        return max(1, math.ceil(devices / self.devices_per_user))

    def _begin(self, devices: int, role: str, previous_broke: bool) -> None:
        users = self._users(devices)
        current = self._users(self._step.devices) if self._step else 0
        spawn_rate = max(10.0, abs(users - current) / 2.0)
        self.target_file.write_text(f"{users} {spawn_rate:g}\n")
        settle = self.plan.settle_s * (AFTER_BREAK_SETTLE_FACTOR if previous_broke else 1.0)
        judge = self.plan.confirm_s if role == "confirm" else self.plan.judge_s
        self._step = _Step(users * self.devices_per_user, role, time.time(), judge, settle)

    def _finish(self) -> None:
        self.target_file.write_text("stop\n")
        self.done = True

    def _records(self) -> RunRecords | None:
        try:
            entries, aggregated, lag = read_history(self.out / HISTORY_FILE)
        except (OSError, RunDirectoryError, KeyError):
            return None
        return RunRecords(self.record, entries, aggregated, lag, read_resources(self.out / RESOURCES_FILE))

    def poll(self) -> bool:
        """Advance the search; False once it has finished (the fleet was told to stop)."""
        step = self._step
        if self.done or step is None:
            return False
        records = self._records()
        if records is None:
            return True
        users, times = records.aggregated.users, records.aggregated.timestamp
        target_users = self._users(step.devices)
        if step.start is None:
            arrived = times[(users == target_users) & (times >= math.floor(step.target_set_at))]
            if arrived.size:
                step.start = float(arrived[0]) + step.settle_s
            elif time.time() - step.target_set_at > SPAWN_TIMEOUT_S:
                step.start = time.time() + step.settle_s
            else:
                return True
        end = step.start + step.judge_s
        if times.size == 0 or times[-1] < end:
            return True
        self._judge(records, step, end)
        return not self.done

    def _judge(self, records: RunRecords, step: _Step, end: float) -> None:
        assert step.start is not None
        users = self._users(step.devices)
        figures_now = figures(records, parse_slo(self.slo), users, step.start, end, step.start, step.role)
        self.judged.append(figures_now)
        self.record["steps"].append({"users": users, "start": step.start, "end": end, "role": step.role})
        self._next(figures_now)

    def _next(self, last: StepFigures) -> None:
        per_user = self.devices_per_user
        broke = not last.slo_passed
        if len(self.judged) >= self.plan.max_steps:
            return self._finish()
        held = sorted({s.devices for s in self.judged if s.slo_passed})
        broken = min((s.devices for s in self.judged if not s.slo_passed), default=None)
        found = capacity(self.judged)
        if last.role == "confirm":
            if not broke or found is None or self._confirmations >= 2:
                return self._finish()
            return self._confirm(found, broke)
        if broken is None:  # nothing broke yet: further up, unless capped
            if self.plan.max_devices and last.devices >= self.plan.max_devices:
                return self._finish()
            up = round_devices(last.devices * self.plan.factor, per_user)
            if self.plan.max_devices:
                up = min(up, self.plan.max_devices)
            return self._begin(up, "search", broke)
        if found is None:  # even the first fleet broke: further down
            down = round_devices(last.devices / self.plan.factor, per_user)
            if down >= last.devices or down < self.plan.min_devices:
                return self._finish()
            return self._begin(down, "search", broke)
        refined = sum(1 for s in self.judged if s.role == "refine")
        middle = round_devices((found + broken) / 2, per_user)
        fine_enough = (broken - found) / found <= self.plan.resolution
        if refined < self.plan.refinements and not fine_enough and found < middle < broken and middle not in held:
            return self._begin(middle, "refine", broke)
        return self._confirm(found, broke)

    def _confirm(self, found: int, previous_broke: bool) -> None:
        self._confirmations += 1
        self._begin(found, "confirm", previous_broke)


__all__ = ["CapacitySearch", "SearchPlan", "round_devices"]
