"""Load shapes for the fleet, chosen with `--shape`:

- `constant`: `-u` users (`-r` per second) for `--run-time`;
- `step`: `--step-users` more every `--step-seconds`, up to `--max-users`, for `--run-time`;
- `until-failure`: the step ramp, checking the SLO (`--slo`) over each finished step; after `--failure-checks`
  consecutive failed checks it stops and records the last step that passed as the capacity.

One user carries `--devices-per-user` devices, so devices = users x devices per user.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from _slo import CheckResult, EntryStats, evaluate, parse_slo, window
from _stats_view import entries
from locust import LoadTestShape

log = logging.getLogger(__name__)


@dataclass
class StepCheck:
    users: int
    passed: bool
    results: list[CheckResult] = field(default_factory=list)


class FleetShape(LoadTestShape):
    use_common_options = True

    def __init__(self) -> None:
        super().__init__()
        self.checks: list[StepCheck] = []
        self.capacity_users: int | None = None
        self.stopped_by_slo = False
        self._step_started_stats: list[EntryStats] = []
        self._current_step = -1

    def reset_time(self) -> None:
        super().reset_time()
        self.checks = []
        self.capacity_users = None
        self.stopped_by_slo = False
        self._current_step = -1

    def tick(self) -> tuple[int, float] | None:
        assert self.runner is not None
        options = self.runner.environment.parsed_options
        assert options is not None
        run_time = self.get_run_time()
        if self.stopped_by_slo or (options.run_time and run_time >= options.run_time):
            return None
        spawn_rate = float(options.spawn_rate or 1)
        if options.shape == "constant":
            return int(options.num_users or 1), spawn_rate
        step = int(run_time // options.step_seconds)
        users = options.step_users * (step + 1)
        if options.max_users:
            users = min(users, options.max_users)
        if step != self._current_step:
            if options.shape == "until-failure" and self._current_step >= 0 and not self._check_step(options):
                return None
            self._current_step = step
            self._step_started_stats = entries(self.runner.stats)
        return users, max(spawn_rate, options.step_users / max(1.0, options.step_seconds / 4))

    def _check_step(self, options: object) -> bool:
        """Judge the step that just ended; False when the ramp must stop."""
        assert self.runner is not None
        step_users = getattr(options, "step_users", 1) * (self._current_step + 1)
        max_users = getattr(options, "max_users", 0)
        if max_users:
            step_users = min(step_users, max_users)
        objectives = parse_slo(getattr(options, "slo", "") or "failures=0.01")
        results = evaluate(objectives, window(entries(self.runner.stats), self._step_started_stats))
        passed = all(result.passed for result in results)
        self.checks.append(StepCheck(step_users, passed, results))
        log.info("step with %s users: SLO %s", step_users, "passed" if passed else "FAILED")
        if passed:
            self.capacity_users = step_users
            return True
        failed_in_a_row = 0
        for check in reversed(self.checks):
            if check.passed:
                break
            failed_in_a_row += 1
        if failed_in_a_row >= max(1, getattr(options, "failure_checks", 2)):
            self.stopped_by_slo = True
            log.info("SLO failed %s steps in a row: capacity %s users", failed_in_a_row, self.capacity_users)
            return False
        return True


def devices(users: int | None, devices_per_user: int) -> int | None:
    return None if users is None else users * max(1, devices_per_user)


__all__ = ["FleetShape", "devices"]
