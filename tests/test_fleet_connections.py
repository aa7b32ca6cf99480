"""The grouped devices' connections. The lean HTTP connection against a scripted server: keep-alive, responses
that take the fast path and responses that need the full parser (chunked, split across reads, interim 1xx),
`Connection: close`, a kept-alive connection the server dropped, and no server at all; every request reported
once to Locust. And the open-file limit following the number of connections."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from _lean_http import LeanConnection

JSON_OK = b'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 12\r\n\r\n{"ok": true}'
Reply = Callable[[socket.socket, bytes], bool]  # sends the answer to one request; False closes the connection


class RecordedRequests:
    """Stands in for Locust's `events.request` hook: what the connection reported, in order."""

    def __init__(self) -> None:
        self.fired: list[dict[str, Any]] = []

    def fire(self, **event: Any) -> None:
        self.fired.append(event)


class ScriptedServer:
    """Accepts connections on a real socket and answers each request with the next scripted reply."""

    def __init__(self, replies: list[Reply]) -> None:
        self.replies = list(replies)
        self.requests: list[bytes] = []
        self.connections = 0
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.thread = threading.Thread(target=self._serve, daemon=True)

    def _serve(self) -> None:
        while self.replies:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.connections += 1
            with conn:
                while self.replies:
                    request = self._read_request(conn)
                    if request is None:
                        break
                    self.requests.append(request)
                    if not self.replies.pop(0)(conn, request):
                        break

    @staticmethod
    def _read_request(conn: socket.socket) -> bytes | None:
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = conn.recv(65536)
            if not chunk:
                return None
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":")[1])
                while len(body) < length:
                    body += conn.recv(65536)
        return data


@contextmanager
def scripted(replies: list[Reply]) -> Iterator[ScriptedServer]:
    server = ScriptedServer(replies)
    server.thread.start()
    try:
        yield server
    finally:
        server.listener.close()
        server.thread.join(timeout=5)


def send(payload: bytes, keep: bool = True) -> Reply:
    def reply(conn: socket.socket, request: bytes) -> bool:
        conn.sendall(payload)
        return keep

    return reply


def send_in_parts(*parts: bytes) -> Reply:
    def reply(conn: socket.socket, request: bytes) -> bool:
        for part in parts:
            conn.sendall(part)
            time.sleep(0.05)
        return True

    return reply


def connection(server: ScriptedServer, events: RecordedRequests) -> LeanConnection:
    return LeanConnection(f"http://127.0.0.1:{server.port}", events, timeout_s=5.0, connect_timeout_s=2.0)


def test_keep_alive_and_the_request_sent() -> None:
    events = RecordedRequests()
    with scripted([send(JSON_OK), send(b"HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\n{}")]) as server:
        client = connection(server, events)
        with client.get("/command", headers={"Authorization": "Bearer t"}, name="/command") as response:
            assert (response.status_code, response.json()) == (200, {"ok": True})
        with client.post("/measurement", data=b'{"a": 1}', headers={}, name="/measurement") as response:
            assert response.status_code == 201
        client.close()
    assert server.connections == 1, "both requests on one kept-alive connection"
    get, post = server.requests
    assert get.startswith(b"GET /command HTTP/1.1\r\nHost: 127.0.0.1:")
    assert b"Authorization: Bearer t\r\n" in get
    assert post.startswith(b"POST /measurement HTTP/1.1\r\n")
    assert post.endswith(b'Content-Length: 8\r\n\r\n{"a": 1}')
    assert [(e["request_type"], e["name"], e["exception"]) for e in events.fired] == [
        ("GET", "/command", None),
        ("POST", "/measurement", None),
    ]
    assert events.fired[0]["response_length"] == 12


@pytest.mark.parametrize(
    "reply",
    [
        pytest.param(
            send(b'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n{"ok"\r\n7\r\n: true}\r\n0\r\n\r\n'),
            id="chunked",
        ),
        pytest.param(send_in_parts(b"HTTP/1.1 200 OK\r\nContent-Length: 12\r\n", b'\r\n{"ok"', b": true}"), id="split"),
        pytest.param(send(b"HTTP/1.1 100 Continue\r\n\r\n" + JSON_OK), id="interim-1xx"),
        pytest.param(send(b'HTTP/1.1 200 OK\r\ncontent-length:12\r\n\r\n{"ok": true}'), id="no-space-lowercase"),
    ],
)
def test_responses_beyond_the_fast_path_are_parsed_in_full(reply: Reply) -> None:
    events = RecordedRequests()
    with scripted([reply, send(JSON_OK)]) as server:
        client = connection(server, events)
        for _ in range(2):
            with client.get("/command", headers={}, name="/command") as response:
                assert (response.status_code, response.json()) == (200, {"ok": True})
        client.close()
    assert server.connections == 1, "the connection stays usable after a fully parsed response"
    assert all(e["exception"] is None for e in events.fired)


