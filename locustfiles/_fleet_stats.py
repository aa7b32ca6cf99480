"""The fleet's own figures, kept apart from Locust's request statistics: the devices' slots (due, given up, schedule
lag) and their backlog of readings not yet uploaded.

Every process counts what its devices do. A worker sends what it counted since its last report with Locust's
own stats report (`report_to_master`), and the master adds the reports up (`worker_report`), so the master's
figures cover all workers, as its request statistics do. The backlog is a level, not a count: the master keeps
each worker's latest and sums them.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from app.slo import SlotFigures, merge, round_ms

if TYPE_CHECKING:
    from locust.env import Environment

REPORT_KEY = "fleetbed_fleet"
LOCAL = "local"


class CarriesBacklog(Protocol):
    def backlog_readings(self) -> int: ...


@dataclass
class FleetStats:
    """Counts since the start of the test (on a worker: since its last report to the master)."""

    due: int = 0
    given_up: int = 0
    lag: dict[int, int] = field(default_factory=dict)
    backlog: dict[str, int] = field(default_factory=dict)  # process (worker id, or LOCAL) -> readings waiting
    carriers: weakref.WeakSet[CarriesBacklog] = field(default_factory=weakref.WeakSet)

    def served(self, lag_ms: float) -> None:
        """A slot served `lag_ms` after its plan."""
        self.due += 1
        key = round_ms(max(0.0, lag_ms))
        self.lag[key] = self.lag.get(key, 0) + 1

    def gave_up(self, slots: int, lag_ms: float) -> None:
        """Slots a device gave up while `lag_ms` behind its plan."""
        if slots <= 0:
            return
        self.due += slots
        self.given_up += slots
        key = round_ms(max(0.0, lag_ms))
        self.lag[key] = self.lag.get(key, 0) + slots

    def slots(self) -> SlotFigures:
        return SlotFigures(self.due, self.given_up, dict(self.lag))

    def backlog_total(self) -> int:
        local = sum(carrier.backlog_readings() for carrier in list(self.carriers))
        if self.carriers:
            self.backlog[LOCAL] = local
        return sum(self.backlog.values())

    def reset(self) -> None:
        self.due = self.given_up = 0
        self.lag = {}
        self.backlog = {}

    def take_report(self) -> dict[str, Any]:
        """A worker's report since the last one (the counts start again from zero)."""
        report = {"due": self.due, "given_up": self.given_up, "lag": self.lag, "backlog": self.backlog_total()}
        self.due = self.given_up = 0
        self.lag = {}
        return report

    def add_report(self, worker: str, report: dict[str, Any]) -> None:
        self.due += int(report.get("due", 0))
        self.given_up += int(report.get("given_up", 0))
        # msgpack may hand integer keys back as they were sent; JSON-like transports as strings.
        self.lag = merge([self.lag, {int(k): int(v) for k, v in dict(report.get("lag", {})).items()}])
        self.backlog[worker] = int(report.get("backlog", 0))


_STATS: dict[int, FleetStats] = {}


def fleet_stats(environment: Environment) -> FleetStats:
    return _STATS.setdefault(id(environment), FleetStats())


def attach_fleet_stats(environment: Environment) -> None:
    """Wire one environment's figures to Locust's worker reports and test lifecycle (from the init event)."""
    from locust.runners import MasterRunner, WorkerRunner  # here: FleetStats itself is plain Python, testable alone

    stats = fleet_stats(environment)

    def _on_report_to_master(client_id: str, data: dict[str, Any], **_: Any) -> None:
        data[REPORT_KEY] = stats.take_report()

    def _on_worker_report(client_id: str, data: dict[str, Any], **_: Any) -> None:
        report = data.get(REPORT_KEY)
        if report is not None:
            stats.add_report(client_id, report)

    def _on_reset(**_: Any) -> None:
        stats.reset()

    if isinstance(environment.runner, WorkerRunner):
        environment.events.report_to_master.add_listener(_on_report_to_master)
    elif isinstance(environment.runner, MasterRunner):
        environment.events.worker_report.add_listener(_on_worker_report)
    environment.events.test_start.add_listener(_on_reset)
    environment.events.reset_stats.add_listener(_on_reset)
