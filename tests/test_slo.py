"""The one SLO (app/slo.py): its grammar, the figures and the evaluator, the run verdict and capacity, the
alert thresholds taken from the default SLO, and the live line that shows the same figures. (That the fleet may
import app/slo.py, and that it imports only the standard library, is a direction rule in test_static_rules.py.)"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from app.experiment.progress import line, parse_generator
from app.slo import (
    DEFAULT_SLO,
    Figures,
    RequestFigures,
    SLOSyntaxError,
    SlotFigures,
    Window,
    evaluate,
    judge,
    objective_limit,
    parse_slo,
    percentile,
    round_ms,
    verdict_text,
    warmup_end,
    whole,
)

REPO = Path(__file__).resolve().parents[1]
ALERTS = REPO / "monitoring" / "prometheus" / "rules" / "alerts.yml"


def figures(command_times: dict[int, int], failures: int = 0, lag: dict[int, int] | None = None) -> Figures:
    requests = (RequestFigures("GET", "/command", sum(command_times.values()), failures, command_times),)
    lag = lag or {5: 10}
    return Figures(requests, SlotFigures(sum(lag.values()), 0, lag))


def window(devices: int, judged: Figures | None, start: float = 0.0) -> Window:
    judged_from = None if judged is None else start + 10.0
    return Window(devices, devices, start, start + 30.0, judged_from, figures({1: 1}), judged or Figures())


def test_grammar() -> None:
    objectives = parse_slo("p95=50, p99[/measurement (backlog)]=10 failures=0.05,lag_p99=250 given_up=0")
    assert [o.label for o in objectives] == [
        "p95", "p99[/measurement (backlog)]", "failures", "lag_p99", "given_up"
    ]  # fmt: skip
    assert [o.limit for o in objectives] == [50, 10, 0.05, 250, 0]
    assert parse_slo("") == []
    assert objective_limit(DEFAULT_SLO, "p95") == 1000
    for bad in ("p95<50", "p95=fast", "lag_p99[/command]=5", "given_up[/login]=0", "p95=-1", "p95=inf", "latency=5"):
        with pytest.raises(SLOSyntaxError, match="--slo item"):
            parse_slo(bad)


def test_figures_and_checks() -> None:
    requests = (
        RequestFigures("GET", "/command", 100, 10, {5: 90, 80: 10}),
        RequestFigures("POST", "/measurement (backlog)", 0, 0, {}),
    )
    slots = SlotFigures(due=100, given_up=2, lag={0: 97, 300: 1, 1500: 2})
    checks = evaluate(parse_slo("p95=50, p99[/measurement (backlog)]=10 failures=0.05 lag_p99=250 given_up=0.01"),
                      Figures(requests, slots))  # fmt: skip
    assert [(c.objective.label, c.value, c.passed) for c in checks] == [
        ("p95", 80.0, False),
        ("p99[/measurement (backlog)]", None, True),  # no requests of that name: nothing to judge
        ("failures", 0.1, False),
        ("lag_p99", 1500.0, False),  # the given-up slots count in the lag, at the lag they were given up at
        ("given_up", 0.02, False),
    ]
    assert percentile({1: 1, 2: 1, 3: 1, 4: 1}, 50) == 2.0
    assert [round_ms(v) for v in (4.4, 99.6, 123.0, 1234.0, 12_345.0)] == [4, 100, 120, 1200, 12_000]


def test_windows_are_differences_of_cumulative_figures_and_round_trip_as_json() -> None:
    earlier = figures({5: 50}, failures=1, lag={1: 50})
    later = Figures(
        (*figures({5: 140, 80: 10}, failures=3).requests, RequestFigures("POST", "/login", 2, 0, {9: 2})),
        SlotFigures(170, 4, {1: 160, 2000: 10}),
    )
    between = later.minus(earlier)
    assert between.request_count() == 102
    assert between.failure_count() == 2
    assert between.latency_ms(95, "/command") == 80.0
    assert between.slots == SlotFigures(120, 4, {1: 110, 2000: 10})
    assert Figures.from_json(between.as_json()) == between
    merged = whole([window(2, between), window(4, between)])
    assert merged.request_count() == 204
    assert merged.slots.due == 240


def test_warmup_covers_spawning_and_one_interval_at_most_half_a_planned_window() -> None:
    assert warmup_end(start=100.0, spawned=103.0, interval_s=2.0) == 105.0
    assert warmup_end(start=100.0, spawned=110.0, interval_s=30.0, planned_end=160.0) == 130.0
    assert warmup_end(start=100.0, spawned=101.0, interval_s=2.0, planned_end=160.0) == 103.0


def test_run_verdict_and_capacity() -> None:
    fast, slow = figures({5: 100}), figures({5: 50, 3000: 50})
    slo = "p95=1000"
    ramp = judge(slo, [window(2, None), window(4, fast), window(6, fast), window(8, slow), window(10, fast)])
    assert [one.passed for one in ramp.windows] == [None, True, True, False, True]
    assert ramp.capacity_devices == 6, "the largest fleet judged before the first broken window"
    assert not ramp.held
    assert ramp.passed(until_failure=True)
    assert not ramp.passed(until_failure=False)
    text = verdict_text(ramp, until_failure=True)
    assert "window 1: 2 devices, 30 s: warm-up only, not judged" in text
    assert "FAIL  p95=3000 > 1000" in text
    assert "capacity: 6 devices" in text
    assert text.endswith("overall: PASS")

    assert judge(slo, [window(4, fast)]).held
    nothing_judged = judge(slo, [window(4, None)])
    assert not nothing_judged.held, "a run that never got past its warm-up proves nothing"
    assert "nothing judged" in verdict_text(nothing_judged)
    assert judge("", [window(4, fast)]).windows[0].checks == ()


def alert_thresholds() -> dict[str, float]:
    rules = yaml.safe_load(ALERTS.read_text())
    thresholds = {}
    for group in rules["groups"]:
        for rule in group["rules"]:
            _, _, number = str(rule["expr"]).rpartition(" ")
            thresholds[rule["alert"]] = float(number)
    return thresholds


def test_alert_thresholds_follow_the_default_slo() -> None:
    thresholds = alert_thresholds()
    failures = objective_limit(DEFAULT_SLO, "failures")
    p95 = objective_limit(DEFAULT_SLO, "p95")
    lag_p99 = objective_limit(DEFAULT_SLO, "lag_p99")
    assert failures is not None
    assert p95 is not None
    assert lag_p99 is not None
    # Multi-window burn rates (Google SRE workbook): 14.4x the budget over 5 m pages, 6x over 1 h files a ticket.
    assert thresholds["FleetbedErrorBudgetFastBurn"] == pytest.approx(14.4 * failures)
    assert thresholds["FleetbedErrorBudgetSlowBurn"] == pytest.approx(6 * failures)
    assert thresholds["FleetbedLatencySLO"] == pytest.approx(p95 / 1000)
    assert thresholds["GeneratorBehindSchedule"] == pytest.approx(lag_p99 / 1000)


def test_the_live_line_shows_the_generators_recent_figures() -> None:
    """The line reads the master's recent gauges: a real p95 (37 ms, not the 50 ms bucket it falls in), the
    schedule lag, the failures and the SLO so far."""
    metrics = "\n".join(
        [
            "fleetbed_generator_devices 1200",
            'locust_requests_total{method="GET",name="/command"} 9000',
            'locust_requests_total{method="POST",name="/measurement"} 9000',
            'locust_failures_total{method="GET",name="/command"} 3',
            'locust_request_duration_seconds_bucket{le="0.05",method="GET",name="/command"} 9000',
            "fleetbed_generator_recent_requests_per_second 812.5",
            'fleetbed_generator_recent_request_seconds{quantile="0.95"} 0.037',
            'fleetbed_generator_recent_schedule_lag_seconds{quantile="0.99"} 0.012',
            "fleetbed_generator_window_slo_met 0",
            "",
        ]
    )
    text = line(parse_generator(metrics), "42 s left")
    assert text == (
        "1,200 devices | 812.5 req/s | p95 37 ms | 3 failures of 18,000 | lag p99 12 ms | SLO BROKEN so far | 42 s left"
    )
    assert line(parse_generator("fleetbed_generator_devices 0\n"), "until failure") == (
        "0 devices | - req/s | p95 - | 0 failures of 0 | lag p99 - | until failure"
    )