def test_connection_close_and_a_dropped_keep_alive_reconnect() -> None:
    events = RecordedRequests()
    closing = b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 12\r\n\r\n" + b'{"ok": true}'
    # 1: answered with Connection: close; 2: answered, then the server drops the kept-alive connection;
    # 3: lands on the dropped connection, is retried once on a new one and answered.
    with scripted([send(closing, keep=False), send(JSON_OK, keep=False), send(JSON_OK)]) as server:
        client = connection(server, events)
        for _ in range(3):
            with client.get("/command", headers={}, name="/command") as response:
                assert response.status_code == 200, response.text
            time.sleep(0.05)
        client.close()
    assert server.connections == 3
    assert len(events.fired) == 3
    assert all(e["exception"] is None for e in events.fired)


def test_no_server_and_error_statuses_are_failures() -> None:
    events = RecordedRequests()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    client = LeanConnection(f"http://127.0.0.1:{port}", events, timeout_s=2.0, connect_timeout_s=1.0)
    with client.get("/command", headers={}, name="/command") as response:
        assert response.status_code == 0
        assert "refused" in response.text.lower()
    unavailable = send(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 2\r\n\r\n{}")
    with scripted([unavailable, send(b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 2\r\n\r\n{}")]) as server:
        client = connection(server, events)
        with client.get("/command", headers={}, name="/command") as response:
            assert response.status_code == 503
        with client.get("/command", headers={}, name="/command") as response:
            response.failure("login again")
        client.close()
    assert [str(e["exception"]) for e in events.fired][1:] == ["503", "login again"]
    assert str(events.fired[0]["exception"]).startswith("no response: ConnectionRefusedError")


def test_a_silent_server_times_out() -> None:
    events = RecordedRequests()
    with scripted([lambda conn, request: (time.sleep(1.5), True)[1]]) as server:
        client = LeanConnection(f"http://127.0.0.1:{server.port}", events, timeout_s=0.5, connect_timeout_s=1.0)
        started = time.monotonic()
        with client.get("/command", headers={}, name="/command") as response:
            assert response.status_code == 0
        assert time.monotonic() - started < 1.4
    assert str(events.fired[0]["exception"]) == "no response: TimeoutError: timed out"


OPEN_FILES_PROBE = """
import logging, resource, sys
logging.basicConfig(level=logging.WARNING, stream=sys.stdout, format="%(message)s")
from _fleet_user import ensure_open_files
resource.setrlimit(resource.RLIMIT_NOFILE, ({soft}, {hard}))
ensure_open_files({connections})
ensure_open_files({connections})
print("soft", resource.getrlimit(resource.RLIMIT_NOFILE)[0])
"""


@pytest.mark.parametrize(
    ("soft", "hard", "connections", "soft_after", "warned"),
    [
        pytest.param(128, 8192, 1000, 2512, False, id="raised-towards-the-hard-limit"),
        pytest.param(128, 512, 1000, 512, True, id="hard-limit-too-low-says-how-to-fix"),
        pytest.param(4096, 8192, 100, 4096, False, id="enough-already"),
    ],
)
def test_open_file_limit_follows_the_fleets_connections(
    soft: int, hard: int, connections: int, soft_after: int, warned: bool
) -> None:
    locustfiles = str(Path(__file__).resolve().parents[1] / "locustfiles")
    probe = OPEN_FILES_PROBE.format(soft=soft, hard=hard, connections=connections)
    result = subprocess.run(
        [sys.executable, "-c", probe],
        env={**os.environ, "PYTHONPATH": locustfiles},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert f"soft {soft_after}" in result.stdout
    warnings = [line for line in result.stdout.splitlines() if "ulimit -n" in line]
    assert len(warnings) == (1 if warned else 0), result.stdout
