"""compose.yaml and the Dockerfile, held to the CLI, the locustfile and the monitoring files: `docker-compose config`
validates the file, every `fleetbed` and `locust` command the image and services run is checked against the real
command's `--help` and parser, and every target Prometheus scrapes is a service of the file."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import zipfile
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from app.cli import build_parser
from tests.support.processes import fleetbed_command, free_port, running_fleetbed
from tests.support.requirements import missing

REPO = Path(__file__).resolve().parents[1]
SERVICES = {
    "timescaledb", "app", "prometheus", "grafana", "node-exporter", "postgres-exporter", "locust-master",
    "locust-worker",
}  # fmt: skip
SECRET_NAMES = re.compile(r"SECRET|TOKEN|PASSWORD|ENROLL_KEY|DATABASE_URL|DATA_SOURCE_NAME")
# What `docker compose up` refuses to start without (secure by default), with values for the tests.
REQUIRED = {"FLEETBED_ENROLL_KEY": "enrol-key-for-tests", "GRAFANA_ADMIN_PASSWORD": "grafana-password-for-tests"}


def run_docker_compose_config(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    if shutil.which("docker-compose") is None:
        missing("the compose tests need docker-compose (Debian package docker-compose)")
    prefixes = ("FLEETBED_", "POSTGRES_", "GRAFANA_", "LOCUST_", "PROMETHEUS_")
    clean_env = {k: v for k, v in os.environ.items() if not k.startswith(prefixes)}
    return subprocess.run(
        ["docker-compose", "--project-directory", str(REPO), "-f", str(REPO / "compose.yaml"), "config"],
        env={**clean_env, **env},
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )


def docker_compose_config(**env: str) -> dict[str, Any]:
    """The file as docker compose resolves it (anchors merged, variables substituted)."""
    result = run_docker_compose_config({**REQUIRED, **env})
    assert result.returncode == 0, result.stderr
    config: dict[str, Any] = yaml.safe_load(result.stdout)
    return config


def raw_compose() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load((REPO / "compose.yaml").read_text())
    return document


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n", " ", (REPO / "Dockerfile").read_text())
    instructions = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            instructions.append((keyword.upper(), rest.strip()))
    return instructions


def final_stage() -> list[tuple[str, str]]:
    instructions = dockerfile_instructions()
    last_from = max(i for i, (keyword, _) in enumerate(instructions) if keyword == "FROM")
    return instructions[last_from:]


def image_command() -> list[str]:
    stage = dict(final_stage())
    entrypoint: list[str] = json.loads(stage["ENTRYPOINT"])
    command: list[str] = json.loads(stage["CMD"])
    return entrypoint + command


def fleetbed_invocations(argv: list[str]) -> list[list[str]]:
    """Each `fleetbed ...` command line in an argv, including the commands of a `sh -c` script."""
    if argv[:2] == ["/bin/sh", "-c"]:
        commands = [shlex.split(part) for part in re.split(r"&&|;|\|\|", " ".join(argv[2:]))]
        return [command[1:] if command[0] == "exec" else command for command in commands]
    return [argv]


@cache
def help_text(*command: str) -> str:
    result = subprocess.run([*command, "--help"], capture_output=True, text=True, check=False, timeout=120)
    assert result.returncode == 0, result.stderr
    return result.stdout


def assert_fleetbed_command_exists(argv: list[str]) -> None:
    assert argv[0] == "fleetbed", argv
    subcommand = argv[1]
    usage = help_text(*fleetbed_command(), subcommand)
    for option in (arg for arg in argv[2:] if arg.startswith("--")):
        assert option in usage, f"fleetbed {subcommand} has no {option}"
    parsed = build_parser().parse_args(argv[1:])
    assert parsed.command == subcommand


def bind_mounts(service: dict[str, Any]) -> list[tuple[str, str]]:
    """(target in the container, source on the host) of a service's bind mounts, short or long syntax."""
    mounts = []
    for volume in service.get("volumes", []):
        if isinstance(volume, str):
            source, target, *_ = volume.split(":")
        else:
            source, target = volume["source"], volume["target"]
        if source.startswith(("/", ".")):
            mounts.append((target, source))
    return mounts


