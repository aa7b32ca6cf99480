"""The verdict's rules (capacity, knee), the capacity search's decisions, how an axis reads, and the report's one
direction of data (the renderer reads no records and calls no analysis). Fast: no run needed; the report of real
runs is checked in Chromium in test_experiment.py."""

from __future__ import annotations

import ast
from dataclasses import replace
from pathlib import Path

import pytest

from app.experiment.analysis import StepFigures, capacity, confidence, knee
from app.experiment.plots import Chart, Mark, Series, elapsed, nines, number, spans_decades, svg
from app.experiment.search import CapacitySearch, Judged, SearchPlan, round_devices
from app.slo import capacity_of

SLO = "p95=1000, p99=2500, failures=0.01, lag_p99=250"
STEP = StepFigures(
    devices=100, users=10, start=0.0, end=12.0, requests=2400, failures=0, throughput_rps=200.0,
    failure_ratio=0.0, p50_ms=3.0, p95_ms=7.0, p99_ms=12.0, lag_p99_ms=5.0, service_cpu_cores=0.2,
    generator_cpu_cores=0.1, pool_waiting=0.0, pool_utilisation=0.2, pool_acquire_ms=0.1, commit_ms=1.5,
    gc_fraction=0.0, loop_lag_ms=0.5, server_ms=1.5, slo_passed=True, slo_failures=[],
)  # fmt: skip


def step(devices: int, held: bool = True, role: str = "step", **figures: float) -> StepFigures:
    rate = figures.pop("throughput_rps", 2.0 * devices)
    return replace(STEP, devices=devices, slo_passed=held, role=role, throughput_rps=rate, **figures)


def test_capacity_is_below_the_smallest_fleet_that_broke() -> None:
    # The run: 3,600 broke, 4,000 passed by luck: the capacity is 3,200, not 4,000.
    steps = [step(3200), step(3600, held=False), step(4000)]
    assert capacity(steps) == 3200


def test_a_confirmation_that_broke_lowers_the_capacity() -> None:
    steps = [step(400), step(800, held=False), step(600), step(600, held=False, role="confirm")]
    assert capacity(steps) == 400
    assert "a confirmation at 600 devices broke the SLO" in confidence(steps, capacity(steps)).sentence


def test_how_sure_names_the_gap_and_the_repeat() -> None:
    steps = [step(400), step(800, held=False), step(600, p95_ms=100.0),
             step(600, role="confirm", p95_ms=120.0, throughput_rps=1140.0)]  # fmt: skip
    sure = confidence(steps, capacity(steps))
    assert (sure.broken_devices, sure.confirmed, sure.gap) == (800, True, pytest.approx(1 / 3))
    assert sure.repeat_throughput_change == pytest.approx(-0.05)
    assert sure.repeat_p95_change_ms == pytest.approx(20.0)
    assert "between 600 devices (held) and 800 (broke)" in sure.sentence


def test_a_knee_needs_a_rise_that_matters_for_the_slo() -> None:
    # The run: p95 from 7 to 33 ms under a 1,000 ms objective is noise, not a knee.
    assert knee([step(400), step(800, p95_ms=33.0), step(1600, p95_ms=120.0)], SLO) is None
    rose = knee([step(400), step(800, p95_ms=33.0), step(1600, p95_ms=300.0)], SLO)
    assert rose is not None
    assert rose.devices == 1600
    lagging = knee([step(400), step(800, lag_p99_ms=80.0)], SLO)  # a quarter of the 250 ms lag objective
    assert lagging is not None
    assert lagging.devices == 800


def test_a_knee_where_throughput_stops_following_the_fleet() -> None:
    found = knee([step(400), step(800, throughput_rps=1000.0)], SLO)  # 1.25 requests/s per device, not 2
    assert found is not None
    assert found.devices == 800


def _drive(
    search: CapacitySearch, target: Path, per_user: int, holds_up_to: int, most: int = 20
) -> list[tuple[int, str]]:
    """Play a service that meets the SLO up to `holds_up_to` devices: each step as the fleet would judge it."""
    search.start()
    tried: list[tuple[int, str]] = []
    while not search.done and len(tried) < most:
        devices = int(target.read_text().split()[0]) * per_user
        role = search._step.role if search._step else ""
        tried.append((devices, role))
        search.judged.append(Judged(devices, role, devices <= holds_up_to))
        search._next(search.judged[-1])
    return tried


