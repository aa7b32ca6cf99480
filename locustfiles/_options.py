"""The fleet's command-line options, added to Locust's own parser (also settable in `[tool.locust]` of
pyproject.toml, in locust.conf, or as LOCUST_* environment variables, like every Locust option).

Options that matter for each test (the shape, its steps, the SLO, the device interval, the run's name) are offered
in the web UI's start form; those that only matter when the process starts (the make-up of a user, the HTTP
client, the metrics endpoint, the run records) are not (`include_in_web_ui=False`)."""

from __future__ import annotations

from typing import Any

from app.slo import DEFAULT_SLO

DEFAULT_PROMETHEUS_PORT = 9646
DEFAULT_DEVICE_INTERVAL_S = 30.0


def add_fleet_options(parser: Any) -> None:
    parser.add_argument(
        "--devices-per-user",
        type=int,
        default=1,
        env_var="LOCUST_DEVICES_PER_USER",
        include_in_web_ui=False,
        help="Simulated devices carried by one Locust user (1: one user and connection per device)",
    )
    parser.add_argument(
        "--connections-per-user",
        type=int,
        default=0,
        env_var="LOCUST_CONNECTIONS_PER_USER",
        include_in_web_ui=False,
        help="Connections (and worker greenlets) serving a user's devices (0: one per device, at most 20)",
    )
    parser.add_argument(
        "--http-client",
        choices=["lean", "fasthttp"],
        default="lean",
        env_var="LOCUST_HTTP_CLIENT",
        include_in_web_ui=False,
        help="lean: each of a user's connections is a plain keep-alive connection served by its own worker "
        "(the cheapest per request); fasthttp: the workers share the user's FastHttpSession. Both report every "
        "request to Locust's stats",
    )
    parser.add_argument(
        "--enroll-key",
        default="",
        env_var="LOCUST_ENROLL_KEY",
        is_secret=True,
        help="The service's FLEETBED_ENROLL_KEY, sent by every device at its login (a closed fleet)",
    )
    parser.add_argument(
        "--device-interval",
        type=float,
        default=DEFAULT_DEVICE_INTERVAL_S,
        env_var="LOCUST_DEVICE_INTERVAL",
        help="Seconds between a device's cycles until the service's command says otherwise",
    )
    parser.add_argument(
        "--device-jitter",
        type=float,
        default=0.1,
        env_var="LOCUST_DEVICE_JITTER",
        include_in_web_ui=False,
        help="Jitter of each planned cycle, as a fraction of the interval",
    )
    parser.add_argument(
        "--shape",
        choices=["constant", "step", "until-failure", "follow"],
        default="constant",
        env_var="LOCUST_SHAPE",
        include_in_web_ui=True,
        help="constant: -u users; step: add --step-users every --step-seconds; until-failure: step "
        "until the SLO breaks for --failure-checks consecutive steps, then stop; follow: the user count in "
        "--users-file",
    )
    parser.add_argument(
        "--users-file",
        default="",
        env_var="LOCUST_USERS_FILE",
        help="follow: a file holding 'USERS SPAWN_RATE [SETTLE_S [STEP]]' (re-read every second) or 'stop'",
    )
    parser.add_argument("--step-users", type=int, default=10, env_var="LOCUST_STEP_USERS", include_in_web_ui=True)
    parser.add_argument(
        "--step-seconds", type=float, default=60.0, env_var="LOCUST_STEP_SECONDS", include_in_web_ui=True
    )
    parser.add_argument(
        "--max-users", type=int, default=0, env_var="LOCUST_MAX_USERS", help="Cap for the step shapes (0: none)"
    )
    parser.add_argument(
        "--failure-checks",
        type=int,
        default=2,
        env_var="LOCUST_FAILURE_CHECKS",
        help="until-failure: consecutive failed step checks that end the ramp",
    )
    parser.add_argument(
        "--slo",
        default="",
        env_var="LOCUST_SLO",
        include_in_web_ui=True,
        help="Objectives judged on each window after its warm-up, and the exit code (none: Locust's own rules), "
        f"e.g. '{DEFAULT_SLO}' (the default of `fleetbed experiment` and of --shape until-failure)",
    )
    parser.add_argument(
        "--run-name", default="", env_var="LOCUST_RUN_NAME", help="Name of the run record (default: shape and time)"
    )
    parser.add_argument(
        "--snapshot-interval",
        type=float,
        default=15.0,
        env_var="LOCUST_SNAPSHOT_INTERVAL",
        include_in_web_ui=False,
        help="Seconds between run snapshots sent to the service (POST /runs/{id}/snapshots)",
    )
    parser.add_argument(
        "--run-record-url",
        default="",
        env_var="LOCUST_RUN_RECORD_URL",
        help="The service that keeps the run records (with the operator token), fixed when Locust starts "
        "(default: --host as given at start; a host typed into the web UI never receives the token)",
    )
    parser.add_argument(
        "--no-run-record",
        action="store_true",
        default=False,
        env_var="LOCUST_NO_RUN_RECORD",
        include_in_web_ui=False,
        help="Do not register the run with the service's /runs API",
    )
    parser.add_argument(
        "--prometheus-port",
        type=int,
        default=DEFAULT_PROMETHEUS_PORT,
        env_var="LOCUST_PROMETHEUS_PORT",
        include_in_web_ui=False,
        help="Port of the master's /metrics (0: off)",
    )
    parser.add_argument(
        "--prometheus-host",
        default="0.0.0.0",  # noqa: S104  (like Locust's web UI: Prometheus scrapes it from another host)
        env_var="LOCUST_PROMETHEUS_HOST",
        include_in_web_ui=False,
        help="Bind address of the master's /metrics (default: all interfaces, like the web UI)",
    )
