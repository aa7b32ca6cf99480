"""A lean HTTP session for grouped devices: geventhttpclient's pool used directly, each request reported to
Locust through `events.request` (so stats, failures, the UI and workers behave as with FastHttpUser).

It offers only what a device needs from FastHttpSession (`get`/`post` with `name`, `headers`, `data` and
`catch_response=True` semantics: a response context with `status_code`, `json()`, `text` and `failure()`), and
skips the rest of its per-request machinery, which is most of the generator's CPU per request.
"""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import urlsplit

import orjson
from geventhttpclient import HTTPClient


class HTTPStatusError(Exception):
    """The service answered with a status the device treats as a failure."""


class LeanResponse:
    __slots__ = ("_failure", "content", "method", "name", "session", "started", "status_code")

    def __init__(self, session: LeanSession, method: str, name: str) -> None:
        self.session = session
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
            failure = HTTPStatusError(f"{self.status_code}")
        self.session.request_event.fire(
            request_type=self.method,
            name=self.name,
            response_time=(time.perf_counter() - self.started) * 1000.0,
            response_length=len(self.content),
            exception=failure,
            context={},
        )


class LeanSession:
    """One connection pool (`concurrency` connections) to the service, shared by a user's devices."""

    def __init__(self, base_url: str, concurrency: int, request_event: Any, timeout_s: float = 30.0) -> None:
        parts = urlsplit(base_url)
        self.client = HTTPClient(
            parts.hostname or "127.0.0.1",
            port=parts.port or (443 if parts.scheme == "https" else 80),
            ssl=parts.scheme == "https",
            insecure=True,
            concurrency=concurrency,
            connection_timeout=min(10.0, timeout_s),
            network_timeout=timeout_s,
        )
        self.prefix = parts.path.rstrip("/")
        self.request_event = request_event

    def _request(self, method: str, path: str, body: bytes | None, headers: dict[str, str], name: str) -> LeanResponse:
        response = LeanResponse(self, method, name)
        try:
            raw = self.client.request(method, self.prefix + path, body=body, headers=headers)
            try:
                response.status_code = raw.status_code
                response.content = raw.read()
            finally:
                raw.release()
        except Exception as exc:  # connection refused, reset, timeout: the device sees "no response"
            response.status_code = 0
            response.content = str(exc).encode()
        return response

    def get(self, path: str, *, headers: dict[str, str], name: str, catch_response: bool = True) -> LeanResponse:
        return self._request("GET", path, None, headers, name)

    def post(
        self, path: str, *, data: bytes, headers: dict[str, str], name: str, catch_response: bool = True
    ) -> LeanResponse:
        return self._request("POST", path, data, headers, name)

    def close(self) -> None:
        self.client.close()