def test_search_steps_up_bisects_and_confirms(tmp_path: Path) -> None:
    """Against a service that holds up to 1,000 devices: geometric steps, bisections down to a 10% gap, a
    confirmation."""
    target = tmp_path / "target"
    search = CapacitySearch(SearchPlan(start_devices=200), target, "http://127.0.0.1:9/metrics", 10, {})
    tried = _drive(search, target, 10, 1000)
    assert tried == [(200, "search"), (400, "search"), (800, "search"), (1600, "search"), (1200, "refine"),
                     (1000, "refine"), (1100, "refine"), (1000, "confirm")]  # fmt: skip
    assert target.read_text().strip() == "stop"
    assert capacity_of((one.devices, one.passed) for one in search.judged) == 1000


def test_search_settles_longer_after_a_broken_step(tmp_path: Path) -> None:
    target = tmp_path / "target"
    search = CapacitySearch(SearchPlan(start_devices=200, settle_s=4.0), target, "http://127.0.0.1:9/metrics", 10, {})
    search.start()
    assert target.read_text().split() == ["20", "10", "4", "1"]  # users, spawn rate, settle, step
    search.judged.append(Judged(200, "search", False))
    search._next(search.judged[-1])
    assert target.read_text().split()[::2] == ["10", "8"]  # down to 100 devices, twice the settle
    search.judged.append(Judged(100, "search", True))
    search._next(search.judged[-1])
    assert target.read_text().split()[3] == "3"  # each step its own window, even at a fleet size seen before


def test_search_goes_down_when_the_first_fleet_breaks(tmp_path: Path) -> None:
    target = tmp_path / "target"
    search = CapacitySearch(SearchPlan(start_devices=200), target, "http://127.0.0.1:9/metrics", 1, {})
    tried = [devices for devices, _ in _drive(search, target, 1, 60)]
    assert tried[:3] == [200, 100, 50]
    found = capacity_of((one.devices, one.passed) for one in search.judged)
    assert 55 <= (found or 0) <= 60  # within the 10% resolution of the true 60


def test_a_broken_confirmation_with_nothing_below_goes_further_down(tmp_path: Path) -> None:
    target = tmp_path / "target"
    search = CapacitySearch(SearchPlan(start_devices=40), target, "http://127.0.0.1:9/metrics", 1, {})
    search.start()
    for devices, role, passed in [(40, "search", True), (80, "search", False), (60, "refine", False),
                                  (50, "refine", False), (46, "refine", False), (40, "confirm", False)]:  # fmt: skip
        search.judged.append(Judged(devices, role, passed))
        search._next(search.judged[-1])
    assert target.read_text().split()[0] == "20"  # the run seen in the slow test, which used to end with no capacity
    assert not search.done


def test_a_broken_confirmation_bisects_again_below_it(tmp_path: Path) -> None:
    target = tmp_path / "target"
    search = CapacitySearch(SearchPlan(start_devices=40), target, "http://127.0.0.1:9/metrics", 2, {})
    search.start()
    for devices, role, passed in [(40, "search", True), (80, "search", True), (160, "search", False),
                                  (120, "refine", True), (140, "refine", False), (130, "refine", False),
                                  (120, "confirm", False)]:  # fmt: skip
        search.judged.append(Judged(devices, role, passed))
        search._next(search.judged[-1])
    # Not straight down to 80 (a slow-test run did that): the gap between 80 and 120 is bisected first.
    assert (int(target.read_text().split()[0]) * 2, search._step.role if search._step else "") == (100, "refine")


