"""What the master (or a lone local process) does around a test: the Prometheus endpoint, the run record, the
windows of the test (`_windows`), and at the end the SLO verdict, printed and reflected in the exit code (0 pass,
1 fail) as k6 thresholds are, and written with the windows' figures next to the CSV files
(`<--csv prefix>_windows.json`, which the report reads and judges with the same evaluator, `app.slo`).

Without `--slo` (and outside a ramp until failure) Locust's own exit code rules. Workers do none of it: they
generate load and report their stats, and the fleet's figures (`_fleet_stats`), to the master.
"""

from __future__ import annotations

import json
import logging
import signal
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import gevent
from _fleet_stats import attach_fleet_stats, fleet_stats
from _live import HistoryWriter, LiveFigures, LiveState
from _options import add_fleet_options
from _prometheus import serve_metrics
from _run_records import RunRecorder, operator_token
from _shapes import FleetShape
from _stats_view import figures, summarize
from _web_ui import attach_fleet_tab
from _windows import WindowTracker
from locust import events
from locust.env import Environment
from locust.runners import MasterRunner, WorkerRunner

from app.slo import DEFAULT_SLO, RunVerdict, SLOSyntaxError, WindowVerdict, evaluate, judge, parse_slo, verdict_text

log = logging.getLogger(__name__)
WINDOWS_SUFFIX = "_windows.json"
OBSERVE_EVERY_S = 1.0
PROVISIONAL_EVERY_S = 5.0  # the windows file is rewritten this often during a test, so a killed run leaves one
CONFIG_OPTIONS = (
    "shape", "num_users", "spawn_rate", "run_time", "step_users", "step_seconds", "max_users", "failure_checks",
    "slo", "devices_per_user", "connections_per_user", "device_interval", "device_jitter", "host",
    "expect_workers", "processes",
)  # fmt: skip


