"""fleetbed as users get it, not as the checkout has it: the built wheel installed into a fresh virtual environment
outside the checkout, run from another directory (the main job, `up`, `report`, `export`, Locust on the installed
locustfile), and the image's layout rebuilt from the Dockerfile's own steps and run as its CMD and HEALTHCHECK.

One wheel and one virtual environment serve the whole session (`installed`); each test runs in its own directory.
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import tomllib
import urllib.request
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from app.stack.resources import SHIPPED
from tests.support.dockerfile_replay import Image, foreign_paths, instructions, replay
from tests.support.processes import free_port
from tests.support.requirements import missing

REPO = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
VERSION = PYPROJECT["project"]["version"]
STOP_TIMEOUT_S = 60.0

pytestmark = pytest.mark.slow


def clean_env(**extra: str) -> dict[str, str]:
    """The environment of a user's shell: nothing of the checkout or the test run's own configuration."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("FLEETBED_", "PYTHON", "VIRTUAL_ENV", "LOCUST_", "PYTEST"))
    }
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep) if not p.startswith(str(REPO)))
    return {**env, **extra}


@dataclass(frozen=True)
class Installation:
    wheel: Path
    venv: Path

    def bin(self, program: str) -> str:
        return str(self.venv / "bin" / program)

    def env(self, **extra: str) -> dict[str, str]:
        base = clean_env()
        return {**base, "PATH": f"{self.venv / 'bin'}{os.pathsep}{base['PATH']}", **extra}

    def run(self, *args: str, cwd: Path, timeout: float = 120, **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [self.bin(args[0]), *args[1:]],
            cwd=cwd,
            env=self.env(**env),
            capture_output=True,
            text=True,
            check=False,
            timeout=timeout,
        )


def build_wheel(source: Path, out: Path) -> Path:
    result = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(out), str(source)],
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr
    (wheel,) = out.glob("fleetbed-*.whl")
    return wheel


@pytest.fixture(scope="session")
def built_wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_wheel(REPO, tmp_path_factory.mktemp("dist"))