def test_after_a_broken_confirmation_the_gap_is_closed_again(tmp_path: Path) -> None:
    """A search seen on a planted service: the first 160 held by a hair, the confirmation at 160 broke; 120 held
    below it, and 140 is tried before a confirmation rather than leaving a 33% gap."""
    target = tmp_path / "target"
    search = CapacitySearch(SearchPlan(start_devices=40), target, "http://127.0.0.1:9/metrics", 1, {})
    search.start()
    for devices, role, passed in [(40, "search", True), (80, "search", True), (160, "search", True),
                                  (320, "search", False), (240, "refine", False), (200, "refine", False),
                                  (180, "refine", False), (160, "confirm", False), (120, "refine", True)]:  # fmt: skip
        search.judged.append(Judged(devices, role, passed))
        search._next(search.judged[-1])
    assert (int(target.read_text().split()[0]), search._step.role if search._step else "") == (140, "refine")


def test_round_devices_reads_well() -> None:
    assert [round_devices(n, 10) for n in (1187, 250, 75, 3)] == [1200, 250, 80, 10]
    assert round_devices(1187, 1) == 1200


def test_axis_labels() -> None:
    assert [number(v) for v in (0, 2.5, 1000, 12345.0, 0.05, 1_500_000)] == ["0", "2.5", "1,000", "12,345",
                                                                            "0.05", "1,500,000"]  # fmt: skip
    assert [elapsed(s) for s in (0, 95, 3725)] == ["00:00", "01:35", "1:02:05"]
    assert [nines(p) for p in (90, 99, 100)] == [pytest.approx(1), pytest.approx(2), 5.0]
    assert spans_decades([5, 3000])
    assert not spans_decades([400, 2000])


def _ticks(chart: Chart, axis: str) -> list[str]:
    page = svg(chart)
    return [part.split(">", 1)[1].split("<", 1)[0] for part in page.split(f'class="tick {axis}"')[1:]]


def test_ticks_are_round_and_time_reads_as_minutes() -> None:
    chart = Chart("t", "t", "elapsed", "elapsed", "requests/s",
                  [Series("a", [0.0, 61.0, 187.0], [200.0, 201.0, 200.5])])  # fmt: skip
    assert _ticks(chart, "x") == ["00:00", "00:30", "01:00", "01:30", "02:00", "02:30", "03:00", "03:30"]
    # The axis read "200 200 200 201 201": round ticks from zero instead.
    assert _ticks(chart, "y") == ["0", "50", "100", "150", "200", "250"]
    logarithmic = Chart("l", "l", "number", "devices", "ms", [Series("p99", [1, 2, 3], [3.0, 40.0, 5200.0])],
                        y_log=True)  # fmt: skip
    assert _ticks(logarithmic, "y") == ["1", "10", "100", "1,000", "10,000"]  # four decades: powers of ten


def test_marks_and_gaps_are_drawn() -> None:
    chart = Chart("m", "m", "number", "devices", "ms",
                  [Series("p95", [100.0, 200.0, 300.0, 400.0], [5.0, float("nan"), 7.0, 9.0])],
                  marks=[Mark(200.0, "knee 200"), Mark(300.0, "capacity 300")])  # fmt: skip
    page = svg(chart)
    assert page.count('class="mark"') == 2
    assert "knee 200" in page
    assert "capacity 300" in page
    assert page.count("<polyline") == 1  # the line breaks at the gap: one point alone, then a line of two


def _imports(module: str) -> set[str]:
    tree = ast.parse((Path(__file__).resolve().parents[1] / "app" / "experiment" / f"{module}.py").read_text())
    return {node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)} | {
        alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names
    }


@pytest.mark.parametrize("module", ["report_html", "plots", "compare_html"])
def test_renderers_draw_what_they_are_given(module: str) -> None:
    """Data flows one way: records -> figures -> verdict -> summary -> rendering; renderers read and judge nothing."""
    deciding = {f"app.experiment.{name}" for name in ("analysis", "diagnosis", "records", "summary", "search")}
    assert not _imports(module) & deciding


def test_the_live_line_says_where_the_search_stands(tmp_path: Path) -> None:
    target = tmp_path / "target"
    search = CapacitySearch(SearchPlan(start_devices=200), target, "http://127.0.0.1:9/metrics", 10, {})
    search.start()
    assert search.status().startswith("search step 1 (search 200 devices, warming up) 0:0")
    search.judged.append(Judged(200, "search", True))
    search._next(search.judged[-1])
    assert search.status().startswith("search step 2 (search 400 devices, warming up)")
    search._finish()
    assert search.status() == "search done"
