"""`fleetbed experiment`: the main job, headless: by default a capacity search (how many devices before the SLO
breaks, in a few minutes), or a constant fleet or a step ramp; then the CSVs, `summary.json` and `report.html` in
`--out`. With `--target URL`, against an existing deployment (only the generator runs here). The logic lives in
`app.experiment`."""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path
from typing import Any

from app.cli._arguments import parse_duration_s
from app.settings import Settings
from app.slo import DEFAULT_SLO, parse_slo

DEFAULT_DEVICES = 200
DEFAULT_DURATION_S = 60.0
DEFAULT_STEP_DEVICES = 100
DEFAULT_STEP_S = 60.0
DEFAULT_INTERVAL_S = 30.0
# The capacity search (the default): a short device cycle so a few hundred devices load the service, and devices
# grouped on Locust users so the generator leaves the machine's cores to the service.
SEARCH_INTERVAL_S = 1.0
SEARCH_DEVICES_PER_USER = 10
SEARCH_START_DEVICES = 200


def slo_text(text: str) -> str:
    try:
        parse_slo(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def register(commands: Any) -> None:
    parser = commands.add_parser(
        "experiment",
        help="run the fleet against the service and report capacity and bottleneck",
        description="Start the database, the service, Prometheus (when installed) and a headless Locust fleet; "
        "then write Locust CSVs (full history), the Prometheus export, summary.json and report.html to --out. "
        "With no --devices, --duration, --step-devices or --until-failure: a capacity search (geometric steps of "
        "devices on a 1 s cycle until the SLO breaks, bisections, a confirmation step; about 3 minutes). "
        "Exit 0 when the SLO held (searches and --until-failure: when a capacity was found), 1 otherwise, 130 on "
        "Ctrl-C (the report of what ran is still written).",
    )
    parser.add_argument(
        "--devices",
        type=int,
        help="a constant fleet (60 s unless --duration), or the cap of a ramp or of a search (--search or "
        "--start-devices; default: none)",
    )
    parser.add_argument("--duration", type=parse_duration_s, default=None, help="e.g. 60s, 10m (default 60s)")
    parser.add_argument("--search", action="store_true", help="the capacity search (the default with no fleet shape)")
    parser.add_argument(
        "--start-devices", type=int, help=f"search: the first step's fleet (default {SEARCH_START_DEVICES})"
    )
    parser.add_argument("--until-failure", action="store_true", help="linear ramp until the SLO breaks")
    parser.add_argument("--step-devices", type=int, help="ramp: devices added per step (--until-failure: 100)")
    parser.add_argument(
        "--step-seconds",
        type=parse_duration_s,
        default=None,
        help="ramp: step length (default 60s); search: judged length of a step (default 12s)",
    )
    parser.add_argument("--slo", type=slo_text, default=DEFAULT_SLO, help=f"objectives (default '{DEFAULT_SLO}')")
    parser.add_argument("--workers", type=int, default=1, help="service worker processes (default 1)")
    parser.add_argument("--devices-per-user", type=int, default=0, help="devices per Locust user (0: automatic)")
    parser.add_argument(
        "--connections-per-user", type=int, default=0, help="HTTP connections a user's devices share (0: Locust's)"
    )
    parser.add_argument(
        "--interval", type=parse_duration_s, default=None, help="device cycle (default 30s; search: 1s)"
    )
    parser.add_argument("--no-prometheus", action="store_true", help="do not start Prometheus even when installed")
    parser.add_argument("--out", type=Path, help="run directory (default $FLEETBED_DATA_DIR/runs/<time>)")
    deployment = parser.add_argument_group(
        "an existing deployment", "drive a deployed service instead of starting one here (only the generator runs here)"
    )
    deployment.add_argument("--target", help="the deployment's service URL, e.g. http://10.0.0.2:8080")
    deployment.add_argument(
        "--prometheus", dest="prometheus_url", help="the deployment's Prometheus: its hosts and PostgreSQL as evidence"
    )
    deployment.add_argument(
        "--operator-token-file", type=Path, help="the service's operator token (default $FLEETBED_OPERATOR_TOKEN)"
    )
    deployment.add_argument("--processes", type=int, default=1, help="local Locust processes (default 1)")
    deployment.add_argument("--master", action="store_true", help="run a Locust master here for remote workers")
    deployment.add_argument("--expect-workers", type=int, default=1, help="with --master: workers to wait for")
    deployment.add_argument(
        "--master-bind-host",
        default="0.0.0.0",  # noqa: S104 (remote workers connect from other hosts)
        help="with --master: address workers reach",
    )
    parser.set_defaults(run=run)


def run(settings: Settings, args: argparse.Namespace) -> int:
    if args.processes < 1 or args.expect_workers < 1:
        print("fleetbed experiment: --processes and --expect-workers must be >= 1", file=sys.stderr)
        return 2
    if args.target is None and (args.prometheus_url or args.master):
        print("fleetbed experiment: --prometheus and --master go with --target URL", file=sys.stderr)
        return 2
    if args.operator_token_file is not None:
        from dataclasses import replace

        settings = replace(settings, operator_token=args.operator_token_file.read_text().strip())
    shaped = args.devices is not None or args.duration is not None or args.step_devices or args.until_failure
    if args.search or args.start_devices is not None or not shaped:
        return run_search(settings, args)
    until_failure = bool(args.until_failure)
    step_seconds = args.step_seconds or DEFAULT_STEP_S
    devices = args.devices if args.devices is not None else (0 if until_failure else DEFAULT_DEVICES)
    step_devices = args.step_devices or (DEFAULT_STEP_DEVICES if until_failure else None)
    if devices < 0 or args.workers < 1 or (step_devices is not None and step_devices < 1):
        print("fleetbed experiment: --devices must be >= 0, --step-devices and --workers >= 1", file=sys.stderr)
        return 2
    duration = args.duration
    if duration is None and not until_failure:
        duration = DEFAULT_DURATION_S
    elif duration is None and devices and step_devices:
        # A capped ramp until failure that never fails would hold the cap forever: one step at the cap, then stop.
        duration = (math.ceil(devices / step_devices) + 1) * step_seconds
    biggest = max(devices, step_devices or 0)
    per_user = args.devices_per_user or (1 if biggest <= 2000 else 50)
    plan = _plan(
        settings,
        args,
        devices=devices,
        duration_s=duration,
        until_failure=until_failure,
        step_devices=step_devices,
        step_seconds=step_seconds,
        devices_per_user=per_user,
        interval_s=args.interval or DEFAULT_INTERVAL_S,
    )
    return _run(settings, plan)


def _plan(settings: Settings, args: argparse.Namespace, **shape: Any) -> Any:
    """The plan of a run: its shape (fleet, steps, search) from the caller, the rest from the command line: where
    it writes, the SLO, the service, Prometheus, and an existing deployment (`--target` and its companions)."""
    from app.experiment.runner import ExperimentPlan

    return ExperimentPlan(
        out=_out(settings, args),
        slo=args.slo,
        workers=args.workers,
        connections_per_user=args.connections_per_user,
        prometheus=not args.no_prometheus,
        target=args.target,
        prometheus_url=args.prometheus_url,
        processes=args.processes,
        master=args.master,
        expect_workers=args.expect_workers,
        master_bind=args.master_bind_host,
        **shape,
    )


def _out(settings: Settings, args: argparse.Namespace) -> Path:
    return Path(args.out or settings.data_dir / "runs" / time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())).resolve()