def test_docker_compose_validates_the_file() -> None:
    config = docker_compose_config()
    assert set(config["services"]) == SERVICES


def published_ports(services: dict[str, Any]) -> set[tuple[str, str, int, int]]:
    """(service, host address or "" for every interface, published, target), long or short syntax."""
    found = set()
    for name, service in services.items():
        for port in service.get("ports", []):
            if isinstance(port, dict):
                found.add((name, port.get("host_ip", ""), int(port["published"]), int(port["target"])))
            else:
                *address, published, target = str(port).split("/")[0].split(":")
                found.add((name, address[0] if address else "", int(published), int(target)))
    return found


def test_one_up_publishes_the_service_and_grafana_and_the_rest_on_loopback() -> None:
    assert published_ports(docker_compose_config()["services"]) == {
        ("app", "", 8080, 8080), ("grafana", "", 3000, 3000),  # the devices' API; Grafana needs its password
        ("locust-master", "127.0.0.1", 8089, 8089), ("prometheus", "127.0.0.1", 9090, 9090),  # no logins of their own
        ("locust-master", "127.0.0.1", 5557, 5557),  # workers on other hosts
    }  # fmt: skip
    told = docker_compose_config(LOCUST_PUBLISH="10.0.0.2", PROMETHEUS_PUBLISH="10.0.0.2")["services"]
    assert {(name, address) for name, address, _, _ in published_ports(told)} >= {
        ("locust-master", "10.0.0.2"), ("prometheus", "10.0.0.2"),
    }  # fmt: skip


def test_every_published_port_is_documented_in_the_file() -> None:
    header = (REPO / "compose.yaml").read_text().split("\nx-", 1)[0]
    for _, _, published, _ in published_ports(docker_compose_config()["services"]):
        assert str(published) in header, f"port {published} is published but not described at the top"


def test_the_start_refuses_without_an_enrolment_key_or_a_grafana_password() -> None:
    for name in REQUIRED:
        result = run_docker_compose_config({key: value for key, value in REQUIRED.items() if key != name})
        assert result.returncode != 0
        assert name in result.stderr


def test_prometheus_has_no_lifecycle_api_and_the_app_outlives_its_drain() -> None:
    services = docker_compose_config()["services"]
    assert not [arg for arg in services["prometheus"]["command"] if "lifecycle" in arg]
    drain_s = float(services["app"]["environment"]["FLEETBED_DRAIN_TIMEOUT_S"])
    grace = services["app"]["stop_grace_period"]
    assert grace.endswith("s")
    assert float(grace.removesuffix("s")) > drain_s, "the engine's SIGKILL must not cut the drain short"


def test_the_fleet_enrols_with_the_service_key_and_records_runs_at_a_fixed_url() -> None:
    services = docker_compose_config()["services"]
    key = services["app"]["environment"]["FLEETBED_ENROLL_KEY"]
    assert key == REQUIRED["FLEETBED_ENROLL_KEY"]
    for name in ("locust-master", "locust-worker"):
        assert services[name]["environment"]["LOCUST_ENROLL_KEY"] == key, name
    master = services["locust-master"]["environment"]
    assert master["LOCUST_RUN_RECORD_URL"] == master["LOCUST_HOST"] == "http://app:8080"


def test_locust_workers_scale() -> None:
    worker = raw_compose()["services"]["locust-worker"]
    assert "ports" not in worker, "published ports would clash between replicas"
    assert "container_name" not in worker


