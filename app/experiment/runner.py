"""`fleetbed experiment`: the whole run on one machine, from an empty data directory to `report.html`.

Order: database (embedded or FLEETBED_DATABASE_URL), migrations, the service (`--workers`), Prometheus when the
binary exists, the resource sampler, then Locust headless with the fleet's locustfile and shape: a constant fleet,
a step ramp, or (the default) the capacity search of `search.py`, which steers Locust's `follow` shape step by
step. When Locust ends (or on Ctrl-C) the sampler stops, Prometheus's range is exported, and the report is
written; everything started is stopped on the way out, whatever happened.
"""

from __future__ import annotations

import json
import math
import signal
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from app.experiment.hosts import HOSTS_FILE, write_roles
from app.experiment.progress import ProgressLine
from app.experiment.report import write_report
from app.experiment.sampler import LocalHostProbe, ResourceSampler, database_is_local, local_host_roles
from app.experiment.search import CapacitySearch, SearchPlan
from app.settings import Settings
from app.stack.database import database_url, report_migrations
from app.stack.processes import child, fleetbed_args, free_port, stop, wait_until_ready
from app.stack.prometheus_export import DEFAULT_QUERIES, ExportError, export_series, write_tidy
from app.stack.prometheus_server import (
    LocalPrometheus,
    PrometheusError,
    ScrapeTargets,
    prometheus_binary,
    write_local_config,
)
from app.stack.resources import locustfile

LOCUSTFILE = locustfile()
LOCUST_HTML = "locust_report.html"  # Locust's own report of the run, next to ours
EXPORT_STEP_MS = 1000
LOCUST_STOP_TIMEOUT_S = 30.0
INTERRUPTED = 130
SEARCH_TARGET_FILE = "fleet-target.txt"
SEARCH_SAFETY_S = 900.0  # Locust's own run-time limit under the search, should the search never finish


@dataclass(frozen=True)
class ExperimentPlan:
    out: Path
    devices: int  # the fleet (constant), or the cap of a ramp (0: no cap)
    duration_s: float | None  # None: until the SLO breaks
    until_failure: bool
    step_devices: int | None  # None: constant fleet
    step_seconds: float
    slo: str
    workers: int
    devices_per_user: int
    interval_s: float
    connections_per_user: int = 0
    prometheus: bool = True
    search: SearchPlan | None = None  # the capacity search (then devices, duration and steps are unused)
    # An existing deployment instead of a local service and database (`target_run`): its URL, its Prometheus, and
    # the generator: local processes, or a master that waits for remote workers.
    target: str | None = None
    prometheus_url: str | None = None
    processes: int = 1
    master: bool = False
    expect_workers: int = 0
    master_bind: str = "0.0.0.0"  # noqa: S104 (remote workers connect from other hosts)

    def users(self, devices: int) -> int:
        return max(1, math.ceil(devices / self.devices_per_user))


