"""`fleetbed up` as a user runs it: every URL it prints answers, and Ctrl-C leaves nothing listening."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from app.stack.prometheus_server import INSTALL_HINT, prometheus_binary
from tests.support.processes import free_port
from tests.support.requirements import missing

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


def test_up_serves_every_part_and_ctrl_c_stops_them(tmp_path: Path) -> None:
    if prometheus_binary() is None:
        missing(INSTALL_HINT)
    ports = {name: free_port() for name in ("service", "web", "metrics", "prometheus")}
    env = {key: value for key, value in os.environ.items() if not key.startswith("FLEETBED_")}
    env["FLEETBED_DATA_DIR"] = str(tmp_path / "data")
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
        text = log.read_text()
        assert "operator token" in text, text
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
        process.send_signal(signal.SIGINT)
        assert process.wait(60) == 0, log.read_text()
        assert [name for name, port in ports.items() if listening(port)] == []
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