class FleetRun:
    """State of the current test: its windows, its recorder and its verdict."""

    def __init__(self, environment: Environment) -> None:
        self.environment = environment
        self.fleet = fleet_stats(environment)
        self.tracker = WindowTracker(
            lambda: figures(self.runner.stats, self.fleet),
            lambda: self.runner.user_count,
            self.devices_per_user,
            float(getattr(self.options, "device_interval", 0) or 30.0),
        )
        self.recorder: RunRecorder | None = None
        self.verdict: RunVerdict | None = None
        self.concluded = True
        self.metrics_server: Any = None
        self.observer: gevent.Greenlet[Any, Any] | None = None
        self.live = LiveFigures()
        self.state: LiveState | None = None
        self.history: HistoryWriter | None = None
        self.windows_written = 0.0
        self.peak_users = 0
        # Fixed now, at start: the web UI's host field changes environment.host and the parsed options later, and
        # whoever reaches the UI must not be able to send the operator token to a host of their choosing.
        options = environment.parsed_options
        self.record_url = str(getattr(options, "run_record_url", "") or getattr(options, "host", "") or "")
        shape = self.shape
        if shape is not None:
            shape.tracker = self.tracker

    @property
    def runner(self) -> Any:
        assert self.environment.runner is not None
        return self.environment.runner

    @property
    def options(self) -> Any:
        return self.environment.parsed_options

    @property
    def devices_per_user(self) -> int:
        return max(1, int(getattr(self.options, "devices_per_user", 1) or 1))

    @property
    def shape(self) -> FleetShape | None:
        shape = self.environment.shape_class
        return shape if isinstance(shape, FleetShape) else None

    @property
    def until_failure(self) -> bool:
        # A capacity search (`follow`, steered by `fleetbed experiment`) is judged like a ramp until failure.
        return self.shape is not None and self.options.shape in ("until-failure", "follow")

    @property
    def slo(self) -> str:
        """The objectives judged: --slo; a ramp until failure needs some, so it falls back on the default."""
        return str(self.options.slo or (DEFAULT_SLO if self.until_failure else ""))

    def stats_snapshot(self) -> dict[str, Any]:
        users = self.runner.user_count
        self.peak_users = max(self.peak_users, users)
        workers = len(self.runner.clients) if isinstance(self.runner, MasterRunner) else 0
        devices = users * self.devices_per_user
        return {"users": users, "devices": devices, "workers": workers, **summarize(self.runner.stats, self.fleet)}

    def begin(self) -> None:
        """test_start (Locust has just cleared its stats): the test's windows start from here."""
        self.fleet.reset()
        self.tracker.devices_per_user = self.devices_per_user
        self.tracker.interval_s = float(getattr(self.options, "device_interval", 0) or 30.0)
        self.tracker.reset()
        self.live.reset()
        self.verdict = None
        self.state = None
        self.concluded = False
        self.peak_users = 0
        prefix = getattr(self.options, "csv_prefix", None)
        if prefix:
            if self.history is not None:
                self.history.close()
            self.history = HistoryWriter(prefix)
        if self.observer is None:
            self.observer = gevent.spawn(self._observe)
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

    def restart_window(self) -> None:
        """Locust's statistics (and the fleet's) were reset under the open window: it starts again from here."""
        self.tracker.restart()
        self.live.reset()

    def _observe(self) -> None:
        while True:
            gevent.sleep(OBSERVE_EVERY_S)
            if self.concluded:
                continue
            try:
                self.sample()
            except Exception:  # the figures are worth less than the load test: log, keep going
                log.exception("fleet figures: one sample failed")

    def sample(self) -> None:
        """Once a second: cut windows, keep the last seconds' figures, judge the open window so far."""
        # A FleetShape cuts its own windows; without one (the web UI's default shape), the form does.
        self.tracker.observe(None if self.shape is not None else int(self.runner.target_user_count or 0))
        total = figures(self.runner.stats, self.fleet)
        self.live.add(total)
        window = self.tracker.live(total)
        verdict = None
        if window is not None:
            checks = tuple(evaluate(parse_slo(self.slo), window.judged)) if window.is_judged else None
            verdict = WindowVerdict(window, checks)
        users = int(self.runner.user_count)
        self.state = LiveState(
            self.tracker.clock(),
            users,
            users * self.devices_per_user,
            self.live.recent(),
            total,
            self.fleet.backlog_total(),
            window,
            verdict,
        )
        if self.history is not None:
            self.history.write(self.state.history_row())
        if self.state.at - self.windows_written >= PROVISIONAL_EVERY_S:
            self.write_windows(provisional=True)

    def conclude(self) -> None:
        """The test is over: close its last window, judge, record, write the windows' figures."""
        if self.concluded:
            return
        self.concluded = True
        self.tracker.close()
        self.verdict = judge(self.slo, self.tracker.windows)
        if self.recorder is not None:
            status = "passed" if self.verdict.passed(self.until_failure) else "failed"
            self.recorder.finish(status, self.summary(), self.stats_snapshot())
            self.recorder = None
        self.write_windows(provisional=False)
        if self.history is not None:
            self.history.close()
            self.history = None

    def write_windows(self, provisional: bool) -> None:
        """`<--csv prefix>_windows.json`: the windows and their figures (during the test, with the open window
        as it stands, marked provisional), written whole to a new file and renamed over the old one."""
        prefix = getattr(self.options, "csv_prefix", None)
        if not prefix:
            return
        windows = list(self.tracker.windows)
        if provisional and (open_window := self.tracker.live()) is not None:
            windows.append(open_window)
        path = Path(f"{prefix}{WINDOWS_SUFFIX}")
        path.parent.mkdir(parents=True, exist_ok=True)
        document = {
            "slo": self.slo,
            "until_failure": self.until_failure,
            "provisional": provisional,
            "device_interval_s": self.tracker.interval_s,
            "devices_per_user": self.devices_per_user,
            "windows": [window.as_json() for window in windows],
        }
        partial = path.with_name(path.name + ".partial")
        partial.write_text(json.dumps(document) + "\n")
        partial.replace(path)
        self.windows_written = self.tracker.clock()

    def summary(self) -> dict[str, Any]:
        verdict = self.verdict or judge(self.slo, self.tracker.windows)
        return {
            "passed": verdict.passed(self.until_failure),
            "slo": verdict.slo,
            "slo_held": verdict.held,
            "windows": [
                {
                    "devices": one.window.devices,
                    "seconds": round(one.window.end - one.window.start, 3),
                    "judged_seconds": round(one.window.judged_seconds, 3),
                    "passed": one.passed,
                    "checks": [check.as_json() for check in one.checks or ()],
                }
                for one in verdict.windows
            ],
            "capacity_devices": verdict.capacity_devices,
            "stopped_by_slo": bool(self.shape and self.shape.stopped_by_slo),
            "peak_users": self.peak_users,
            "peak_devices": self.peak_users * self.devices_per_user,
            **self.stats_snapshot(),
        }

    def report(self) -> None:
        """quitting: print the verdict; with objectives set, it is the exit code."""
        self.conclude()
        if self.verdict is None:
            return
        sys.stderr.write(verdict_text(self.verdict, self.until_failure) + "\n")
        if self.slo:
            self.environment.process_exit_code = 0 if self.verdict.passed(self.until_failure) else 1


