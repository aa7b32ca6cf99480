"""`fleetbed export` against a real Prometheus that scraped the real service: columns, row counts, splitting."""

from __future__ import annotations

import csv
import io
import itertools
import json
import time
from pathlib import Path

import pytest

from app.cli import main
from app.cli.export import parse_duration_s, parse_time
from app.stack.prometheus_export import DEFAULT_QUERIES, PROMETHEUS_POINT_LIMIT, export_series, split_range
from app.stack.prometheus_server import monitoring_dir
from tests.support.monitored_stack import MonitoredStack


@pytest.fixture(autouse=True)
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLEETBED_DATA_DIR", str(tmp_path / "data"))


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def test_split_range_stays_under_the_limit_without_gaps_or_overlaps() -> None:
    assert split_range(0, 10_000, 1000) == [(0, 10_000)]
    chunks = split_range(1_000, 1_000 + 25_000 * 7, 7, max_points=10_000)
    assert chunks == [
        (1_000, 1_000 + 9_999 * 7),
        (1_000 + 10_000 * 7, 1_000 + 19_999 * 7),
        (1_000 + 20_000 * 7, 176_000),
    ]
    for start, end in chunks:
        assert (end - start) / 7 < PROMETHEUS_POINT_LIMIT
    for (_, end), (next_start, _) in itertools.pairwise(chunks):
        assert next_start == end + 7


def test_times_and_durations() -> None:
    assert parse_duration_s("500ms") == 0.5
    assert parse_duration_s("2m") == 120
    assert parse_duration_s("15") == 15
    assert parse_time("2026-11-23T18:00:00Z") == 1_795_456_800
    assert parse_time("2026-11-23T19:00:00+01:00") == 1_795_456_800
    assert parse_time("now-1h", now=10_000) == 6_400
    assert parse_time("1795456800.5") == 1_795_456_800.5


def test_default_queries_are_dashboard_panels() -> None:
    panels = {
        target["expr"]
        for path in (monitoring_dir() / "grafana" / "dashboards").glob("*.json")
        for panel in json.loads(path.read_text())["panels"]
        for target in panel["targets"]
    }
    assert set(DEFAULT_QUERIES.values()) <= panels


def test_default_export_is_tidy_with_labels_as_columns(
    monitored_stack: MonitoredStack, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    start = int(monitored_stack.scraped_since) + 2
    assert start + 10 < time.time()
    out = tmp_path / "run.csv"
    code = main(["export", "--prometheus", monitored_stack.prometheus_url, "--start", str(start),
                 "--end", str(start + 10), "--step", "1s", "-o", str(out)])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    rows = read_csv(out)
    header = list(rows[0])
    assert header[:4] == ["query", "timestamp", "time", "value"]
    assert {"route", "status", "generation", "instance", "label_query"} <= set(header[4:])
    by_query: dict[str, list[dict[str, str]]] = {}
    for row in rows:
        by_query.setdefault(row["query"], []).append(row)
    assert len(by_query["measurement_rows"]) == 11, "one row per step of [start, end] for a one-series query"
    assert [row["timestamp"] for row in by_query["measurement_rows"]] == [f"{start + n}.000" for n in range(11)]
    service_side = {name for name, expr in DEFAULT_QUERIES.items() if "locust" not in expr and "generator" not in expr}
    assert service_side - set(by_query) <= {"error_ratio", "latency_p99_seconds"} - set(by_query), (
        f"no rows for {service_side - set(by_query)}"
    )
    assert {row["route"] for row in by_query["request_rate"]} >= {"/login", "/command", "/measurement"}
    assert "fleetbed export: " in capsys.readouterr().err


def test_a_range_over_the_point_limit_is_split(monitored_stack: MonitoredStack, tmp_path: Path) -> None:
    start_ms = round(monitored_stack.scraped_since * 1000) + 1000
    end_ms = start_ms + 12_000  # 12,001 points at 1 ms: over Prometheus's 11,000
    assert end_ms < time.time() * 1000
    requests: list[tuple[int, int]] = []
    queries = {"service_up": 'up{job="fleetbed"}', "rows": "max(fleetbed_measurement_rows)"}
    series = export_series(monitored_stack.prometheus_url, queries, start_ms, end_ms, 1,
                           on_request=lambda done, total: requests.append((done, total)))  # fmt: skip
    assert requests == [(1, 4), (2, 4), (3, 4), (4, 4)]
    assert [one.query for one in series] == ["service_up", "rows"]
    timestamps = [timestamp for timestamp, _ in series[0].points]
    assert len(timestamps) == 12_001
    assert timestamps == sorted(set(timestamps))
    assert series[0].labels["job"] == "fleetbed"

    out = tmp_path / "wide.csv"
    code = main(["export", "--prometheus", monitored_stack.prometheus_url, "--start", f"{start_ms / 1000:.3f}",
                 "--end", f"{end_ms / 1000:.3f}", "--step", "1ms", "--wide", "-o", str(out), "--quiet",
                 "--query", 'service_up=up{job="fleetbed"}',
                 "--query", "rows=max(fleetbed_measurement_rows)"])  # fmt: skip
    assert code == 0
    rows = read_csv(out)
    assert len(rows) == 12_001
    assert list(rows[0])[:2] == ["timestamp", "time"]
    assert list(rows[0])[2:] == [series[0].column, "rows"]
    assert rows[0]["rows"] != ""
    assert series[0].column.startswith('service_up{instance="127.0.0.1:')


def test_clear_errors(monitored_stack: MonitoredStack, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = str(tmp_path / "x.csv")
    assert main(["export", "--prometheus", "http://127.0.0.1:1", "--start", "now-1m", "-o", out]) == 2
    assert "cannot reach Prometheus at http://127.0.0.1:1" in capsys.readouterr().err
    prometheus = monitored_stack.prometheus_url
    assert (
        main(["export", "--prometheus", prometheus, "--start", "now-1m", "-o", out, "--query", "bad=rate(up[1m]"]) == 2
    )
    assert "Prometheus rejected query bad (rate(up[1m])" in capsys.readouterr().err
    assert main(["export", "--prometheus", monitored_stack.service_url, "--start", "now-1m", "-o", out]) == 2
    assert "is this a Prometheus?" in capsys.readouterr().err
    assert main(["export", "--prometheus", "127.0.0.1:9090", "--start", "now-1m", "-o", out]) == 2
    assert "must be an http(s) URL" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["export", "--start", "yesterday", "-o", out])
    assert "not a time: 'yesterday'" in capsys.readouterr().err


def test_progress_bar_draws_on_a_terminal_only() -> None:
    from app.cli.export import ProgressBar

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    terminal, pipe = Terminal(), io.StringIO()
    for stream in (terminal, pipe):
        bar = ProgressBar(stream, enabled=True)
        for done in range(1, 5):
            bar(done, 4)
    assert terminal.getvalue().endswith(f"\rexporting [{'#' * 30}] 4/4 requests\n")
    assert "[#######" in terminal.getvalue().split("\r")[1]
    assert pipe.getvalue() == ""
