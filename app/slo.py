"""The fleet's service level objectives: their grammar, the default, the figures they are judged on and the one
evaluator behind every verdict (Locust's exit code, the live line, `fleetbed experiment`'s summary, the report).

Made for both sides of the house: the fleet (`locustfiles/`, under gevent) and the experiment (`app/experiment/`).
So it imports the standard library only: no asyncio, no gevent, no Locust, nothing else of `app`. It is the one
module of `app` that `locustfiles/` may import (tests/test_slo.py keeps both rules).

Grammar: items separated by commas or spaces, each `METRIC[REQUEST NAME]=LIMIT` (the bracket part optional):
- `p50`, `p95`, `p99`, `p99.9` ...: latency percentile in ms of the fleet's requests (all, or one request name);
- `failures`: failed requests / requests (0..1), all or one request name;
- `lag_p95`, `lag_p99` ...: schedule lag percentile in ms over the devices' slots;
- `given_up`: slots given up / slots due (0..1).
A check passes when the value is at most its limit.

One definition of each figure:
- Requests are the fleet's HTTP requests, nothing else (schedule lag and given-up slots are not requests).
- A percentile is the smallest recorded time with that share of the samples at or below it, over times rounded
  as Locust rounds them (`round_ms`): exact for the window, never a histogram bucket bound.
- A slot is a device's planned send time. A served slot counts with its lag (actual start minus plan); a slot given
  up (its device was more than an interval behind) counts in `given_up` and, in the lag figures, with the lag its
  device had when giving it up. Given-up slots are not request failures.
- A window is a stretch of constant target fleet: one step of a ramp, or the whole run of a constant fleet. Its
  warm-up (the new devices starting and each one's first slot, with its login: `warmup_end`) is reported and never
  judged; the rest of the window is judged. A window that ends inside its warm-up is reported, not judged.
- A run holds the SLO when every judged window met it (and at least one was judged). The capacity is the largest
  fleet judged before the first window that broke the SLO (`capacity_devices`).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

DEFAULT_SLO = "p95=1000, p99=2500, failures=0.01, lag_p99=250"
MAX_WARMUP_FRACTION = 0.5

_TOKEN = re.compile(r"[^,\s\[]+(?:\[[^\]]*\])?[^,\s]*")
_ITEM = re.compile(
    r"^(?P<metric>lag_p\d+(?:\.\d+)?|p\d+(?:\.\d+)?|failures|given_up)(?:\[(?P<name>[^\]]+)\])?=(?P<limit>.+)$"
)

Histogram = Mapping[int, int]  # time in ms, rounded by `round_ms` -> how many samples


class SLOSyntaxError(ValueError):
    """The SLO text does not parse; the message names the item and the expected form."""


@dataclass(frozen=True)
class Objective:
    metric: str
    name: str | None
    limit: float

    @property
    def label(self) -> str:
        return f"{self.metric}[{self.name}]" if self.name else self.metric


def parse_slo(text: str) -> list[Objective]:
    objectives = []
    for item in _TOKEN.findall(text or ""):
        match = _ITEM.match(item)
        if not match:
            raise SLOSyntaxError(
                f"--slo item {item!r}: expected METRIC[NAME]=LIMIT with METRIC one of pNN, failures, lag_pNN, "
                "given_up, such as p95=500 or failures=0.01"
            )
        if match["name"] and (match["metric"] == "given_up" or match["metric"].startswith("lag")):
            raise SLOSyntaxError(f"--slo item {item!r}: {match['metric']} is over slots, not one request name")
        try:
            limit = float(match["limit"])
        except ValueError:
            raise SLOSyntaxError(f"--slo item {item!r}: the limit must be a number") from None
        if not math.isfinite(limit) or limit < 0:
            raise SLOSyntaxError(f"--slo item {item!r}: the limit must be a finite number >= 0")
        objectives.append(Objective(match["metric"], match["name"], limit))
    return objectives


def objective_limit(text: str, label: str) -> float | None:
    """The limit of one objective (by label, e.g. `p95`) in an SLO text, or None when it has none."""
    return next((o.limit for o in parse_slo(text) if o.label == label), None)


# -- figures ----------------------------------------------------------------------------------------------------


def round_ms(ms: float) -> int:
    """Locust's rounding of a time: whole ms below 100, then 2 significant digits (10, 100, 1000 ms steps)."""
    if ms < 100:
        return round(ms)
    if ms < 1000:
        return int(round(ms, -1))
    if ms < 10_000:
        return int(round(ms, -2))
    return int(round(ms, -3))