def locust_args(plan: ExperimentPlan, service_url: str, metrics_port: int) -> list[str]:
    args = [
        sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless", "-H", service_url,
        "--csv", str(plan.out.resolve() / "locust"), "--csv-full-history", "--only-summary",
        "--html", str(plan.out.resolve() / LOCUST_HTML),
        "--prometheus-port", str(metrics_port), "--prometheus-host", "127.0.0.1",
        "--run-name", f"experiment {plan.out.name}", "--slo", plan.slo,
        "--device-interval", f"{plan.interval_s:g}", "--devices-per-user", str(plan.devices_per_user),
    ]  # fmt: skip
    if plan.connections_per_user:
        args += ["--connections-per-user", str(plan.connections_per_user)]
    if plan.master:
        args += ["--master", "--master-bind-host", plan.master_bind, "--expect-workers", str(plan.expect_workers)]
    elif plan.processes > 1:
        args += ["--processes", str(plan.processes)]
    if plan.search is not None:
        # Each target the search sets opens one of the fleet's windows, judged on --slo like a ramp until failure.
        target = plan.out.resolve() / SEARCH_TARGET_FILE
        return [*args, "--shape", "follow", "--users-file", str(target), "-t", f"{SEARCH_SAFETY_S:.0f}s"]
    if plan.step_devices or plan.until_failure:
        step_users = plan.users(plan.step_devices or max(1, plan.devices // 5))
        args += ["--shape", "until-failure" if plan.until_failure else "step", "--step-users", str(step_users),
                 "--step-seconds", f"{plan.step_seconds:g}", "-r", str(max(1, step_users // 5))]  # fmt: skip
        if plan.devices:
            args += ["--max-users", str(plan.users(plan.devices))]
    else:
        users = plan.users(plan.devices)
        args += ["--shape", "constant", "-u", str(users), "-r", str(max(1, users // 10))]
    if plan.duration_s is not None:
        args += ["-t", f"{math.ceil(plan.duration_s)}s"]
    return args


def export_prometheus(prometheus_url: str, start: float, end: float, path: Path) -> str | None:
    """The default export set over the run; the error text when it failed."""
    try:
        series = export_series(prometheus_url, DEFAULT_QUERIES, int(start * 1000), int(end * 1000), EXPORT_STEP_MS)
    except ExportError as exc:
        return str(exc)
    with path.open("w", newline="") as out:
        write_tidy(series, out)
    return None


def run_experiment(settings: Settings, plan: ExperimentPlan) -> int:
    if plan.target is not None:
        from app.experiment.target_run import run_against_target

        return run_against_target(settings, plan)
    plan.out.mkdir(parents=True, exist_ok=True)
    record: dict[str, Any] = {**asdict(plan), "out": str(plan.out), "started_at": time.time(), "interrupted": False}
    log = sys.stderr
    with ExitStack() as stack:
        url = stack.enter_context(database_url(settings))
        report_migrations(url)
        service_port = free_port()
        service_url = f"http://127.0.0.1:{service_port}"
        env = {
            "FLEETBED_DATABASE_URL": url,
            "FLEETBED_DATA_DIR": str(settings.data_dir.resolve()),
            "FLEETBED_PORT": str(service_port),
            "FLEETBED_HOST": "127.0.0.1",
            "FLEETBED_WORKERS": str(plan.workers),
            "FLEETBED_OPERATOR_TOKEN": settings.operator_token,
            "FLEETBED_COMMAND_INTERVAL_S": str(max(1, round(plan.interval_s))),
            "FLEETBED_LOGIN_RATE_PER_S": "0",  # the local fleet logs every device in from one address
            "PYTHONUNBUFFERED": "1",
        }
        service_log = plan.out / "service.log"
        service = stack.enter_context(child(fleetbed_args("serve", "--no-migrate"), service_log, env))
        wait_until_ready(f"{service_url}/readyz", service, service_log)
        print(
            f"fleetbed experiment: service on {service_url} ({plan.workers} worker(s)), output in {plan.out}", file=log
        )
        metrics_port = free_port()
        prometheus: LocalPrometheus | None = None
        if plan.prometheus and prometheus_binary() is not None:
            storage = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="fleetbed-prometheus-")))
            targets = ScrapeTargets(service=[f"127.0.0.1:{service_port}"], locust=f"127.0.0.1:{metrics_port}")
            config = write_local_config(plan.out / "prometheus.yml", targets, scrape_interval_s=1)
            try:
                prometheus = stack.enter_context(
                    LocalPrometheus(config, storage, free_port(), log_path=plan.out / "prometheus.log")
                )
                print(f"fleetbed experiment: Prometheus on {prometheus.url}", file=log)
            except PrometheusError as exc:
                print(f"fleetbed experiment: running without Prometheus: {exc}", file=log)
        (plan.out / HOSTS_FILE).unlink(missing_ok=True)
        write_roles(plan.out, *local_host_roles(url))
        probe = LocalHostProbe(database_here=database_is_local(url))
        sampler = ResourceSampler(plan.out / "resources.csv", f"{service_url}/metrics", host_probe=probe).start()
        stack.callback(sampler.stop)
        record["started_at"] = time.time()
        search = start_search(plan, metrics_port, record)
        locust_log = plan.out / "locust.log"
        locust = stack.enter_context(
            child(locust_args(plan, service_url, metrics_port), locust_log, {**env, "PYTHONUNBUFFERED": "1"}, plan.out)
        )
        sampler.generator_pid = locust.pid
        progress = ProgressLine(f"http://127.0.0.1:{metrics_port}/metrics", log, plan.duration_s)
        locust_code = wait_for_locust(locust, progress, record, search)
        record["ended_at"] = time.time()
        record["locust_exit_code"] = locust_code
        sampler.stop()
        if prometheus is not None:
            failure = export_prometheus(
                prometheus.url, record["started_at"], record["ended_at"], plan.out / "prometheus.csv"
            )
            record["prometheus_export"] = failure or "prometheus.csv"
    (plan.out / "experiment.json").write_text(json.dumps(record, indent=2) + "\n")
    return finish(plan, record, locust_log)


def start_search(plan: ExperimentPlan, metrics_port: int, record: dict[str, Any]) -> CapacitySearch | None:
    """The capacity search of a plan that asks for one, with its first target written (before Locust starts)."""
    if plan.search is None:
        return None
    search = CapacitySearch(
        plan.search,
        plan.out / SEARCH_TARGET_FILE,
        f"http://127.0.0.1:{metrics_port}/metrics",
        plan.devices_per_user,
        record,
    )
    search.start()
    return search


def wait_for_locust(
    locust: subprocess.Popen[bytes],
    progress: ProgressLine,
    record: dict[str, Any],
    search: CapacitySearch | None = None,
) -> int:
    try:
        while locust.poll() is None:
            progress.update(None if search is None else search.status())
            if search is not None:
                search.poll()
            time.sleep(1.0)
    except KeyboardInterrupt:
        record["interrupted"] = True
        progress.finish()
        print(
            "fleetbed experiment: interrupted, stopping the fleet and writing the report of what ran", file=sys.stderr
        )
        locust.send_signal(signal.SIGTERM)
        try:
            locust.wait(LOCUST_STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            stop(locust, 0)
    progress.finish()
    return int(locust.returncode if locust.returncode is not None else -1)


def finish(plan: ExperimentPlan, record: dict[str, Any], locust_log: Path) -> int:
    from app.experiment.records import RunDirectoryError

    try:
        summary = write_report(plan.out)
    except RunDirectoryError as exc:
        tail = locust_log.read_text(errors="replace")[-3000:]
        print(f"fleetbed experiment: no report: {exc}\n--- locust.log (tail) ---\n{tail}", file=sys.stderr)
        return INTERRUPTED if record["interrupted"] else 1
    print(f"\n{summary['bottleneck']['sentence']}", file=sys.stderr)
    capacity, knee, broken = summary["capacity_devices"], summary["knee_devices"], summary["broken_devices"]
    # A search breaks the SLO on purpose: what it says is where; other runs say whether it held.
    slo = (
        ("nothing broke the SLO" if broken is None else f"the SLO broke at {broken:,} devices")
        if plan.search is not None
        else f"SLO {'held' if summary['slo_held'] else 'broken'}"
    )
    print(
        f"capacity: {'none found' if capacity is None else f'{capacity:,} devices'}; "
        f"knee: {'not reached' if knee is None else f'{knee:,} devices'}; {slo}; "
        f"verdict {'PASS' if summary['passed'] else 'FAIL'}; report: {plan.out / 'report.html'}",
        file=sys.stderr,
    )
    if plan.search is not None:
        print(f"how sure: {summary['confidence']['sentence']}", file=sys.stderr)
    if record["interrupted"]:
        return INTERRUPTED
    code = int(record["locust_exit_code"])
    if code not in (0, 1):
        tail = locust_log.read_text(errors="replace")[-3000:]
        print(f"fleetbed experiment: Locust exited with {code}\n--- locust.log (tail) ---\n{tail}", file=sys.stderr)
    return 0 if code == 0 else 1
