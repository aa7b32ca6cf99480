"""`fleetbed experiment --target URL [--prometheus URL]`: the main job against an existing deployment.

Nothing is started but the generator: Locust headless here (`--processes N`), or a Locust master here that waits
for `--expect-workers N` remote workers (`--master`). The deployment's service is sampled through its `/metrics`
as in a local run; this machine is the generator's host. With `--prometheus`, the deployment's machines and
PostgreSQL are read back from its Prometheus at the end (`prometheus_evidence`), so the verdict sees the database
host as the local run sees this machine. Same shapes, SLO, outputs and exit codes as `runner.run_experiment`.
"""

from __future__ import annotations

import json
import sys
import time
import urllib.error
import urllib.request
from contextlib import ExitStack
from dataclasses import asdict
from typing import Any

from app.experiment.hosts import HOSTS_FILE, read_hosts, write_evidence, write_roles
from app.experiment.progress import ProgressLine
from app.experiment.prometheus_evidence import host_evidence
from app.experiment.prometheus_run import scrape_interval_s
from app.experiment.runner import ExperimentPlan, export_prometheus, finish, locust_args, wait_for_locust
from app.experiment.sampler import LOCAL_HOST, LocalHostProbe, ResourceSampler
from app.settings import Settings
from app.stack.processes import StartError, child, free_port
from app.stack.prometheus_export import ExportError

READY_TIMEOUT_S = 30.0


def wait_for_target(url: str, timeout_s: float = READY_TIMEOUT_S) -> None:
    """The deployment's service answers /readyz, or StartError naming what it answered."""
    deadline, last = time.monotonic() + timeout_s, "no answer"
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/readyz", timeout=3) as response:  # noqa: S310 (checked http URL)
                if response.status == 200:
                    return
        except urllib.error.HTTPError as exc:
            last = f"{exc.code} {exc.reason}"
        except (urllib.error.URLError, OSError) as exc:
            last = str(getattr(exc, "reason", exc))
        time.sleep(0.5)
    raise StartError(f"--target {url}: /readyz did not answer 200 within {timeout_s:g} s ({last})")


def add_deployment_evidence(plan: ExperimentPlan, record: dict[str, Any]) -> None:
    """Replace the local host evidence with the deployment's, keeping this machine as the generator's host."""
    assert plan.prometheus_url is not None
    local = read_hosts(plan.out)
    try:
        scrape_s = scrape_interval_s(plan.prometheus_url)
        step_s = max(1.0, scrape_s)
        evidence = host_evidence(
            plan.prometheus_url, record["started_at"], record["ended_at"], step_s, f"{max(4 * scrape_s, 2 * step_s):g}s"
        )
    except ExportError as exc:
        record["prometheus_evidence"] = str(exc)
        return
    if local is not None and LOCAL_HOST in local.series:
        evidence.series[LOCAL_HOST] = local.series[LOCAL_HOST]
        evidence.roles[LOCAL_HOST] = ["generator"]
    write_evidence(plan.out, evidence)
    record["prometheus_evidence"] = "hosts.csv"


def run_against_target(settings: Settings, plan: ExperimentPlan) -> int:
    assert plan.target is not None
    plan.out.mkdir(parents=True, exist_ok=True)
    service_url = plan.target.rstrip("/")
    if not service_url.startswith(("http://", "https://")):
        raise StartError(f"--target must be an http(s) URL like http://10.0.0.2:8080, got {plan.target!r}")
    record: dict[str, Any] = {**asdict(plan), "out": str(plan.out), "started_at": time.time(), "interrupted": False}
    wait_for_target(service_url)
    env = {"FLEETBED_OPERATOR_TOKEN": settings.operator_token, "PYTHONUNBUFFERED": "1"}
    locust_log = plan.out / "locust.log"
    with ExitStack() as stack:
        metrics_port = free_port()
        (plan.out / HOSTS_FILE).unlink(missing_ok=True)
        unseen = [] if plan.prometheus_url else ["the deployment's machines and PostgreSQL (give --prometheus URL)"]
        write_roles(plan.out, {LOCAL_HOST: ["generator"]}, unseen)
        probe = LocalHostProbe(database_here=False)
        sampler = ResourceSampler(plan.out / "resources.csv", f"{service_url}/metrics", host_probe=probe).start()
        stack.callback(sampler.stop)
        record["started_at"] = time.time()
        locust = stack.enter_context(child(locust_args(plan, service_url, metrics_port), locust_log, env, plan.out))
        sampler.generator_pid = locust.pid
        progress = ProgressLine(f"http://127.0.0.1:{metrics_port}/metrics", sys.stderr, plan.duration_s)
        record["locust_exit_code"] = wait_for_locust(locust, progress, record)
        record["ended_at"] = time.time()
        sampler.stop()
    if plan.prometheus_url:
        add_deployment_evidence(plan, record)
        failure = export_prometheus(
            plan.prometheus_url, record["started_at"], record["ended_at"], plan.out / "prometheus.csv"
        )
        record["prometheus_export"] = failure or "prometheus.csv"
    (plan.out / "experiment.json").write_text(json.dumps(record, indent=2) + "\n")
    return finish(plan, record, locust_log)