def percentile(times: Histogram, percent: float) -> float | None:
    """The smallest recorded time with at least `percent` of the samples at or below it; None with no samples."""
    total = sum(times.values())
    if total <= 0:
        return None
    rank = percent / 100.0 * total
    seen = 0
    for value in sorted(times):
        seen += times[value]
        if seen >= rank:
            return float(value)
    return float(max(times))


def merge(histograms: Iterable[Histogram]) -> dict[int, int]:
    merged: dict[int, int] = {}
    for histogram in histograms:
        for value, count in histogram.items():
            merged[value] = merged.get(value, 0) + count
    return merged


def subtract(later: Histogram, earlier: Histogram) -> dict[int, int]:
    """What a cumulative histogram gained between two snapshots."""
    return {value: count - earlier.get(value, 0) for value, count in later.items() if count > earlier.get(value, 0)}


@dataclass(frozen=True)
class RequestFigures:
    """One request name: how many, how many failed, and their times."""

    method: str
    name: str
    requests: int
    failures: int
    times: Histogram

    @property
    def key(self) -> str:
        return f"{self.method} {self.name}"


@dataclass(frozen=True)
class SlotFigures:
    """The devices' slots: due = served + given up; `lag` holds every due slot (given-up ones at their lag)."""

    due: int = 0
    given_up: int = 0
    lag: Histogram = field(default_factory=dict)

    def plus(self, other: SlotFigures) -> SlotFigures:
        return SlotFigures(self.due + other.due, self.given_up + other.given_up, merge([self.lag, other.lag]))


