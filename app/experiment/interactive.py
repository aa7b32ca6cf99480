"""`fleetbed up`: the experiment's parts for an interactive session: database, migrations, service, Prometheus
(when installed) with node_exporter and postgres_exporter (when installed; named when not), and the Locust web UI,
until Ctrl-C (or until one of them exits), then all of it stopped. Prometheus keeps everything a later
`fleetbed report --prometheus URL --run latest` needs, this machine and PostgreSQL included.

What ran in the UI is recorded as an experiment's run directory (`$FLEETBED_DATA_DIR/runs/up-<time>`: Locust's
CSVs and windows, the resources); when it is stopped, Locust is stopped first (so it writes its verdict, its
windows and its own HTML report), then the report of the last test is written there."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

from app.experiment.hosts import write_roles
from app.experiment.records import RunDirectoryError
from app.experiment.report import write_report
from app.experiment.runner import LOCUST_HTML, LOCUST_STOP_TIMEOUT_S, LOCUSTFILE
from app.experiment.sampler import LocalHostProbe, ResourceSampler, database_is_local, local_host_roles
from app.settings import Settings
from app.stack.database import database_url, report_migrations
from app.stack.exporters import LocalExporters
from app.stack.processes import child, fleetbed_args, stop, wait_until_ready
from app.stack.prometheus_server import (
    LocalPrometheus,
    PrometheusError,
    ScrapeTargets,
    prometheus_binary,
    write_local_config,
)


@dataclass(frozen=True)
class UpPorts:
    service: int
    locust_web: int
    locust_metrics: int
    prometheus: int


def report_what_ran(run: Path, record: dict[str, object]) -> None:
    """The report of the UI's last test, when one ran; says where it is (or why there is none)."""
    (run / "experiment.json").write_text(json.dumps(record, indent=2) + "\n")
    try:
        summary = write_report(run)
    except RunDirectoryError as exc:
        print(f"fleetbed up: no report (no test ran in the UI?): {exc}", file=sys.stderr, flush=True)
        return
    print(f"fleetbed up: {summary['bottleneck']['sentence']}\n  report: {run / 'report.html'}", file=sys.stderr)


def stop_locust(locust: subprocess.Popen[bytes]) -> None:
    """Ctrl-C for Locust: it ends the test, prints its verdict, writes its windows and its HTML report."""
    if locust.poll() is None:
        stop(locust, LOCUST_STOP_TIMEOUT_S, signal.SIGINT)


def run_up(settings: Settings, ports: UpPorts, workers: int, logs: Path) -> int:
    logs.mkdir(parents=True, exist_ok=True)
    run = (settings.data_dir / "runs" / time.strftime("up-%Y%m%dT%H%M%SZ", time.gmtime())).resolve()
    run.mkdir(parents=True, exist_ok=True)
    record: dict[str, object] = {"out": str(run), "workers": workers, "interactive": True, "interrupted": True}
    service_url = f"http://127.0.0.1:{ports.service}"
    with ExitStack() as stack:
        url = stack.enter_context(database_url(settings))
        report_migrations(url)
        env = {
            "FLEETBED_DATABASE_URL": url,
            "FLEETBED_DATA_DIR": str(settings.data_dir.resolve()),
            "FLEETBED_HOST": "127.0.0.1",
            "FLEETBED_PORT": str(ports.service),
            "FLEETBED_WORKERS": str(workers),
            "FLEETBED_OPERATOR_TOKEN": settings.operator_token,
            "FLEETBED_LOGIN_RATE_PER_S": "0",  # the local fleet logs every device in from one address
            "PYTHONUNBUFFERED": "1",
        }
        service = stack.enter_context(child(fleetbed_args("serve", "--no-migrate"), logs / "service.log", env))
        wait_until_ready(f"{service_url}/readyz", service, logs / "service.log")
        locust_args = [
            sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "-H", service_url,
            "--web-host", "127.0.0.1", "--web-port", str(ports.locust_web),
            "--prometheus-host", "127.0.0.1", "--prometheus-port", str(ports.locust_metrics),
            "--csv", str(run / "locust"), "--csv-full-history", "--html", str(run / LOCUST_HTML),
        ]  # fmt: skip
        # This machine's CPU, memory and disks (and its PostgreSQL's CPU) for the session's own report, as in
        # `fleetbed experiment`.
        write_roles(run, *local_host_roles(url))
        probe = LocalHostProbe(database_here=database_is_local(url))
        sampler = ResourceSampler(run / "resources.csv", f"{service_url}/metrics", host_probe=probe).start()
        stack.callback(sampler.stop)
        record["started_at"] = time.time()
        locust = stack.enter_context(child(locust_args, logs / "locust.log", env, logs))
        sampler.generator_pid = locust.pid
        locust_url = f"http://127.0.0.1:{ports.locust_web}"
        wait_until_ready(locust_url, locust, logs / "locust.log")
        lines = [
            f"  service      {service_url}   (API {service_url}/openapi.json, metrics {service_url}/metrics)",
            f"  Locust UI    {locust_url}   (generator metrics http://127.0.0.1:{ports.locust_metrics}/metrics)",
        ]
        if prometheus_binary() is not None:
            storage = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="fleetbed-prometheus-")))
            exporters = stack.enter_context(LocalExporters(url, logs))
            targets = ScrapeTargets(
                service=[f"127.0.0.1:{ports.service}"],
                locust=f"127.0.0.1:{ports.locust_metrics}",
                node=exporters.node,
                postgres=exporters.postgres,
            )
            for name, target in (("node_exporter", exporters.node), ("postgres_exporter", exporters.postgres)):
                if target is not None:
                    lines.append(f"  {name:<12} http://{target}/metrics")
            lines += [f"  not started  {sentence}" for sentence in exporters.missing]
            config = write_local_config(logs / "prometheus.yml", targets, scrape_interval_s=5)
            try:
                prometheus = stack.enter_context(
                    LocalPrometheus(config, storage, ports.prometheus, log_path=logs / "prometheus.log")
                )
                lines.append(f"  Prometheus   {prometheus.url}")
            except PrometheusError as exc:
                lines.append(f"  Prometheus   not started: {exc}")
        else:
            lines.append("  Prometheus   not installed (apt-get install prometheus): metrics are not kept")
        lines.append(f"  database     {url if settings.database_url else 'embedded, in ' + str(settings.data_dir)}")
        lines.append(f"  operator token  {settings.operator_token}")
        lines.append(f"  this session {run}   (its report is written there when it stops)")
        print("fleetbed is up (Ctrl-C stops everything):\n" + "\n".join(lines) + f"\n  logs in {logs}", flush=True)
        code = 1
        try:
            while service.poll() is None and locust.poll() is None:
                time.sleep(0.5)
            print("fleetbed up: a component exited; stopping the rest (see the logs)", file=sys.stderr, flush=True)
        except KeyboardInterrupt:
            print("\nfleetbed up: stopping, then the report of what ran", file=sys.stderr, flush=True)
            code = 0
        stop_locust(locust)
        record["ended_at"] = time.time()
        sampler.stop()
        report_what_ran(run, record)
        return code