_RUNS: dict[int, FleetRun] = {}


def _term_as_ctrl_c(environment: Environment) -> None:
    """Headless with a shape, Locust installs its SIGTERM handler only once the shape has ended, so a SIGTERM
    meanwhile would kill it without a verdict: while the shape runs, SIGTERM stops it as Ctrl-C does."""
    runner = environment.runner
    if runner is not None and runner.shape_greenlet is not None:
        gevent.get_hub().parent.throw(KeyboardInterrupt)  # the main greenlet, waiting for the shape


def _fleet_run(environment: Environment) -> FleetRun:
    if id(environment) not in _RUNS:
        _RUNS[id(environment)] = FleetRun(environment)
    return _RUNS[id(environment)]


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
        attach_fleet_stats(environment)
        if isinstance(environment.runner, WorkerRunner):
            return
        if environment.parsed_options.headless and environment.shape_class is not None:
            gevent.signal_handler(signal.SIGTERM, _term_as_ctrl_c, environment)
        fleet_run = _fleet_run(environment)
        attach_fleet_tab(environment, lambda: fleet_run.state, lambda: fleet_run.slo)
        port = environment.parsed_options.prometheus_port
        if port:
            host = environment.parsed_options.prometheus_host
            fleet_run.metrics_server = serve_metrics(environment, host, port, lambda: fleet_run.state)

    @events.reset_stats.add_listener
    def _on_reset_stats(**_: Any) -> None:
        # The web UI fires this before it clears the statistics: the open window restarts just after.
        for fleet_run in _RUNS.values():
            gevent.spawn(fleet_run.restart_window)

    @events.test_start.add_listener
    def _on_test_start(environment: Environment, **_: Any) -> None:
        if not isinstance(environment.runner, WorkerRunner):
            _fleet_run(environment).begin()

    @events.spawning_complete.add_listener
    def _on_spawned(user_count: int, **_: Any) -> None:
        for fleet_run in _RUNS.values():
            fleet_run.peak_users = max(fleet_run.peak_users, user_count)

    @events.test_stop.add_listener
    def _on_test_stop(environment: Environment, **_: Any) -> None:
        # Headless, the workers' last reports arrive after test_stop: the verdict waits for `quitting`.
        headless = bool(getattr(environment.parsed_options, "headless", False))
        if not isinstance(environment.runner, WorkerRunner) and not headless:
            _fleet_run(environment).conclude()

    @events.quitting.add_listener
    def _on_quitting(environment: Environment, **_: Any) -> None:
        if isinstance(environment.runner, WorkerRunner):
            return
        fleet_run = _fleet_run(environment)
        fleet_run.report()
        if fleet_run.observer is not None:
            fleet_run.observer.kill(block=False)
        if fleet_run.metrics_server is not None:
            server, _thread = fleet_run.metrics_server
            server.shutdown()
            server.server_close()