@pytest.fixture(scope="session")
def installed(built_wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Installation:
    """`python -m venv` + `pip install fleetbed-*.whl[fast]`, as the README's pip path does it."""
    venv = tmp_path_factory.mktemp("venv") / "fleetbed"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, env=clean_env(), timeout=120)
    result = subprocess.run(
        [str(venv / "bin" / "pip"), "install", "--quiet", f"{built_wheel}[fast]"],
        capture_output=True,
        text=True,
        check=False,
        env=clean_env(),
        timeout=900,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    return Installation(built_wheel, venv)


@contextmanager
def started(argv: list[str], cwd: Path, env: dict[str, str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """A command in its own session; on the way out, Ctrl-C (SIGINT) as a user would, then SIGKILL if it hangs."""
    with log.open("wb") as output:
        process = subprocess.Popen(
            argv, cwd=cwd, env=env, stdout=output, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        yield process
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGINT)
            try:
                process.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)  # anything it left behind in its session


def session_empties(process: subprocess.Popen[bytes], grace_s: float = 10.0) -> bool:
    """True once nothing of the session the command led is left (its children stopped with it)."""
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline:
        try:
            os.killpg(process.pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.2)
    return False


def answers(url: str, process: subprocess.Popen[bytes], log: Path, timeout_s: float = 90.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert process.poll() is None, f"exited with {process.returncode}:\n{log.read_text()[-4000:]}"
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.3)
    raise AssertionError(f"{url} did not answer in {timeout_s} s:\n{log.read_text()[-4000:]}")


def scraped(prometheus: str, query: str, process: subprocess.Popen[bytes], log: Path, timeout_s: float = 60) -> None:
    """Wait until `query` has a sample in Prometheus (its first scrape)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert process.poll() is None, f"exited with {process.returncode}:\n{log.read_text()[-4000:]}"
        with urllib.request.urlopen(f"{prometheus}/api/v1/query?query={query}", timeout=5) as response:
            if json.load(response)["data"]["result"]:
                return
        time.sleep(0.5)
    raise AssertionError(f"Prometheus has no {query} after {timeout_s} s")


def require_prometheus() -> None:
    if shutil.which("prometheus") is None:
        missing("the installed stack's monitoring needs the prometheus binary (apt-get install prometheus)")


# --- the wheel -----------------------------------------------------------------------------------------------------


def test_the_wheel_carries_every_file_the_commands_read(built_wheel: Path) -> None:
    with zipfile.ZipFile(built_wheel) as archive:
        names = set(archive.namelist())
    for folder, packaged in SHIPPED.items():
        shipped = {
            path.relative_to(REPO / folder).as_posix()
            for path in (REPO / folder).rglob("*")
            if path.is_file() and "__pycache__" not in path.parts
        }
        assert shipped, folder
        assert {f"app/{packaged}/{name}" for name in shipped} <= names, f"{folder}/ is not all in the wheel"
    assert not [name for name in names if "__pycache__" in name or name.endswith(".pyc")]


def test_the_installed_package_is_the_one_that_runs(installed: Installation, tmp_path: Path) -> None:
    where = installed.run(
        "python", "-c", "import app, app.stack.resources as r; print(app.__file__, r.locustfile())", cwd=tmp_path
    )
    assert where.returncode == 0, where.stderr
    package, locustfile = where.stdout.split()
    assert Path(package).is_relative_to(installed.venv), "imported from the checkout, not the install"
    assert Path(locustfile).is_relative_to(installed.venv)
    version = installed.run("fleetbed", "--version", cwd=tmp_path)
    assert version.stdout.strip() == f"fleetbed {VERSION}", "the version comes from the package metadata"
    printed = installed.run("fleetbed", "locustfile", cwd=tmp_path)
    assert printed.returncode == 0, printed.stderr
    assert Path(printed.stdout.strip()) == Path(locustfile)
    assert Path(printed.stdout.strip()).is_file()
    assert not (tmp_path / ".fleetbed").exists(), "`fleetbed locustfile` must not create a data dir"


def test_the_version_reported_is_the_installed_distributions(tmp_path: Path) -> None:
    """A wheel built with another version than the checkout's says that version: nothing in the code repeats it."""
    source = tmp_path / "source"
    source.mkdir()
    shutil.copy(REPO / "README.md", source)
    for folder in ("app", *SHIPPED):
        shutil.copytree(REPO / folder, source / folder, ignore=shutil.ignore_patterns("__pycache__"))
    other = f"{VERSION}.post999"
    text = (REPO / "pyproject.toml").read_text()
    (source / "pyproject.toml").write_text(text.replace(f'version = "{VERSION}"', f'version = "{other}"', 1))
    wheel = build_wheel(source, tmp_path / "dist")
    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(target), str(wheel)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    reported = subprocess.run(
        [sys.executable, "-m", "app", "--version"],
        cwd=tmp_path,
        env={**clean_env(), "PYTHONPATH": str(target)},
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert reported.stdout.strip() == f"fleetbed {other}", reported.stderr


# --- the main job and its companions, from another directory ---------------------------------------------------


@pytest.fixture
def elsewhere(tmp_path: Path) -> Iterator[Path]:
    """A directory outside the checkout to run from; the embedded cluster made there is removed afterwards (as
    root, it lives under /var/lib/fleetbed and `.fleetbed/postgres.location` says where)."""
    yield tmp_path
    pointer = tmp_path / ".fleetbed" / "postgres.location"
    if pointer.exists():
        shutil.rmtree(pointer.read_text().strip(), ignore_errors=True)


def test_the_main_job_runs_from_the_installed_wheel(installed: Installation, elsewhere: Path) -> None:
    """As root (CI) the virtual environment sits in a folder only root can enter, so the embedded server also runs
    from its shared copy under /var/lib/fleetbed, bundled libraries included."""
    require_prometheus()
    result = installed.run(
        "fleetbed", "experiment", "--devices", "10", "--duration", "20s", "--interval", "1s", "--out", "run",
        cwd=elsewhere, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-4000:]
    run = elsewhere / "run"
    assert (run / "report.html").stat().st_size > 0
    summary = json.loads((run / "summary.json").read_text())
    assert summary["bottleneck"]["sentence"]
    config = yaml.safe_load((run / "prometheus.yml").read_text())
    assert config["rule_files"], "the installed monitoring rules reach the run's Prometheus"
    assert all(Path(rule).is_relative_to(installed.venv) for rule in config["rule_files"])
    with (run / "prometheus.csv").open() as exported:
        recorded = {row["query"] for row in csv.DictReader(exported)}
    assert "latency_p95_seconds" in recorded, "a recording rule's series is in the export"
    rendered = installed.run("fleetbed", "report", str(run), "-o", str(elsewhere / "again.html"), cwd=elsewhere)
    assert rendered.returncode == 0, rendered.stderr
    assert (elsewhere / "again.html").stat().st_size > 0


def test_up_answers_on_every_url_then_stops_on_ctrl_c(installed: Installation, elsewhere: Path) -> None:
    require_prometheus()
    ports = {name: free_port() for name in ("service", "web", "metrics", "prometheus")}
    argv = [
        installed.bin("fleetbed"), "up", "--port", str(ports["service"]), "--web-port", str(ports["web"]),
        "--locust-metrics-port", str(ports["metrics"]), "--prometheus-port", str(ports["prometheus"]),
    ]  # fmt: skip
    log = elsewhere / "up.log"
    with started(argv, elsewhere, installed.env(), log) as up:
        answers(f"http://127.0.0.1:{ports['service']}/readyz", up, log)
        answers(f"http://127.0.0.1:{ports['web']}/", up, log)
        prometheus = f"http://127.0.0.1:{ports['prometheus']}"
        answers(f"{prometheus}/-/ready", up, log)
        with urllib.request.urlopen(f"{prometheus}/api/v1/rules", timeout=5) as response:
            groups = json.load(response)["data"]["groups"]
        assert groups, "Prometheus started by the installed `up` loaded the shipped rules"
        scraped(prometheus, "up", up, log)
        exported = installed.run(
            "fleetbed", "export", "--prometheus", prometheus, "--start", "now-2m", "--quiet",
            "--query", "up=up", "-o", "up.csv", cwd=elsewhere,
        )  # fmt: skip
        assert exported.returncode == 0, exported.stderr
        assert "up," in (elsewhere / "up.csv").read_text()
        os.killpg(up.pid, signal.SIGINT)
        assert up.wait(timeout=STOP_TIMEOUT_S) == 0, log.read_text()[-4000:]
        assert session_empties(up), "up left processes running after Ctrl-C"


def test_locust_runs_the_installed_locustfile_against_the_installed_service(
    installed: Installation, pg_url: str, tmp_path: Path
) -> None:
    port = free_port()
    service_url = f"http://127.0.0.1:{port}"
    env = installed.env(FLEETBED_DATABASE_URL=pg_url, FLEETBED_PORT=str(port))
    log = tmp_path / "serve.log"
    with started([installed.bin("fleetbed"), "serve"], tmp_path, env, log) as serve:
        answers(f"{service_url}/readyz", serve, log)
        locustfile = installed.run("fleetbed", "locustfile", cwd=tmp_path).stdout.strip()
        fleet = installed.run(
            "locust", "-f", locustfile, "--headless", "-H", service_url, "-u", "4", "-r", "4", "-t", "4s",
            "--device-interval", "1", "--csv", "fleet", "--only-summary", cwd=tmp_path, timeout=120,
        )  # fmt: skip
        assert fleet.returncode == 0, fleet.stderr[-4000:]
    with (tmp_path / "fleet_stats.csv").open() as stats:
        total = next(row for row in csv.DictReader(stats) if row["Name"] == "Aggregated")
    assert int(total["Request Count"]) > 0
    assert int(total["Failure Count"]) == 0


# --- the image, rebuilt from the Dockerfile ------------------------------------------------------------------------


@pytest.fixture(scope="session")
def image(tmp_path_factory: pytest.TempPathFactory) -> Image:
    return replay(REPO / "Dockerfile", REPO, tmp_path_factory.mktemp("image"))


def test_the_dockerfile_names_only_paths_the_replay_reproduces() -> None:
    assert foreign_paths(REPO / "Dockerfile") == []


def test_the_dependencies_are_a_layer_of_their_own_before_the_code() -> None:
    """The final stage installs the dependencies from pyproject.toml alone; the code arrives only as the wheel."""
    steps = instructions(REPO / "Dockerfile")
    final = steps[max(i for i, (keyword, _) in enumerate(steps) if keyword == "FROM") :]
    copied = [arguments.split()[:-1] for keyword, arguments in final if keyword == "COPY"]
    from_context = [sources for sources in copied if not sources[0].startswith("--from=")]
    assert from_context == [["pyproject.toml"]], "of the build context, only pyproject.toml enters the final stage"
    assert [sources[0] for sources in copied if sources not in from_context] == ["--from=wheel"], "then the wheel"
    runs = [arguments for keyword, arguments in final if keyword == "RUN"]
    dependencies = next(i for i, run in enumerate(runs) if "--requirement" in run)
    wheel = next(i for i, run in enumerate(runs) if "fleetbed-*.whl" in run)
    assert dependencies < wheel


def test_the_image_installs_the_wheel_without_fetching_dependencies_again(image: Image) -> None:
    (output,) = [out for run, out in image.stage.outputs if "fleetbed-*.whl" in run]
    collected = [line for line in output.splitlines() if line.startswith("Collecting")]
    assert collected == [], f"the wheel's step installed dependencies the layer before missed: {collected}"


def test_the_image_runs_its_commands_and_finds_the_locustfile(image: Image) -> None:
    env, cwd = image.env(), image.stage.cwd
    for command in (["experiment", "--help"], ["up", "--help"], ["--version"]):
        result = subprocess.run(
            [*image.entrypoint, *command], cwd=cwd, env=env, capture_output=True, text=True, check=False, timeout=60
        )
        assert result.returncode == 0, f"{command}: {result.stderr}"
    compose = yaml.safe_load((REPO / "compose.yaml").read_text())
    locustfile = image.stage.path(compose["x-locust"]["environment"]["LOCUST_LOCUSTFILE"])
    assert locustfile.is_file(), "compose's LOCUST_LOCUSTFILE exists in the image"
    printed = subprocess.run(
        [*image.entrypoint, "locustfile"], cwd=cwd, env=env, capture_output=True, text=True, check=False, timeout=60
    )
    assert Path(printed.stdout.strip()).resolve() == locustfile.resolve(), "one copy, found both ways"
    users = subprocess.run(
        ["locust", "-f", str(locustfile), "--list"], cwd=cwd, env=env, capture_output=True, text=True, timeout=60
    )
    assert users.returncode == 0, users.stderr
    assert "Kettle" in users.stdout, "the locustfile and its `_` modules import from the installed folder"


def test_the_image_serves_as_its_cmd_and_passes_its_healthcheck(image: Image, pg_url: str) -> None:
    assert image.entrypoint == ["fleetbed"]
    assert image.healthcheck[0] == "python", "the image's python: the venv's, first on PATH"
    port = free_port()
    env = image.env(FLEETBED_DATABASE_URL=pg_url, FLEETBED_PORT=str(port))
    log = image.stage.cwd / "cmd.log"

    def healthcheck() -> int:
        return subprocess.run(image.healthcheck, env=env, capture_output=True, check=False, timeout=30).returncode

    with started([*image.entrypoint, *image.cmd], image.stage.cwd, env, log) as service:
        answers(f"http://127.0.0.1:{port}/readyz", service, log)
        assert healthcheck() == 0
        service.send_signal(signal.SIGTERM)  # what `docker stop` sends
        assert service.wait(timeout=STOP_TIMEOUT_S) == 0, log.read_text()[-4000:]
        assert session_empties(service), "the service left processes running after SIGTERM"
    assert healthcheck() != 0, "the health check fails once nothing serves"
