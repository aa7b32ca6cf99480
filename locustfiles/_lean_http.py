"""A lean HTTP client for grouped devices: one keep-alive HTTP/1.1 connection, owned by one worker greenlet,
each request reported to Locust through `events.request` (so stats, failures, the UI and workers behave as with
FastHttpUser).

It offers only what a device needs from FastHttpSession (`get`/`post` with `name`, `headers`, `data` and
`catch_response=True` semantics: a response context with `status_code`, `json()`, `text` and `failure()`) and
skips the rest of its per-request machinery (connection-pool semaphore, liveness probe, header objects, a timer
per request), which was most of the generator's CPU per request. A complete response with a Content-Length,
the common case, is taken from the first read; anything else (partial, chunked, interim 1xx) goes through
geventhttpclient's parser with the bytes already read.
"""

from __future__ import annotations

import contextlib
import socket
import time
from typing import Any
from urllib.parse import urlsplit

import gevent.socket
import gevent.ssl
import orjson
from geventhttpclient.response import HTTPConnectionClosed, HTTPSocketResponse

READ_BLOCK = 65_536
CONTENT_LENGTH = b"\r\ncontent-length:"


class HTTPStatusError(Exception):
    """The service answered with a status the device treats as a failure."""


class LeanResponse:
    __slots__ = ("_failure", "content", "method", "name", "request_event", "started", "status_code")

    def __init__(self, request_event: Any, method: str, name: str) -> None:
        self.request_event = request_event
        self.method = method
        self.name = name
        self.started = time.perf_counter()
        self.status_code = 0
        self.content = b""
        self._failure: Exception | None = None

    def json(self) -> Any:
        return orjson.loads(self.content)

    @property
    def text(self) -> str:
        return self.content.decode(errors="replace")

    def failure(self, message: str) -> None:
        self._failure = HTTPStatusError(message)

    def __enter__(self) -> LeanResponse:
        return self

    def __exit__(self, *exc: object) -> None:
        failure = self._failure
        if failure is None and not 200 <= self.status_code < 400:
            failure = HTTPStatusError(str(self.status_code) if self.status_code else f"no response: {self.text}")
        self.request_event.fire(
            request_type=self.method,
            name=self.name,
            response_time=(time.perf_counter() - self.started) * 1000.0,
            response_length=len(self.content),
            exception=failure,
            context={},
        )


def read_response(sock: Any, method: str) -> tuple[int, bytes, bool]:
    """(status, body, keep the connection) of the response now arriving on `sock`."""
    data = sock.recv(READ_BLOCK)
    if not data:
        raise HTTPConnectionClosed("connection closed.")
    end = data.find(b"\r\n\r\n")
    if end > 0 and data.startswith(b"HTTP/1.1 ") and method != "HEAD":
        head = data[:end].lower()
        at = head.find(CONTENT_LENGTH)
        if at > 0 and b"\r\ntransfer-encoding:" not in head:
            line_end = head.find(b"\r\n", at + 2)
            length = int(head[at + len(CONTENT_LENGTH) : line_end if line_end > 0 else len(head)])
            body = data[end + 4 :]
            if len(body) == length:
                return int(data[9:12]), body, b"\r\nconnection: close" not in head
    parsed = HTTPSocketResponse(sock, block_size=READ_BLOCK, method=method, pre_buffered=data)
    body = parsed.read()
    keep = not parsed.should_close()
    parsed.release()
    return parsed.status_code, body, keep


class LeanConnection:
    """One keep-alive connection to the service, (re)opened on demand; not shared between greenlets."""

    def __init__(
        self, base_url: str, request_event: Any, timeout_s: float = 30.0, connect_timeout_s: float = 10.0
    ) -> None:
        parts = urlsplit(base_url)
        self.tls = parts.scheme == "https"
        self.address = (parts.hostname or "127.0.0.1", parts.port or (443 if self.tls else 80))
        self.host_line = f"Host: {parts.netloc}\r\n"
        self.prefix = parts.path.rstrip("/")
        self.request_event = request_event
        self.timeout_s = timeout_s
        self.connect_timeout_s = connect_timeout_s
        self.sock: Any = None

    def _connect(self) -> Any:
        sock = gevent.socket.create_connection(self.address, timeout=self.connect_timeout_s)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self.tls:
            context = gevent.ssl.create_default_context()
            context.check_hostname = False
            context.verify_mode = gevent.ssl.CERT_NONE
            sock = context.wrap_socket(sock, server_hostname=self.address[0])
        sock.settimeout(self.timeout_s)
        return sock

    def _request(self, method: str, path: str, body: bytes | None, headers: dict[str, str], name: str) -> LeanResponse:
        response = LeanResponse(self.request_event, method, name)
        head = f"{method} {self.prefix}{path} HTTP/1.1\r\n{self.host_line}"
        head += "".join(f"{key}: {value}\r\n" for key, value in headers.items())
        if body is not None:
            head += f"Content-Length: {len(body)}\r\n"
        message = (head + "\r\n").encode("latin-1") + (body or b"")
        for attempt in (1, 2):
            reused = self.sock is not None
            try:
                if self.sock is None:
                    self.sock = self._connect()
                self.sock.sendall(message)
                response.status_code, response.content, keep = read_response(self.sock, method)
                if not keep:
                    self.close()
                return response
            except (HTTPConnectionClosed, ConnectionResetError, BrokenPipeError) as exc:
                # A kept-alive connection the server has since closed: retry once on a fresh one (the request
                # was not taken; measurements are idempotent per (device, time) in any case).
                self.close()
                if not reused or attempt == 2:
                    return self._no_response(response, exc)
            except Exception as exc:  # refused, timed out, unparseable: the device sees "no response"
                self.close()
                return self._no_response(response, exc)
        return response

    @staticmethod
    def _no_response(response: LeanResponse, exc: Exception) -> LeanResponse:
        response.status_code = 0
        response.content = f"{type(exc).__name__}: {exc}".encode()
        return response

    def get(self, path: str, *, headers: dict[str, str], name: str, catch_response: bool = True) -> LeanResponse:
        return self._request("GET", path, None, headers, name)

    def post(
        self, path: str, *, data: bytes, headers: dict[str, str], name: str, catch_response: bool = True
    ) -> LeanResponse:
        return self._request("POST", path, data, headers, name)

    def close(self) -> None:
        sock, self.sock = self.sock, None
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.close()
