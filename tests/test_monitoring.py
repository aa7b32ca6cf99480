"""The shipped monitoring: promtool accepts it, the dashboards are the builder's output, and every dashboard and
rule expression returns series from a real Prometheus scraping the real service under load."""

from __future__ import annotations

import json
import re
import runpy
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from app.stack.prometheus_server import ScrapeTargets, local_config, monitoring_dir, rule_files
from tests.support.monitored_stack import LOCUSTFILE, MonitoredStack, prometheus_query
from tests.support.requirements import missing

MONITORING = monitoring_dir()
DASHBOARDS = MONITORING / "grafana" / "dashboards"
DASHBOARD_NAMES = ("fleet", "runtime", "database", "generator")
GENERATOR_METRIC = re.compile(r"\b(locust[_:]|fleetbed_generator[_:])")
# Series that exist only in a distributed Locust run (a master with workers); the test fleet runs alone.
DISTRIBUTED_ONLY = re.compile(r"\blocust_workers\b")
ALERT_CONDITION = re.compile(r"^(?P<signal>.+?)\s*(==|!=|>=|<=|>|<)\s*[-+]?[0-9.eE]+$", re.DOTALL)


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("promtool")
    if binary is None:
        missing("promtool is not installed (Debian: apt-get install prometheus)")
    return subprocess.run([binary, *args], capture_output=True, text=True, check=False, timeout=60)


def dashboard_expressions(dashboard: dict[str, Any]) -> list[tuple[str, str]]:
    """(panel title, expression) of every query target."""
    return [(panel["title"], target["expr"]) for panel in dashboard["panels"] for target in panel["targets"]]


def loaded_rule_expressions(prometheus_url: str) -> list[tuple[str, str]]:
    """(rule name, expression) of every rule Prometheus loaded; an alert's expression without its threshold."""
    import urllib.request

    with urllib.request.urlopen(f"{prometheus_url}/api/v1/rules", timeout=10) as response:
        groups = json.load(response)["data"]["groups"]
    expressions = []
    for group in groups:
        for rule in group["rules"]:
            assert rule["health"] != "err", f"{rule['name']}: {rule.get('lastError')}"
            query = rule["query"]
            if rule["type"] == "alerting":
                condition = ALERT_CONDITION.match(query.strip())
                assert condition, f"alert {rule['name']} is not '<signal> <comparison> <number>': {query}"
                query = condition["signal"]
            expressions.append((rule["name"], query))
    return expressions


def expressions_without_series(
    stack: MonitoredStack, expressions: list[tuple[str, str]]
) -> tuple[list[str], list[str]]:
    """(expressions that returned no series, generator expressions not checked because Locust was not scraped)."""
    empty, unchecked = [], []
    for where, expr in expressions:
        if DISTRIBUTED_ONLY.search(expr):
            continue
        if GENERATOR_METRIC.search(expr) and not stack.locust_up:
            unchecked.append(f"{where}: {expr}")
            continue
        if not prometheus_query(stack.prometheus_url, expr, at=stack.loaded_at):
            empty.append(f"{where}: {expr}")
    return empty, unchecked


def load_dashboard(name: str) -> dict[str, Any]:
    dashboard: dict[str, Any] = json.loads((DASHBOARDS / f"{name}.json").read_text())
    return dashboard


def test_promtool_accepts_the_deployment_config_and_rules() -> None:
    config = promtool("check", "config", str(MONITORING / "prometheus" / "prometheus.yml"))
    assert config.returncode == 0, config.stdout + config.stderr
    rules = promtool("check", "rules", *map(str, rule_files()))
    assert rules.returncode == 0, rules.stdout + rules.stderr
    assert [path.name for path in rule_files()] == ["alerts.yml", "recording.yml"]


def test_alerts_fire_on_their_conditions_and_only_then() -> None:
    result = promtool("test", "rules", str(MONITORING / "prometheus" / "tests" / "alerts_test.yml"))
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_accepts_the_local_config(tmp_path: Path) -> None:
    path = tmp_path / "prometheus.yml"
    path.write_text(local_config(ScrapeTargets(["127.0.0.1:8080", "127.0.0.1:8081"], "127.0.0.1:9646")))
    result = promtool("check", "config", str(path))
    assert result.returncode == 0, result.stdout + result.stderr