def test_the_image_and_the_app_service_run_commands_the_cli_has() -> None:
    image = image_command()
    assert image[:2] == ["fleetbed", "serve"]
    assert_fleetbed_command_exists(image)

    app = docker_compose_config(FLEETBED_WORKERS="3")["services"]["app"]
    invocations = fleetbed_invocations(app["entrypoint"] + app["command"])
    assert [argv[:2] for argv in invocations] == [["fleetbed", "migrate"], ["fleetbed", "serve"]]
    for argv in invocations:
        assert_fleetbed_command_exists(argv)
    serve = build_parser().parse_args(invocations[1][1:])
    assert (serve.host, serve.workers) == ("0.0.0.0", 3), "worker count from the environment"  # noqa: S104


def test_the_locust_services_use_options_the_fleet_has() -> None:
    services = docker_compose_config()["services"]
    locustfile = Path(services["locust-master"]["environment"]["LOCUST_LOCUSTFILE"])
    assert locustfile.parent == Path("/opt/fleetbed/locustfiles"), "where the Dockerfile copies locustfiles/"
    repo_locustfile = REPO / "locustfiles" / locustfile.name
    assert repo_locustfile.exists()
    usage = help_text(sys.executable, "-m", "locust", "-f", str(repo_locustfile))
    for name in ("locust-master", "locust-worker"):
        service = services[name]
        assert service["entrypoint"] == ["locust"]
        for option in (arg for arg in service["command"] if arg.startswith("--")):
            assert option in usage, f"{name}: locust has no {option}"
    assert services["locust-master"]["command"][0] == "--master"
    worker = services["locust-worker"]["command"]
    assert worker[:2] == ["--worker", "--master-host"]
    assert worker[2] == "locust-master"


def test_the_image_is_slim_non_root_healthy_and_free_of_secrets() -> None:
    stage = final_stage()
    keywords = [keyword for keyword, _ in stage]
    assert stage[0][1].startswith("python:") or "-slim" in stage[0][1]
    assert "slim" in " ".join(
        arguments for keyword, arguments in dockerfile_instructions() if keyword in ("ARG", "FROM")
    )
    users = [arguments for keyword, arguments in stage if keyword == "USER"]
    assert users
    assert users[-1] not in ("root", "0")
    assert "HEALTHCHECK" in keywords
    healthcheck = next(arguments for keyword, arguments in stage if keyword == "HEALTHCHECK")
    assert "/healthz" in healthcheck
    for keyword, arguments in dockerfile_instructions():
        if keyword in ("ENV", "ARG"):
            assert not SECRET_NAMES.search(arguments), f"secret baked into the image: {keyword} {arguments}"


def test_the_build_context_holds_what_the_dockerfile_copies() -> None:
    allowed = {
        line.removeprefix("!").rstrip("/")
        for line in (REPO / ".dockerignore").read_text().splitlines()
        if line.startswith("!")
    }
    for keyword, arguments in dockerfile_instructions():
        if keyword == "COPY" and not arguments.startswith("--from"):
            *sources, _ = arguments.split()
            for source in sources:
                assert (REPO / source).exists(), source
                assert source.rstrip("/") in allowed, f"{source} is excluded by .dockerignore"


def test_secrets_come_from_the_environment() -> None:
    for name, service in raw_compose()["services"].items():
        for variable, value in (service.get("environment") or {}).items():
            if SECRET_NAMES.search(variable):
                assert "${" in str(value), f"{name}: {variable} must come from the environment"
    config = docker_compose_config(POSTGRES_PASSWORD="from-the-environment")["services"]
    assert config["timescaledb"]["environment"]["POSTGRES_PASSWORD"] == "from-the-environment"
    assert ":from-the-environment@timescaledb:5432/" in config["app"]["environment"]["FLEETBED_DATABASE_URL"]
    assert ":from-the-environment@timescaledb:5432/" in config["postgres-exporter"]["environment"]["DATA_SOURCE_NAME"]


