"""The Nix package's declared Python dependencies cover what its commands import: `fleetbed migrate` and `fleetbed
serve` (the app hosts), every module of `app` (any command), and Locust on each shipped locustfile (the Locust
hosts), run with Python's import-time log on; every imported module outside the standard library and fleetbed's
own code must come from a distribution that nix/fleetbed.nix declares, or that one of those requires."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import urllib.request
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement

from app.stack.resources import locustfiles_dir
from tests.support.processes import fleetbed_command, free_port, read_output, running_fleetbed
from tests.support.requirements import missing

REPO = Path(__file__).resolve().parents[1]
IMPORT_TIME = {"PYTHONPROFILEIMPORTTIME": "1"}

# What fleetbed.nix's `dependencies` evaluates to, with each python3Packages attribute standing for its own name.
PACKAGE_DEPENDENCIES = """
let
  deps = import ./nix/python-deps.nix;
  stubs = builtins.listToAttrs (map (name: { inherit name; value = name; }) (builtins.attrValues deps.names));
  package = import ./nix/fleetbed.nix {
    lib = { licenses.asl20 = "asl20"; };
    python3Packages = stubs // { buildPythonApplication = attrs: attrs; hatchling = "hatchling"; };
  };
in { dependencies = package.dependencies; names = deps.names; }
"""

EVERY_MODULE = """\
import importlib, pkgutil, app
for info in pkgutil.walk_packages(app.__path__, "app."):
    if info.name != "app.__main__":
        importlib.import_module(info.name)
"""


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def declared_by_the_package() -> set[str]:
    if shutil.which("nix-instantiate") is None:
        missing("the Nix package test needs nix-instantiate (Debian package nix-bin)")
    result = subprocess.run(
        ["nix-instantiate", "--eval", "--strict", "--json", "-E", PACKAGE_DEPENDENCIES],
        cwd=REPO,
        env={**os.environ, "NIX_CONFIG": "build-users-group ="},
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    evaluated = json.loads(result.stdout)
    pypi_name = {attribute: name for name, attribute in evaluated["names"].items()}
    return {canonical(pypi_name[attribute]) for attribute in evaluated["dependencies"]}


def with_requirements(names: set[str]) -> set[str]:
    """`names` and everything they require, transitively (extras not taken, markers evaluated here)."""
    closure: set[str] = set()
    pending = list(names)
    while pending:
        name = pending.pop()
        if name in closure:
            continue
        closure.add(name)
        try:
            requirements = metadata.requires(name) or []
        except metadata.PackageNotFoundError:
            continue
        for text in requirements:
            requirement = Requirement(text)
            if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
                pending.append(canonical(requirement.name))
    return closure


def imported_top_level(log: str) -> set[str]:
    """Top-level module names from `-X importtime` lines ("import time: self | cumulative | name")."""
    names = set()
    for line in log.splitlines():
        if line.startswith("import time:") and "|" in line:
            name = line.rsplit("|", 1)[1].strip()
            if name and name != "imported package":
                names.add(name.split(".")[0])
    return names


def standard_or_absent(module: str) -> bool:
    """The standard library's, or not importable at all (the log also times optional imports that failed)."""
    if module in sys.stdlib_module_names:
        return True
    spec = importlib.util.find_spec(module)
    if spec is None:
        return True
    stdlib = sysconfig.get_paths()["stdlib"]
    return spec.origin is not None and spec.origin.startswith(stdlib) and "site-packages" not in spec.origin


def run_logged(*argv: str, env: dict[str, str]) -> str:
    result = subprocess.run(
        list(argv), env={**os.environ, **env, **IMPORT_TIME}, capture_output=True, text=True, check=False, timeout=120
    )
    assert result.returncode == 0, result.stderr[-4000:]
    return result.stderr


def test_the_nix_package_declares_every_distribution_its_commands_import(pg_url: str, tmp_path: Path) -> None:
    declared = declared_by_the_package()
    env = {"FLEETBED_DATABASE_URL": pg_url, "FLEETBED_DATA_DIR": str(tmp_path)}
    logs = [
        run_logged(*fleetbed_command(), "migrate", env=env),
        run_logged(sys.executable, "-c", EVERY_MODULE, env=env),
    ]
    for locustfile in sorted(locustfiles_dir().glob("[!_]*.py")):
        logs.append(run_logged(sys.executable, "-m", "locust", "-f", str(locustfile), "--list", env=env))
    port = free_port()
    with running_fleetbed(["serve", "--no-migrate", "--port", str(port)], {**env, **IMPORT_TIME}, port) as serve:
        for path in ("/readyz", "/metrics", "/openapi.json"):
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as response:
                assert response.status == 200
        logs.append(read_output(serve))

    modules = {module for module in set().union(*map(imported_top_level, logs)) if not standard_or_absent(module)}
    distributions = metadata.packages_distributions()
    own = {"app", "__main__", "sitecustomize", "_distutils_hack"} | {p.stem for p in locustfiles_dir().glob("*.py")}
    unattributed = {module for module in modules if module not in distributions and module not in own}
    assert not unattributed, f"imported modules that no installed distribution provides: {sorted(unattributed)}"
    needed = {canonical(dist) for module in modules - own for dist in distributions[module]}
    assert {"locust", "aiohttp"} <= needed, "the import log was read"
    undeclared = needed - with_requirements(declared) - {"fleetbed"}
    assert not undeclared, f"nix/fleetbed.nix does not provide {sorted(undeclared)}: map them in nix/python-deps.nix"