@dataclass(frozen=True)
class Figures:
    """Everything the objectives are judged on, for one stretch of time (or cumulative since the start)."""

    requests: tuple[RequestFigures, ...] = ()
    slots: SlotFigures = SlotFigures()

    def minus(self, earlier: Figures) -> Figures:
        """The figures between two cumulative snapshots."""
        before = {entry.key: entry for entry in earlier.requests}
        requests = []
        for entry in self.requests:
            old = before.get(entry.key)
            if old is None:
                requests.append(entry)
            else:
                requests.append(
                    replace(
                        entry,
                        requests=entry.requests - old.requests,
                        failures=entry.failures - old.failures,
                        times=subtract(entry.times, old.times),
                    )
                )
        slots = SlotFigures(
            self.slots.due - earlier.slots.due,
            self.slots.given_up - earlier.slots.given_up,
            subtract(self.slots.lag, earlier.slots.lag),
        )
        return Figures(tuple(entry for entry in requests if entry.requests > 0), slots)

    def chosen(self, name: str | None) -> list[RequestFigures]:
        return [entry for entry in self.requests if name is None or entry.name == name]

    def request_count(self, name: str | None = None) -> int:
        return sum(entry.requests for entry in self.chosen(name))

    def failure_count(self, name: str | None = None) -> int:
        return sum(entry.failures for entry in self.chosen(name))

    def latency_ms(self, percent: float, name: str | None = None) -> float | None:
        return percentile(merge(entry.times for entry in self.chosen(name)), percent)

    def failure_ratio(self, name: str | None = None) -> float | None:
        requests = self.request_count(name)
        return self.failure_count(name) / requests if requests else None

    def lag_ms(self, percent: float) -> float | None:
        return percentile(self.slots.lag, percent)

    def given_up_ratio(self) -> float | None:
        return self.slots.given_up / self.slots.due if self.slots.due else None

    def value(self, objective: Objective) -> float | None:
        """The measured value of one objective (None: nothing to judge)."""
        metric = objective.metric
        if metric == "failures":
            return self.failure_ratio(objective.name)
        if metric == "given_up":
            return self.given_up_ratio()
        if metric.startswith("lag_p"):
            return self.lag_ms(float(metric[5:]))
        return self.latency_ms(float(metric[1:]), objective.name)

    def as_json(self) -> dict[str, Any]:
        return {
            "requests": [
                {
                    "method": entry.method,
                    "name": entry.name,
                    "requests": entry.requests,
                    "failures": entry.failures,
                    "times": {str(value): count for value, count in sorted(entry.times.items())},
                }
                for entry in self.requests
            ],
            "slots": {
                "due": self.slots.due,
                "given_up": self.slots.given_up,
                "lag": {str(value): count for value, count in sorted(self.slots.lag.items())},
            },
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Figures:
        requests = tuple(
            RequestFigures(
                str(entry["method"]),
                str(entry["name"]),
                int(entry["requests"]),
                int(entry["failures"]),
                {int(value): int(count) for value, count in entry["times"].items()},
            )
            for entry in data.get("requests", [])
        )
        slots = data.get("slots", {})
        lag = {int(value): int(count) for value, count in slots.get("lag", {}).items()}
        return cls(requests, SlotFigures(int(slots.get("due", 0)), int(slots.get("given_up", 0)), lag))


# -- windows and verdicts ---------------------------------------------------------------------------------------


def warmup_end(start: float, spawned: float, interval_s: float, planned_end: float | None = None) -> float:
    """When a window's judged part begins: once all its devices have started (`spawned`) and each has had one
    interval for its first slot (a device's first slot falls within its first interval). When the window's length
    is planned (a step, a timed run), the warm-up takes at most MAX_WARMUP_FRACTION of it."""
    end = max(start, spawned) + interval_s
    if planned_end is not None and planned_end > start:
        end = min(end, start + MAX_WARMUP_FRACTION * (planned_end - start))
    return end


@dataclass(frozen=True)
class Window:
    """A stretch of constant target fleet; times in seconds since the epoch. `judged_from` is None when the window
    ended inside its warm-up (then `judged` is empty)."""

    users: int
    devices: int
    start: float
    end: float
    judged_from: float | None
    warmup: Figures
    judged: Figures

    @property
    def is_judged(self) -> bool:
        return self.judged_from is not None

    @property
    def judged_seconds(self) -> float:
        return 0.0 if self.judged_from is None else max(0.0, self.end - self.judged_from)

    def as_json(self) -> dict[str, Any]:
        return {
            "users": self.users,
            "devices": self.devices,
            "start": self.start,
            "end": self.end,
            "judged_from": self.judged_from,
            "warmup": self.warmup.as_json(),
            "judged": self.judged.as_json(),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Window:
        judged_from = data.get("judged_from")
        return cls(
            int(data["users"]),
            int(data["devices"]),
            float(data["start"]),
            float(data["end"]),
            None if judged_from is None else float(judged_from),
            Figures.from_json(data.get("warmup", {})),
            Figures.from_json(data.get("judged", {})),
        )


@dataclass(frozen=True)
class Check:
    objective: Objective
    value: float | None  # None: no data, nothing to judge (the check passes)
    passed: bool

    def as_json(self) -> dict[str, Any]:
        return {
            "objective": self.objective.label,
            "value": self.value,
            "limit": self.objective.limit,
            "passed": self.passed,
        }

    @property
    def text(self) -> str:
        shown = "no data" if self.value is None else f"{self.value:.4g}"
        relation = "<=" if self.passed else ">"
        return f"{self.objective.label}={shown} {relation} {self.objective.limit:g}"


def evaluate(objectives: Iterable[Objective], figures: Figures) -> list[Check]:
    checks = []
    for objective in objectives:
        value = figures.value(objective)
        checks.append(Check(objective, value, value is None or value <= objective.limit))
    return checks


@dataclass(frozen=True)
class WindowVerdict:
    window: Window
    checks: tuple[Check, ...] | None  # None: not judged (warm-up only)

    @property
    def passed(self) -> bool | None:
        return None if self.checks is None else all(check.passed for check in self.checks)

    @property
    def broken(self) -> list[Check]:
        return [check for check in self.checks or () if not check.passed]


@dataclass(frozen=True)
class RunVerdict:
    slo: str
    windows: tuple[WindowVerdict, ...]

    @property
    def judged(self) -> list[WindowVerdict]:
        return [verdict for verdict in self.windows if verdict.checks is not None]

    @property
    def held(self) -> bool:
        """Every judged window met the SLO, and some window was judged."""
        judged = self.judged
        return bool(judged) and all(verdict.passed for verdict in judged)

    @property
    def capacity_devices(self) -> int | None:
        """The largest fleet judged before the first window that broke the SLO."""
        return capacity_of((verdict.window.devices, bool(verdict.passed)) for verdict in self.judged)

    def passed(self, until_failure: bool) -> bool:
        """The run's verdict: a ramp until failure passes when it found a capacity; any other run when it held."""
        return self.capacity_devices is not None if until_failure else self.held


def capacity_of(judged: Iterable[tuple[int, bool]]) -> int | None:
    """The capacity from (devices, SLO met) of the judged windows in order: the largest fleet before the first
    window that broke the SLO; None when the first one broke it."""
    best = None
    for devices, passed in judged:
        if not passed:
            break
        best = max(best or 0, devices)
    return best


def judge(slo: str, windows: Sequence[Window]) -> RunVerdict:
    objectives = parse_slo(slo)
    return RunVerdict(
        slo,
        tuple(
            WindowVerdict(window, tuple(evaluate(objectives, window.judged)) if window.is_judged else None)
            for window in windows
        ),
    )


def whole(windows: Iterable[Window], part: str = "judged") -> Figures:
    """The judged (or warm-up) parts of several windows as one set of figures."""
    chosen = [window.judged if part == "judged" else window.warmup for window in windows]
    by_key: dict[str, list[RequestFigures]] = {}
    for figures in chosen:
        for entry in figures.requests:
            by_key.setdefault(entry.key, []).append(entry)
    requests = tuple(
        RequestFigures(
            entries[0].method,
            entries[0].name,
            sum(e.requests for e in entries),
            sum(e.failures for e in entries),
            merge(e.times for e in entries),
        )
        for _, entries in sorted(by_key.items())
    )
    slots = SlotFigures()
    for figures in chosen:
        slots = slots.plus(figures.slots)
    return Figures(requests, slots)


def verdict_text(verdict: RunVerdict, until_failure: bool = False) -> str:
    """The verdict as printed at the end of a run: every window, its checks with their measured values."""
    if not verdict.slo.strip():
        return "SLO: none set (--slo)"
    lines = [f"SLO verdict ({verdict.slo}):"]
    for number, window_verdict in enumerate(verdict.windows, 1):
        window = window_verdict.window
        head = f"  window {number}: {window.devices:,} devices, {window.end - window.start:.0f} s"
        if window_verdict.checks is None:
            lines.append(f"{head}: warm-up only, not judged")
            continue
        warmup = (window.judged_from or window.start) - window.start
        lines.append(f"{head} ({warmup:.0f} s warm-up not judged): {'met' if window_verdict.passed else 'BROKEN'}")
        for check in window_verdict.checks:
            lines.append(f"    {'PASS' if check.passed else 'FAIL'}  {check.text}")
    if not verdict.judged:
        lines.append("  no window lasted past its warm-up: nothing judged (run longer)")
    if until_failure:
        capacity = verdict.capacity_devices
        lines.append(f"  capacity: {'none: no step met the SLO' if capacity is None else f'{capacity:,} devices'}")
    lines.append(f"  overall: {'PASS' if verdict.passed(until_failure) else 'FAIL'}")
    return "\n".join(lines)


__all__ = [
    "DEFAULT_SLO",
    "Check",
    "Figures",
    "Objective",
    "RequestFigures",
    "RunVerdict",
    "SLOSyntaxError",
    "SlotFigures",
    "Window",
    "WindowVerdict",
    "capacity_of",
    "evaluate",
    "judge",
    "merge",
    "objective_limit",
    "parse_slo",
    "percentile",
    "round_ms",
    "subtract",
    "verdict_text",
    "warmup_end",
    "whole",
]
