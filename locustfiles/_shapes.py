"""Load shapes for the fleet, chosen with `--shape`:

- `constant`: `-u` users (`-r` per second) for `--run-time`;
- `step`: `--step-users` more every `--step-seconds`, up to `--max-users`, for `--run-time`;
- `until-failure`: the step ramp, judging the SLO (`--slo`, else the default SLO) over each finished step; after
  `--failure-checks` consecutive broken steps it stops. Its capacity is the largest fleet judged before the
  first broken step (`app.slo.RunVerdict.capacity_devices`).

One user carries `--devices-per-user` devices, so devices = users x devices per user. The shape cuts the run into
windows (`_windows.WindowTracker`): one per step, one for a constant fleet; the SLO is judged on their figures.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from _windows import WindowTracker
from locust import LoadTestShape

from app.slo import DEFAULT_SLO, RunVerdict, judge

log = logging.getLogger(__name__)


class FleetShape(LoadTestShape):
    use_common_options = True

    def __init__(self) -> None:
        super().__init__()
        self.tracker: WindowTracker | None = None
        self.verdict: RunVerdict | None = None
        self.stopped_by_slo = False
        self._current_users = 0

    def reset_time(self) -> None:
        super().reset_time()
        self.verdict = None
        self.stopped_by_slo = False
        self._current_users = 0

    def tick(self) -> tuple[int, float] | None:
        assert self.runner is not None
        options = self.runner.environment.parsed_options
        assert options is not None
        run_time = self.get_run_time()
        if self.stopped_by_slo or (options.run_time and run_time >= options.run_time):
            return None
        spawn_rate = float(options.spawn_rate or 1)
        if options.shape == "constant":
            users = int(options.num_users or 1)
            if users != self._current_users:
                planned_end = time.time() - run_time + options.run_time if options.run_time else None
                self._cut(users, planned_end)
            return users, spawn_rate
        step = int(run_time // options.step_seconds)
        users = options.step_users * (step + 1)
        if options.max_users:
            users = min(users, options.max_users)
        if users != self._current_users:
            if options.shape == "until-failure" and self._current_users and not self._judge_step(options):
                return None
            step_end = time.time() - run_time + (step + 1) * options.step_seconds
            self._cut(users, step_end)
        return users, max(spawn_rate, options.step_users / max(1.0, options.step_seconds / 4))

    def _cut(self, users: int, planned_end: float | None) -> None:
        self._current_users = users
        if self.tracker is not None:
            self.tracker.cut(users, planned_end)

    def _judge_step(self, options: Any) -> bool:
        """Close and judge the step that just ended; False when the ramp must stop."""
        if self.tracker is None:
            return True
        self.tracker.cut(0)
        self.verdict = judge(options.slo or DEFAULT_SLO, self.tracker.windows)
        last = self.verdict.windows[-1]
        log.info(
            "step with %s devices: SLO %s",
            last.window.devices,
            {True: "met", False: "BROKEN", None: "not judged"}[last.passed],
        )
        broken_in_a_row = 0
        for window in reversed(self.verdict.judged):
            if window.passed:
                break
            broken_in_a_row += 1
        if broken_in_a_row >= max(1, int(options.failure_checks or 2)):
            self.stopped_by_slo = True
            log.info(
                "SLO broken %s steps in a row: capacity %s devices", broken_in_a_row, self.verdict.capacity_devices
            )
            return False
        return True


__all__ = ["FleetShape"]
