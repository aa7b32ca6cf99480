"""The NixOps network in nix/: every file parses, and what can be evaluated without nixpkgs is evaluated and held
to the rest of the project: the machine list at several sizes, the VirtualBox resources, the package's
dependencies against pyproject.toml, the service's systemd commands against the CLI, the ports and limits against
compose.yaml, and the monitoring files against the ones compose.yaml mounts and the tree holds."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from app.cli import build_parser
from app.settings import Settings, SettingsError
from tests.support.requirements import missing

REPO = Path(__file__).resolve().parents[1]
NIX = REPO / "nix"
NIX_FILES = sorted(NIX.glob("*.nix"))
NOT_MACHINES = {"network", "defaults", "resources"}

# The modules need nixpkgs (`lib`, `pkgs`) only in attributes these tests do not force: Nix is lazy, so stand-ins
# for the two package lookups they make are enough to read the attributes evaluated below.
MODULE_ARGS = """{
  config.fleetbed.machines = import ./nix/machines.nix { };
  lib = { };
  pkgs = {
    callPackage = _: _: "/nix/store/fleetbed";
    postgresql_17 = "/nix/store/postgresql";
    coreutils = "/nix/store/coreutils";
  };
  nodes = { };
}"""


def nix_instantiate(*args: str) -> str:
    if shutil.which("nix-instantiate") is None:
        missing("the nix/ tests need nix-instantiate (Debian package nix-bin)")
    # No build users on this machine, and evaluation never builds: silence the warning about their group.
    env = {**os.environ, "NIX_CONFIG": "build-users-group ="}
    result = subprocess.run(
        ["nix-instantiate", *args], cwd=REPO, env=env, capture_output=True, text=True, check=False, timeout=120
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def nix_eval(expression: str) -> Any:
    return json.loads(nix_instantiate("--eval", "--strict", "--json", "-E", expression))


def machines(**args: int) -> list[str]:
    arguments = " ".join(f"{name} = {value};" for name, value in args.items())
    names: list[str] = nix_eval(f"builtins.attrNames (import ./nix/load-test-network.nix {{ {arguments} }})")
    return [name for name in names if name not in NOT_MACHINES]


def compose() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load((REPO / "compose.yaml").read_text())
    return document


def test_the_network_files_are_all_there() -> None:
    names = {path.name for path in NIX_FILES}
    for required in (
        "load-test-network.nix", "load-test-vbox.nix", "load-test-app.nix", "load-test-database.nix",
        "monitoring.nix", "load-test-locust.nix", "fleetbed.nix",
    ):  # fmt: skip
        assert required in names


@pytest.mark.parametrize("path", NIX_FILES, ids=lambda path: path.name)
def test_every_nix_file_parses(path: Path) -> None:
    nix_instantiate("--parse", str(path))


def test_the_default_network_has_every_role() -> None:
    assert machines() == ["app", "database", "locust-master", "locust-worker-1", "locust-worker-2", "monitoring"]


def test_scaling_out_adds_workers_app_hosts_and_a_balancer() -> None:
    assert machines(locustWorkers=4, appHosts=3) == [
        "app", "app-2", "app-3", "balancer", "database", "locust-master",
        "locust-worker-1", "locust-worker-2", "locust-worker-3", "locust-worker-4", "monitoring",
    ]  # fmt: skip
    assert machines(locustWorkers=0) == ["app", "database", "locust-master", "monitoring"]


@pytest.mark.parametrize("size", [{}, {"locustWorkers": 5, "appHosts": 2}], ids=["default", "scaled"])
def test_every_machine_has_a_virtualbox_resource(size: dict[str, int]) -> None:
    arguments = " ".join(f"{name} = {value};" for name, value in size.items())
    vbox = nix_eval(
        f"""let vms = import ./nix/load-test-vbox.nix {{ {arguments} }};
        in builtins.mapAttrs (name: vm: (vm {{ }}).deployment) vms"""
    )
    assert sorted(vbox) == machines(**size)
    for deployment in vbox.values():
        assert deployment["targetEnv"] == "virtualbox"
        assert deployment["virtualbox"]["memorySize"] >= 1024
        assert deployment["virtualbox"]["headless"] is True


def test_the_package_is_built_from_pyproject_with_every_dependency_mapped() -> None:
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    package = nix_eval(
        """let pyproject = builtins.fromTOML (builtins.readFile ./pyproject.toml);
               deps = import ./nix/python-deps.nix;
        in { inherit (pyproject.project) name version; nixpkgs = deps.nixpkgsNames pyproject;
             left_out = deps.notPackaged; }"""
    )
    assert (package["name"], package["version"]) == (pyproject["project"]["name"], pyproject["project"]["version"])
    declared = {re.split(r"[<>=!~;\[ ]", requirement)[0] for requirement in pyproject["project"]["dependencies"]}
    assert len(package["nixpkgs"]) + len(declared & set(package["left_out"])) == len(declared)
    source = (NIX / "fleetbed.nix").read_text()
    assert "buildPythonApplication" in source
    assert "pyproject = true" in source


def test_the_app_unit_runs_cli_commands_that_exist() -> None:
    unit = nix_eval(f"(import ./nix/load-test-app.nix {MODULE_ARGS}).systemd.services.fleetbed.serviceConfig")
    commands = [unit["ExecStartPre"], unit["ExecStart"]]
    assert [command.split()[0] for command in commands] == ["/nix/store/fleetbed/bin/fleetbed"] * 2
    parser = build_parser()
    migrate, serve = (parser.parse_args(command.split()[1:]) for command in commands)
    assert migrate.command == "migrate"
    assert (serve.command, serve.host, serve.workers) == ("serve", "0.0.0.0", 2)  # noqa: S104
    assert unit["LimitNOFILE"] >= 65536
    assert unit["EnvironmentFile"].startswith("/run/keys/"), "secrets come from a NixOps key, not the store"


def test_the_database_preloads_timescaledb() -> None:
    settings = nix_eval(f"(import ./nix/load-test-database.nix {MODULE_ARGS}).services.postgresql.settings")
    assert "timescaledb" in settings["shared_preload_libraries"].split(",")
    assert settings["max_connections"] >= 2 * 20, "room for every app worker's pool"


def test_ports_and_limits_match_compose() -> None:
    settings = nix_eval("import ./nix/settings.nix")
    ports, services = settings["ports"], compose()["services"]
    # "published:target", whatever host address a port is published on
    published = {
        name: [":".join(str(port).split(":")[-2:]) for port in service.get("ports", [])]
        for name, service in services.items()
    }
    assert f"{ports['app']}:{ports['app']}" in published["app"]
    assert f"{ports['prometheus']}:{ports['prometheus']}" in published["prometheus"]
    assert f"{ports['grafana']}:{ports['grafana']}" in published["grafana"]
    assert f"{ports['locustWeb']}:{ports['locustWeb']}" in published["locust-master"]
    assert str(ports["locustMetrics"]) in services["locust-master"]["expose"]
    assert f"{ports['locustMaster']}:{ports['locustMaster']}" in published["locust-master"]
    assert services["app"]["ulimits"]["nofile"]["hard"] == settings["limits"]["nofile"]
    sysctl = settings["limits"]["sysctl"]
    assert sysctl["net.core.somaxconn"] >= 4096
    assert sysctl["fs.file-max"] >= 1_000_000


def compose_monitoring_sources() -> set[str]:
    sources = set()
    for service in compose()["services"].values():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("./monitoring/"):
                sources.add(source.removeprefix("./"))
    return sources


def nix_monitoring_sources() -> set[str]:
    paths: dict[str, str] = nix_eval("builtins.mapAttrs (name: toString) (import ./nix/monitoring-files.nix)")
    return {str(Path(path).relative_to(REPO)) for path in paths.values()}


def test_compose_and_nix_provision_monitoring_from_the_same_files() -> None:
    assert compose_monitoring_sources() == nix_monitoring_sources() == {
        "monitoring/prometheus/prometheus.yml",
        "monitoring/prometheus/rules",
        "monitoring/grafana/provisioning/datasources/prometheus.yml",
        "monitoring/grafana/provisioning/dashboards/fleetbed.yml",
        "monitoring/grafana/dashboards",
        "monitoring/postgres_exporter",
    }  # fmt: skip
    grafana = nix_eval(
        f"""let m = import ./nix/monitoring.nix {MODULE_ARGS}; files = import ./nix/monitoring-files.nix;
        in [ (m.services.grafana.provision.datasources.path == files.grafanaDatasources)
             (m.services.grafana.provision.dashboards.path == files.grafanaDashboardProvider)
             (m.environment.etc."prometheus/rules".source == files.prometheusRules) ]"""
    )
    assert grafana == [True, True, True], "monitoring.nix provisions from monitoring-files.nix"


def test_every_monitoring_file_the_deployments_use_exists() -> None:
    for relative in sorted(compose_monitoring_sources() | nix_monitoring_sources()):
        path = REPO / relative
        assert path.exists(), f"{relative} is mounted by compose.yaml / nix/monitoring-files.nix but missing"
        if path.is_dir():
            assert any(path.glob("*.yml")) or any(path.glob("*.json")), f"{relative} is empty"


def test_prometheus_on_the_monitoring_host_resolves_every_target_and_rule_file() -> None:
    result = nix_eval(
        """let
             machines = import ./nix/machines.nix { };
             nodes = builtins.listToAttrs (builtins.genList (i: {
               name = builtins.elemAt machines.all i;
               value.config.networking.privateIPv4 = "192.168.56.${toString (i + 10)}";
             }) (builtins.length machines.all));
             m = import ./nix/monitoring.nix { config = { }; lib = { }; pkgs = { }; inherit nodes; };
           in {
             config = m.services.prometheus.configText;
             aliases = builtins.concatLists (builtins.attrValues m.networking.hosts);
             machines = machines.all;
             rules = toString m.environment.etc."prometheus/rules".source;
           }"""
    )
    config = yaml.safe_load(result["config"])
    resolvable = set(result["aliases"]) | set(result["machines"]) | {"localhost"}
    for job in config["scrape_configs"]:
        for static in job.get("static_configs", []):
            for target in static["targets"]:
                assert target.rsplit(":", 1)[0] in resolvable, f"job {job['job_name']}: {target} unresolvable"
    for rule_file in config["rule_files"]:
        relative = Path(rule_file).relative_to("/etc/prometheus/rules")
        assert (Path(result["rules"]) / relative).exists(), rule_file


def app_unit(app_hosts: int) -> dict[str, Any]:
    args = MODULE_ARGS.replace(
        "import ./nix/machines.nix { }", f"import ./nix/machines.nix {{ appHosts = {app_hosts}; }}"
    )
    unit: dict[str, Any] = nix_eval(
        f"let s = (import ./nix/load-test-app.nix {args}).systemd.services.fleetbed; "
        "in { inherit (s) environment; inherit (s.serviceConfig) TimeoutStopSec Restart; }"
    )
    return unit


def test_the_app_unit_outlives_its_drain_and_knows_how_many_hosts_share_the_secret() -> None:
    one, three = app_unit(1), app_unit(3)
    drain_s = float(one["environment"]["FLEETBED_DRAIN_TIMEOUT_S"])
    assert one["TimeoutStopSec"] > drain_s, "systemd's SIGKILL must not cut the drain short"
    assert one["Restart"] == "on-failure"
    assert (one["environment"]["FLEETBED_SERVICE_HOSTS"], three["environment"]["FLEETBED_SERVICE_HOSTS"]) == ("1", "3")
    # Three hosts: the service refuses to start unless the key file sets the shared secrets.
    with pytest.raises(SettingsError, match="FLEETBED_SECRET"):
        Settings.from_env({**three["environment"], "FLEETBED_DATA_DIR": "/nonexistent-never-created"})


def test_prometheus_has_no_lifecycle_api_and_grafana_needs_its_password() -> None:
    flags = nix_eval(f"(import ./nix/monitoring.nix {MODULE_ARGS}).services.prometheus.extraFlags")
    assert not [flag for flag in flags if "lifecycle" in flag]
    checks = nix_eval(f"(import ./nix/monitoring.nix {MODULE_ARGS}).systemd.services.grafana.serviceConfig")
    assert checks["ExecStartPre"] == ["/nix/store/coreutils/bin/test -s /run/keys/grafana-admin-password"]
    grafana = nix_eval(f"(import ./nix/monitoring.nix {MODULE_ARGS}).services.grafana.settings.security")
    assert grafana["admin_password"] == "$__file{/run/keys/grafana-admin-password}"


def test_the_locust_ui_listens_on_loopback_and_records_go_to_a_fixed_service() -> None:
    source = (NIX / "load-test-locust.nix").read_text()
    web_host = re.search(r'webHost = lib\.mkOption \{.*?default = "([^"]+)"', source, re.S)
    assert web_host is not None
    assert web_host[1] == "127.0.0.1"
    assert "--web-host ${cfg.webHost}" in source
    assert "environment.LOCUST_RUN_RECORD_URL = serviceUrl;" in source
    assert "LOCUST_HOST = serviceUrl;" in source
    assert 'lib.optional (cfg.webHost != "127.0.0.1") locustWeb' in source, "the firewall opens the UI only if told"
    assert "keyFile = ./secrets/locust-worker.env" in source, "workers get the enrolment key from a key"