def test_deployment_config_scrapes_the_compose_services() -> None:
    text = (MONITORING / "prometheus" / "prometheus.yml").read_text()
    for target in ("app:8080", "locust-master:9646", "node-exporter:9100", "postgres-exporter:9187"):
        assert f'"{target}"' in text


def test_dashboards_are_the_builders_output_and_grafana_loads_them() -> None:
    builder = runpy.run_path(str(MONITORING / "grafana" / "build_dashboards.py"))
    assert sorted(builder["DASHBOARDS"]) == sorted(DASHBOARD_NAMES)
    for name in DASHBOARD_NAMES:
        assert (DASHBOARDS / f"{name}.json").read_text() == builder["render"](name), (
            f"{name}.json is stale: run python monitoring/grafana/build_dashboards.py"
        )
    datasource = (MONITORING / "grafana" / "provisioning" / "datasources" / "prometheus.yml").read_text()
    assert "url: http://prometheus:9090" in datasource
    assert "uid: prometheus" in datasource
    provider = (MONITORING / "grafana" / "provisioning" / "dashboards" / "fleetbed.yml").read_text()
    assert "path: /var/lib/grafana/dashboards" in provider
    for name in DASHBOARD_NAMES:
        for panel in load_dashboard(name)["panels"]:
            assert panel["datasource"] == {"type": "prometheus", "uid": "prometheus"}


def test_the_load_generator_is_scraped(monitored_stack: MonitoredStack) -> None:
    assert LOCUSTFILE.exists(), "the fleet's locustfile is part of the project"
    assert monitored_stack.locust_up, (monitored_stack.workdir / "locust.log").read_text(errors="replace")[-3000:]


def test_every_dashboard_and_rule_expression_returns_series(monitored_stack: MonitoredStack) -> None:
    expressions = [(f"{name}/{title}", expr) for name in DASHBOARD_NAMES for title, expr in
                   dashboard_expressions(load_dashboard(name))]  # fmt: skip
    rules = loaded_rule_expressions(monitored_stack.prometheus_url)
    assert len(rules) >= 30
    empty, unchecked = expressions_without_series(monitored_stack, expressions + rules)
    assert not empty, "expressions without series:\n" + "\n".join(empty)
    if LOCUSTFILE.exists():
        assert not unchecked, "the Locust master was not scraped:\n" + "\n".join(unchecked)


def test_a_panel_on_a_missing_metric_fails(monitored_stack: MonitoredStack) -> None:
    dashboard = load_dashboard("fleet")
    dashboard["panels"][0]["targets"].append({"refId": "Z", "expr": "sum(rate(fleetbed_no_such_metric_total[1m]))"})
    dashboard["panels"][1]["targets"][0]["expr"] = "sum by (route) (fleetbed:http_requests:rate5m)"  # a typo
    empty, _ = expressions_without_series(monitored_stack, dashboard_expressions(dashboard))
    assert empty == [
        "Devices: sum(rate(fleetbed_no_such_metric_total[1m]))",
        "Request rate by route: sum by (route) (fleetbed:http_requests:rate5m)",
    ]


def test_local_prometheus_reports_a_bad_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from app.stack.prometheus_server import LocalPrometheus, PrometheusError, prometheus_binary
    from tests.support.processes import free_port

    if prometheus_binary() is None:
        missing("prometheus is not installed (Debian: apt-get install prometheus)")
    config = tmp_path / "prometheus.yml"
    config.write_text("scrape_configs:\n  - job_name: [not, a, name]\n")
    with pytest.raises(PrometheusError, match="prometheus exited with"):
        LocalPrometheus(config, tmp_path / "tsdb", free_port()).start()
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(PrometheusError, match="apt-get install prometheus"):
        LocalPrometheus(config, tmp_path / "tsdb", free_port()).start()
