"""The capacity search of `fleetbed experiment`: how many devices before the SLO breaks, in a few minutes.

Geometric steps (`factor` times more devices each) up to the first fleet that breaks the SLO, then bisections
between the largest fleet that held and the smallest that broke (at most `refinements`, until the gap is
`resolution`), then a confirmation step at the capacity found (a broken confirmation lowers the capacity and the
next one down is confirmed). The fleet follows the target this module writes to a file (the locustfile's `follow`
shape); each new target opens one of the fleet's windows, whose warm-up lasts until its devices have started and
`settle_s` more (longer after a broken step, whose backlog must drain). The search holds each step `judge_s`
into its judged part and reads the fleet's own verdict of the open window so far (`app.slo`, on the master's
/metrics); the window then closes within a second, and the report judges the closed windows with that same
evaluator, so the search and the report agree about each step.
"""

from __future__ import annotations

import math
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from app.slo import capacity_of

STEP_TIMEOUT_S = 60.0  # a step whose window never reaches its judged part is taken as broken
AFTER_BREAK_SETTLE_FACTOR = 2.0
WINDOW_SLO_MET = "fleetbed_generator_window_slo_met"


def window_slo_met(metrics_url: str) -> bool | None:
    """The fleet's verdict of its open window so far: True met, False broken, None while it warms up (or when the
    master does not answer)."""
    try:
        with urllib.request.urlopen(metrics_url, timeout=2) as response:  # noqa: S310 (the run's own http URL)
            text = response.read().decode()
    except (OSError, ValueError):
        return None
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == WINDOW_SLO_MET:
                return bool(sample.value)
    return None


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


@dataclass(frozen=True)
class Judged:
    """A step as the search saw it: its fleet, its role and the fleet's verdict of its window."""

    devices: int
    role: str
    passed: bool


@dataclass
class _Step:
    devices: int
    role: str
    target_set_at: float
    judge_s: float
    warming_seen: bool = False
    judged_from: float | None = None


@dataclass
class CapacitySearch:
    """Steers the fleet step by step; `poll()` once a second until it returns False."""

    plan: SearchPlan
    target_file: Path
    metrics_url: str  # the Locust master's /metrics
    devices_per_user: int
    record: dict[str, Any]  # the run's plan: gets "search_steps" (fleet, role, when its target was set, verdict)
    judged: list[Judged] = field(default_factory=list)
    done: bool = False
    _step: _Step | None = None
    _confirmations: int = 0
    started_at: float = 0.0

    def start(self) -> None:
        self.started_at = time.time()
        self.record["search_steps"] = []
        self._begin(round_devices(self.plan.start_devices, self.devices_per_user), "search", previous_broke=False)

    def status(self) -> str:
        """Where the search stands, for the live line: `search step 6 (refine, 2,800 devices) 1:42`."""
        step = self._step
        if step is None or self.done:
            return "search done"
        elapsed = int(time.time() - self.started_at)
        phase = "warming up" if step.judged_from is None else "judging"
        return (
            f"search step {len(self.judged) + 1} ({step.role} {step.devices:,} devices, {phase}) "
            f"{elapsed // 60}:{elapsed % 60:02d}"
        )

    def _users(self, devices: int) -> int:
        return max(1, math.ceil(devices / self.devices_per_user))

    def _begin(self, devices: int, role: str, previous_broke: bool) -> None:
        users = self._users(devices)
        current = self._users(self._step.devices) if self._step else 0
        spawn_rate = max(10.0, abs(users - current) / 2.0)
        settle = self.plan.settle_s * (AFTER_BREAK_SETTLE_FACTOR if previous_broke else 1.0)
        # The step number makes the fleet open a new window even when the fleet size repeats (a confirmation).
        self.target_file.write_text(f"{users} {spawn_rate:g} {settle:g} {len(self.judged) + 1}\n")
        judge = self.plan.confirm_s if role == "confirm" else self.plan.judge_s
        self._step = _Step(users * self.devices_per_user, role, time.time(), judge)

    def _finish(self) -> None:
        self.target_file.write_text("stop\n")
        self.done = True

    def poll(self) -> bool:
        """Advance the search; False once it has finished (the fleet was told to stop)."""
        step = self._step
        if self.done or step is None:
            return False
        met = window_slo_met(self.metrics_url)
        now = time.time()
        if step.judged_from is None:
            # The new window warms up first (no verdict yet); its verdict appears when its judged part begins.
            if met is None:
                step.warming_seen = True
            elif step.warming_seen:
                step.judged_from = now
            if now - step.target_set_at > STEP_TIMEOUT_S:
                self._judge(step, passed=False)
            return True
        if now - step.judged_from >= step.judge_s and met is not None:
            self._judge(step, passed=met)
        return not self.done

    def _judge(self, step: _Step, passed: bool) -> None:
        self.judged.append(Judged(step.devices, step.role, passed))
        self.record["search_steps"].append(
            {"devices": step.devices, "role": step.role, "target_set_at": step.target_set_at, "passed": passed}
        )
        self._next(self.judged[-1])

    def _next(self, last: Judged) -> None:
        per_user = self.devices_per_user
        broke = not last.passed
        if len(self.judged) >= self.plan.max_steps:
            return self._finish()
        held = sorted({s.devices for s in self.judged if s.passed})
        broken = min((s.devices for s in self.judged if not s.passed), default=None)
        found = capacity_of((s.devices, s.passed) for s in self.judged)
        if last.role == "confirm" and (not broke or self._confirmations >= 2):
            return self._finish()
        if broken is None:  # nothing broke yet: further up, unless capped
            if self.plan.max_devices and last.devices >= self.plan.max_devices:
                return self._finish()
            up = round_devices(last.devices * self.plan.factor, per_user)
            if self.plan.max_devices:
                up = min(up, self.plan.max_devices)
            return self._begin(up, "search", broke)
        if found is None:  # nothing held below the smallest fleet that broke: further down from it
            down = round_devices(broken / self.plan.factor, per_user)
            if down >= broken or down < self.plan.min_devices:
                return self._finish()
            return self._begin(down, "search", broke)
        refined = sum(1 for s in self.judged if s.role == "refine")
        middle = round_devices((found + broken) / 2, per_user)
        fine_enough = (broken - found) / found <= self.plan.resolution
        # A broken confirmation earns two more bisections: the gap it opens below the capacity is closed again
        # to the resolution rather than left wide (120 held, 160 broke: 140 is tried before confirming).
        budget = self.plan.refinements + 2 * self._confirmations
        if refined < budget and not fine_enough and found < middle < broken and middle not in held:
            return self._begin(middle, "refine", broke)
        return self._confirm(found, broke)

    def _confirm(self, found: int, previous_broke: bool) -> None:
        self._confirmations += 1
        self._begin(found, "confirm", previous_broke)


__all__ = ["CapacitySearch", "Judged", "SearchPlan", "round_devices", "window_slo_met"]
