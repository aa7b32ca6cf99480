"""What the master (or a lone local process) does around a run: the Prometheus endpoint, the run record, the SLO
verdict printed at the end and reflected in the exit code (0 pass, 1 fail), as k6 thresholds are.

Workers do none of it: they only generate load and report stats to the master.
"""

from __future__ import annotations

import logging
import sys
from datetime import UTC, datetime
from typing import Any

from _options import add_fleet_options
from _prometheus import serve_metrics
from _run_records import RunRecorder, operator_token
from _shapes import FleetShape
from _slo import CheckResult, SLOSyntaxError, evaluate, parse_slo, verdict_text
from _stats_view import entries, summarize
from locust import events
from locust.env import Environment
from locust.runners import MasterRunner, WorkerRunner

log = logging.getLogger(__name__)
CONFIG_OPTIONS = (
    "shape", "num_users", "spawn_rate", "run_time", "step_users", "step_seconds", "max_users", "failure_checks",
    "slo", "devices_per_user", "connections_per_user", "device_interval", "device_jitter", "host",
    "expect_workers", "processes",
)  # fmt: skip


class FleetRun:
    """State of the current test: its recorder and its verdict."""

    def __init__(self, environment: Environment) -> None:
        self.environment = environment
        self.recorder: RunRecorder | None = None
        self.results: list[CheckResult] | None = None
        self.passed: bool | None = None
        self.metrics_server: Any = None
        self.peak_users = 0
        # Fixed now, at start: the web UI's host field changes environment.host and the parsed options later, and
        # whoever reaches the UI must not be able to send the operator token to a host of their choosing.
        options = environment.parsed_options
        self.record_url = str(getattr(options, "run_record_url", "") or getattr(options, "host", "") or "")

    @property
    def options(self) -> Any:
        return self.environment.parsed_options

    @property
    def shape(self) -> FleetShape | None:
        shape = self.environment.shape_class
        return shape if isinstance(shape, FleetShape) else None

    def stats_snapshot(self) -> dict[str, Any]:
        runner = self.environment.runner
        assert runner is not None
        users = runner.user_count
        self.peak_users = max(self.peak_users, users)
        workers = len(runner.clients) if isinstance(runner, MasterRunner) else 0
        per_user = max(1, int(self.options.devices_per_user or 1))
        return {"users": users, "devices": users * per_user, "workers": workers, **summarize(runner.stats)}

    def start(self) -> None:
        if self.options.no_run_record:
            return
        if not self.record_url:
            log.warning("no --run-record-url or --host at start: the run is not recorded in the service")
            return
        if self.environment.host and self.environment.host.rstrip("/") != self.record_url.rstrip("/"):
            log.warning(
                "the load goes to %s; the run record to %s (fixed at start)", self.environment.host, self.record_url
            )
        token = operator_token()
        if token is None:
            log.warning("no operator token (FLEETBED_OPERATOR_TOKEN): the run is not recorded in the service")
            return
        name = self.options.run_name or f"{self.options.shape} {datetime.now(UTC):%Y-%m-%d %H:%M:%S}Z"
        config = {key: getattr(self.options, key, None) for key in CONFIG_OPTIONS}
        self.recorder = RunRecorder(self.record_url, token, self.options.snapshot_interval)
        self.recorder.start(name, config, self.stats_snapshot)

    def judge(self) -> None:
        runner = self.environment.runner
        assert runner is not None
        objectives = parse_slo(self.options.slo or "")
        self.results = evaluate(objectives, entries(runner.stats))
        shape = self.shape
        if shape is not None and self.options.shape == "until-failure":
            # The verdict of a ramp until failure is its capacity: some step must have met the SLO.
            self.passed = shape.capacity_users is not None
        else:
            self.passed = all(result.passed for result in self.results)

    def summary(self) -> dict[str, Any]:
        shape = self.shape
        per_user = max(1, int(self.options.devices_per_user or 1))
        capacity = None if shape is None else shape.capacity_users
        return {
            "passed": self.passed,
            "slo": [
                {"objective": r.objective.label, "value": r.value, "limit": r.objective.limit, "passed": r.passed}
                for r in self.results or []
            ],
            "capacity_users": capacity,
            "capacity_devices": None if capacity is None else capacity * per_user,
            "stopped_by_slo": bool(shape and shape.stopped_by_slo),
            "peak_users": self.peak_users,
            "peak_devices": self.peak_users * per_user,
            "steps": [{"users": check.users, "passed": check.passed} for check in (shape.checks if shape else [])],
            **self.stats_snapshot(),
        }

    def stop(self) -> None:
        self.judge()
        if self.recorder is not None:
            status = "passed" if self.passed else "failed"
            self.recorder.finish(status, self.summary(), self.stats_snapshot())
            self.recorder = None

    def report(self) -> None:
        if self.results is None:
            self.judge()
        text = verdict_text(self.results or [])
        shape = self.shape
        if shape is not None and self.options.shape == "until-failure":
            per_user = max(1, int(self.options.devices_per_user or 1))
            capacity = shape.capacity_users
            found = (
                "none: no step met the SLO" if capacity is None else f"{capacity} users ({capacity * per_user} devices)"
            )
            steps = ", ".join(f"{c.users}:{'ok' if c.passed else 'FAIL'}" for c in shape.checks)
            text += f"\nRamp until failure: capacity {found}; steps {steps or 'none checked'}"
        sys.stderr.write(text + "\n")
        if self.options.slo or self.options.shape == "until-failure":
            self.environment.process_exit_code = 0 if self.passed else 1


_RUNS: dict[int, FleetRun] = {}


def _fleet_run(environment: Environment) -> FleetRun:
    return _RUNS.setdefault(id(environment), FleetRun(environment))


def attach() -> None:
    """Register the listeners (once per process, from the locustfile)."""

    @events.init_command_line_parser.add_listener
    def _add_options(parser: Any) -> None:
        add_fleet_options(parser)

    @events.init.add_listener
    def _on_init(environment: Environment, **_: Any) -> None:
        if environment.parsed_options is None:
            return
        try:
            parse_slo(environment.parsed_options.slo or "")
        except SLOSyntaxError as exc:
            sys.stderr.write(f"{exc}\n")
            sys.exit(2)
        if isinstance(environment.runner, WorkerRunner):
            return
        fleet_run = _fleet_run(environment)
        port = environment.parsed_options.prometheus_port
        if port:
            fleet_run.metrics_server = serve_metrics(environment, environment.parsed_options.prometheus_host, port)

    @events.test_start.add_listener
    def _on_test_start(environment: Environment, **_: Any) -> None:
        if not isinstance(environment.runner, WorkerRunner):
            fleet_run = _fleet_run(environment)
            fleet_run.peak_users = 0
            fleet_run.start()

    @events.spawning_complete.add_listener
    def _on_spawned(user_count: int, **_: Any) -> None:
        for fleet_run in _RUNS.values():
            fleet_run.peak_users = max(fleet_run.peak_users, user_count)

    @events.test_stop.add_listener
    def _on_test_stop(environment: Environment, **_: Any) -> None:
        if not isinstance(environment.runner, WorkerRunner):
            _fleet_run(environment).stop()

    @events.quitting.add_listener
    def _on_quitting(environment: Environment, **_: Any) -> None:
        if isinstance(environment.runner, WorkerRunner):
            return
        fleet_run = _fleet_run(environment)
        fleet_run.report()
        if fleet_run.metrics_server is not None:
            server, _thread = fleet_run.metrics_server
            server.shutdown()
            server.server_close()