def test_timescaledb_is_the_official_image_with_the_extension_preloaded() -> None:
    services = docker_compose_config()["services"]
    database = services["timescaledb"]
    assert database["image"].startswith("timescale/timescaledb:")
    settings = dict(arg.split("=", 1) for arg in database["command"] if "=" in arg)
    assert "timescaledb" in settings["shared_preload_libraries"].split(",")
    assert "fsync" not in settings, "durability stays on"
    assert "synchronous_commit" not in settings
    assert services["app"]["depends_on"]["timescaledb"]["condition"] == "service_healthy"


def test_prometheus_scrapes_services_of_the_file_and_finds_its_rules() -> None:
    services = docker_compose_config()["services"]
    prometheus = services["prometheus"]
    mounts = dict(bind_mounts(prometheus))
    config_path = Path(mounts["/etc/prometheus/prometheus.yml"])
    config = yaml.safe_load(config_path.read_text())
    for job in config["scrape_configs"]:
        for static in job.get("static_configs", []):
            for target in static["targets"]:
                host = target.rsplit(":", 1)[0]
                assert host in services or host == "localhost", f"job {job['job_name']}: no service {host}"
    for rule_file in config["rule_files"]:
        in_container = Path("/etc/prometheus") / rule_file
        mount = next(target for target in mounts if in_container.is_relative_to(target))
        on_host = Path(mounts[mount]) / in_container.relative_to(mount)
        assert on_host.exists(), f"{rule_file} resolves to {in_container}, which the mounts do not provide"


def test_the_build_context_builds_a_wheel_with_the_cli_and_the_migrations(tmp_path: Path) -> None:
    """The image's build stage, minus Docker: a wheel from exactly what .dockerignore lets into the context."""
    context = tmp_path / "context"
    for keyword, arguments in dockerfile_instructions():
        if keyword == "COPY" and not arguments.startswith("--from"):
            *sources, _ = arguments.split()
            for source in sources:
                path = REPO / source
                if path.is_dir():
                    shutil.copytree(path, context / source, ignore=shutil.ignore_patterns("__pycache__"))
                else:
                    context.mkdir(exist_ok=True)
                    shutil.copy(path, context / source)
    result = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", str(context), "-w", str(tmp_path / "dist")],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    (wheel,) = (tmp_path / "dist").glob("fleetbed-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        entry_points = next(archive.read(name).decode() for name in names if name.endswith("entry_points.txt"))
    assert "fleetbed = app.cli:run" in entry_points
    assert {f"app/cli/{module.name}" for module in (REPO / "app" / "cli").glob("*.py")} <= names
    assert {f"app/_migrations/{sql.name}" for sql in (REPO / "migrations").glob("*.sql")} <= names


def test_locust_never_gets_database_credentials() -> None:
    services = docker_compose_config(POSTGRES_PASSWORD="database-password-here")["services"]
    for name in ("locust-master", "locust-worker"):
        service = services[name]
        assert "database-password-here" not in json.dumps(service), name
        assert not any(volume.startswith("app-data") for volume in service.get("volumes", [])), name


def healthcheck_command() -> list[str]:
    healthcheck = next(arguments for keyword, arguments in final_stage() if keyword == "HEALTHCHECK")
    command: list[str] = json.loads(healthcheck.split(" CMD ", 1)[1])
    return command


def test_the_image_health_check_passes_on_a_serving_service_and_fails_without_one(pg_url: str, tmp_path: Path) -> None:
    command = healthcheck_command()
    assert command[0] == "python"
    runnable = [sys.executable, *command[1:]]
    port = free_port()
    env = {"FLEETBED_DATABASE_URL": pg_url, "FLEETBED_DATA_DIR": str(tmp_path), "FLEETBED_PORT": str(port)}
    with running_fleetbed(["serve", "--no-migrate"], env, port):
        healthy = subprocess.run(runnable, env={**os.environ, **env}, capture_output=True, check=False, timeout=30)
        assert healthy.returncode == 0, healthy.stderr
    unhealthy = subprocess.run(runnable, env={**os.environ, **env}, capture_output=True, check=False, timeout=30)
    assert unhealthy.returncode != 0
