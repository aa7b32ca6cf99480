"""Service level objectives: parse `--slo`, check them against request statistics, print the verdict.

Syntax: items separated by commas or spaces, each `METRIC[REQUEST NAME]=LIMIT` (the bracket part optional):
- `p50`, `p90`, `p95`, `p99`, `p99.9` ...: latency percentile in ms, over all requests or one request name;
- `failures`: failed requests / requests (0..1), over all or one name;
- `lag_p95`, `lag_p99` ...: schedule lag percentile in ms (how late devices sent against their plan).
Example: `p95=500, p99[/measurement]=1000, failures=0.01, lag_p99=250`. A check passes when the value is at most
its limit; a check with no requests yet passes (there is nothing to judge). Pure Python, no Locust import.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

LAG_REQUEST_TYPE = "LAG"
_TOKEN = re.compile(r"[^,\s\[]+(?:\[[^\]]*\])?[^,\s]*")
_ITEM = re.compile(r"^(?P<metric>lag_p\d+(?:\.\d+)?|p\d+(?:\.\d+)?|failures)(?:\[(?P<name>[^\]]+)\])?=(?P<limit>.+)$")


class SLOSyntaxError(ValueError):
    """The --slo text does not parse; the message says which item and why."""


@dataclass(frozen=True)
class Objective:
    metric: str
    name: str | None
    limit: float

    @property
    def label(self) -> str:
        return f"{self.metric}[{self.name}]" if self.name else self.metric


@dataclass(frozen=True)
class EntryStats:
    """One Locust stats entry reduced to what the checks need; `response_times` maps rounded ms to counts."""

    method: str
    name: str
    num_requests: int
    num_failures: int
    response_times: Mapping[int, int]


@dataclass(frozen=True)
class CheckResult:
    objective: Objective
    value: float | None
    passed: bool


def parse_slo(text: str) -> list[Objective]:
    objectives = []
    for item in _TOKEN.findall(text):
        match = _ITEM.match(item)
        if not match:
            raise SLOSyntaxError(f"--slo item {item!r}: expected METRIC[NAME]=LIMIT such as p95=500 or failures=0.01")
        try:
            limit = float(match["limit"])
        except ValueError:
            raise SLOSyntaxError(f"--slo item {item!r}: the limit must be a number") from None
        objectives.append(Objective(match["metric"], match["name"], limit))
    return objectives


def percentile(response_times: Mapping[int, int], percent: float) -> float | None:
    """The smallest recorded time with at least `percent` of the samples at or below it."""
    total = sum(response_times.values())
    if total == 0:
        return None
    rank = percent / 100.0 * total
    seen = 0
    for value in sorted(response_times):
        seen += response_times[value]
        if seen >= rank:
            return float(value)
    return float(max(response_times))


def merge_times(entries: Iterable[EntryStats]) -> dict[int, int]:
    merged: dict[int, int] = {}
    for entry in entries:
        for value, count in entry.response_times.items():
            merged[value] = merged.get(value, 0) + count
    return merged


def evaluate(objectives: Iterable[Objective], entries: Iterable[EntryStats]) -> list[CheckResult]:
    entries = list(entries)
    lag = [entry for entry in entries if entry.method == LAG_REQUEST_TYPE]
    requests = [entry for entry in entries if entry.method != LAG_REQUEST_TYPE]
    results = []
    for objective in objectives:
        value: float | None
        if objective.metric.startswith("lag_p"):
            value = percentile(merge_times(lag), float(objective.metric[5:]))
        else:
            chosen = [entry for entry in requests if objective.name in (None, entry.name)]
            if objective.metric == "failures":
                total = sum(entry.num_requests for entry in chosen)
                value = sum(entry.num_failures for entry in chosen) / total if total else None
            else:
                value = percentile(merge_times(chosen), float(objective.metric[1:]))
        results.append(CheckResult(objective, value, value is None or value <= objective.limit))
    return results


def verdict_text(results: list[CheckResult]) -> str:
    if not results:
        return "SLO: none set (--slo); verdict PASS"
    lines = ["SLO verdict:"]
    for result in results:
        shown = "no data" if result.value is None else f"{result.value:g}"
        mark = "PASS" if result.passed else "FAIL"
        lines.append(f"  {mark}  {result.objective.label:<28} {shown:>12} <= {result.objective.limit:g}")
    overall = "PASS" if all(result.passed for result in results) else "FAIL"
    lines.append(f"  overall: {overall}")
    return "\n".join(lines)


def window(current: list[EntryStats], previous: list[EntryStats]) -> list[EntryStats]:
    """What happened between two cumulative snapshots (for checks over one step of a ramp)."""
    before = {(entry.method, entry.name): entry for entry in previous}
    deltas = []
    for entry in current:
        old = before.get((entry.method, entry.name))
        if old is None:
            deltas.append(entry)
            continue
        times = {
            value: count - old.response_times.get(value, 0)
            for value, count in entry.response_times.items()
            if count - old.response_times.get(value, 0) > 0
        }
        deltas.append(
            EntryStats(
                entry.method,
                entry.name,
                entry.num_requests - old.num_requests,
                entry.num_failures - old.num_failures,
                times,
            )
        )
    return deltas
