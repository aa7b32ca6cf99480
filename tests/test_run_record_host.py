"""The Locust web UI's host field moves the load, never the run records: those (and the operator token with
them) go to the service fixed when Locust started."""

from __future__ import annotations

import http.server
import json
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.conftest import OPERATOR_TOKEN
from tests.support.fleet import LOCUSTFILE, running_service
from tests.support.processes import free_port


@contextmanager
def decoy() -> Iterator[tuple[str, list[str]]]:
    """A host that answers everything 404 and remembers every Authorization header it was sent."""
    seen: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def answer(self) -> None:
            seen.append(self.headers.get("Authorization", ""))
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()

        do_GET = do_POST = do_PUT = answer

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", seen
    finally:
        server.shutdown()
        server.server_close()


def wait_for(url: str, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            assert time.monotonic() < deadline, f"{url} did not answer"
            time.sleep(0.3)


def test_the_ui_host_field_never_gets_the_run_record_or_the_token(pg_url: str, tmp_path: Path) -> None:
    web_port = free_port()
    with running_service(pg_url, tmp_path / "data") as service, decoy() as (decoy_url, seen):
        log = tmp_path / "locust.log"
        with log.open("wb") as output:
            locust = subprocess.Popen(
                [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "-H", service.url, "--web-host", "127.0.0.1",
                 "--web-port", str(web_port), "--prometheus-port", "0", "--snapshot-interval", "1"],
                cwd=tmp_path, stdout=output, stderr=subprocess.STDOUT,
                env={"PATH": "/usr/bin:/bin", "FLEETBED_OPERATOR_TOKEN": OPERATOR_TOKEN, "PYTHONUNBUFFERED": "1"},
            )  # fmt: skip
        try:
            ui = f"http://127.0.0.1:{web_port}"
            wait_for(ui)
            form = urllib.parse.urlencode({"user_count": 1, "spawn_rate": 1, "host": decoy_url}).encode()
            with urllib.request.urlopen(f"{ui}/swarm", data=form, timeout=10) as response:
                assert json.load(response)["success"], "the swarm started"
            deadline = time.monotonic() + 30
            while not seen and time.monotonic() < deadline:
                time.sleep(0.3)
            assert seen, "the load went to the host typed into the UI"
            time.sleep(2.0)  # a snapshot or two
            with urllib.request.urlopen(f"{ui}/stop", data=b"", timeout=10):
                pass
            time.sleep(1.0)
        finally:
            locust.terminate()
            locust.wait(30)
        request = urllib.request.Request(f"{service.url}/runs", headers={"Authorization": f"Bearer {OPERATOR_TOKEN}"})
        with urllib.request.urlopen(request, timeout=10) as response:
            runs = json.load(response)["runs"]
    assert len(runs) == 1, log.read_text()[-3000:]
    assert runs[0]["snapshots"] >= 1
    assert not [header for header in seen if OPERATOR_TOKEN in header], "the operator token went to the UI's host"