def _run(settings: Settings, plan: Any) -> int:
    from app.experiment.runner import run_experiment
    from app.stack.processes import StartError

    try:
        return run_experiment(settings, plan)
    except StartError as exc:
        print(f"fleetbed experiment: {exc}", file=sys.stderr)
        return 2


def run_search(settings: Settings, args: argparse.Namespace) -> int:
    from app.experiment.search import SearchPlan

    cap = args.devices or 0
    start = args.start_devices or SEARCH_START_DEVICES
    if cap < 0 or args.workers < 1 or start < 1:
        print("fleetbed experiment: --devices must be >= 0, --start-devices and --workers >= 1", file=sys.stderr)
        return 2
    # Whole users must still leave fine steps: a twentieth of the first fleet at most.
    per_user = args.devices_per_user or max(1, min(SEARCH_DEVICES_PER_USER, start // 20))
    search = SearchPlan(start_devices=start, max_devices=cap)
    if args.step_seconds:
        search = SearchPlan(
            start_devices=start,
            max_devices=cap,
            judge_s=args.step_seconds,
            confirm_s=max(args.step_seconds, search.confirm_s),
        )
    plan = _plan(
        settings,
        args,
        devices=cap,
        duration_s=None,
        until_failure=False,
        step_devices=None,
        step_seconds=search.judge_s,
        devices_per_user=per_user,
        interval_s=args.interval or SEARCH_INTERVAL_S,
        search=search,
    )
    return _run(settings, plan)
