"""`fleetbed up` as a user runs it: every URL it prints answers, its Prometheus scrapes the service, the generator,
node_exporter and postgres_exporter (with the shipped queries), and Ctrl-C leaves nothing listening. Without the
exporters installed, it says which are missing instead of skipping them silently."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from app.stack.exporters import NODE_EXPORTER, POSTGRES_EXPORTER
from app.stack.prometheus_server import INSTALL_HINT, prometheus_binary
from tests.support.processes import free_port
from tests.support.requirements import installed, missing

REPO = Path(__file__).resolve().parents[1]


def answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def listening(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


def scraped(prometheus_url: str, expr: str) -> bool:
    query = urllib.parse.urlencode({"query": expr})
    try:
        with urllib.request.urlopen(f"{prometheus_url}/api/v1/query?{query}", timeout=5) as response:
            return bool(json.load(response)["data"]["result"])
    except OSError:
        return False


@contextmanager
def running_up(tmp_path: Path, ports: dict[str, int], path: str | None = None) -> Iterator[subprocess.Popen[bytes]]:
    """`fleetbed up` on `ports`, up (its URLs printed), with PATH = `path` when given; always stopped at the end."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("FLEETBED_")}
    env["FLEETBED_DATA_DIR"] = str(tmp_path / "data")
    if path is not None:
        env["PATH"] = path
    log = tmp_path / "up.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "app", "up", "--port", str(ports["service"]), "--web-port", str(ports["web"]),
             "--locust-metrics-port", str(ports["metrics"]), "--prometheus-port", str(ports["prometheus"])],
            env=env, cwd=REPO, stdout=output, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 90
        while "operator token" not in log.read_text() and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.3)
        assert "operator token" in log.read_text(), log.read_text()
        yield process
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_up_serves_every_part_and_ctrl_c_stops_them(tmp_path: Path) -> None:
    if prometheus_binary() is None:
        missing(INSTALL_HINT)
    for names in (NODE_EXPORTER, POSTGRES_EXPORTER):
        installed(*names)
    ports = {name: free_port() for name in ("service", "web", "metrics", "prometheus")}
    log = tmp_path / "up.log"
    with running_up(tmp_path, ports) as process:
        text = log.read_text()
        token = (tmp_path / "data" / "secrets" / "operator-token").read_text().strip()
        assert token in text
        urls = {
            "service": f"http://127.0.0.1:{ports['service']}/readyz",
            "web": f"http://127.0.0.1:{ports['web']}/",
            "metrics": f"http://127.0.0.1:{ports['metrics']}/metrics",
            "prometheus": f"http://127.0.0.1:{ports['prometheus']}/-/ready",
        }
        for name, url in urls.items():
            assert f"127.0.0.1:{ports[name]}" in text, name
            assert answers(url), url
        exporters = [line.split()[-1] for line in text.splitlines() if line.strip().startswith(("node_", "postgres_"))]
        assert len(exporters) == 2, text
        assert all(answers(url) for url in exporters), exporters
        # Prometheus scrapes both, postgres_exporter with the shipped queries (wait events by class).
        prometheus_url = f"http://127.0.0.1:{ports['prometheus']}"
        deadline = time.monotonic() + 60
        wanted = ['up{job="node"} == 1', 'up{job="postgres"} == 1', "fleetbed_pg_backends_count"]
        while not all(scraped(prometheus_url, expr) for expr in wanted) and time.monotonic() < deadline:
            time.sleep(1)
        assert [expr for expr in wanted if not scraped(prometheus_url, expr)] == [], text
        process.send_signal(signal.SIGINT)
        assert process.wait(60) == 0, log.read_text()
        exporter_ports = [int(url.rsplit(":", 1)[1].split("/")[0]) for url in exporters]
        assert [name for name, port in ports.items() if listening(port)] == []
        assert [port for port in exporter_ports if listening(port)] == []
    # The session's own report sees this machine, as an experiment's does (its roles are written when it starts).
    (session,) = (tmp_path / "data" / "runs").glob("up-*")
    roles = json.loads((session / "hosts.json").read_text())["roles"]
    assert roles == {"local": ["service", "generator", "database"]}, roles


def test_up_names_the_exporters_it_cannot_find(tmp_path: Path) -> None:
    if prometheus_binary() is None:
        missing(INSTALL_HINT)
    # Everything on PATH but the exporters (the commands fleetbed runs by name, such as useradd, stay).
    without_exporters = tmp_path / "bin"
    without_exporters.mkdir()
    for directory in os.environ["PATH"].split(os.pathsep):
        for entry in Path(directory).glob("*") if Path(directory).is_dir() else []:
            link = without_exporters / entry.name
            if entry.name not in (*NODE_EXPORTER, *POSTGRES_EXPORTER) and not link.exists():
                link.symlink_to(entry)
    ports = {name: free_port() for name in ("service", "web", "metrics", "prometheus")}
    with running_up(tmp_path, ports, path=str(without_exporters)) as process:
        text = (tmp_path / "up.log").read_text()
        process.send_signal(signal.SIGINT)
        assert process.wait(60) == 0, (tmp_path / "up.log").read_text()
    assert "node_exporter not installed (Debian: apt-get install prometheus-node-exporter" in text, text
    assert "postgres_exporter not installed (Debian: apt-get install prometheus-postgres-exporter" in text, text
