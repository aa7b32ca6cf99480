"""Bytes that are not HTTP get the JSON error contract too.

aiohttp's HTTP parser refuses a bad request line, header, chunk or method before any handler or middleware runs,
and its protocol answers in plain text (`400, message: ...`). In the service's own processes that answer is
replaced by `{"error": "bad_http", "message": ...}`: what the parser found wrong, and what a request must look
like. The parser's own status stays (400, or 413 for a line or header over its limit) and the connection is
closed, as aiohttp does.
"""

from __future__ import annotations

from typing import Any

from aiohttp.web_protocol import RequestHandler

from app.errors import InternalError
from app.responses import json_response

HOW_TO_FIX = (
    "send an HTTP/1.1 request: a line `METHOD /path HTTP/1.1`, header lines `Name: value` of visible ASCII, and a "
    "body of the length its Content-Length (or chunked encoding) says; this service speaks plain HTTP, not TLS"
)


def _reason(exc: BaseException | None, message: str | None) -> str:
    found = getattr(exc, "message", None) or message or (str(exc) if exc else "") or "the request could not be read"
    text = str(found).strip().split(": bytearray(", 1)[0]  # the parser echoes what it read: not worth repeating
    return text if len(text) <= 160 else text[:157] + "..."


def answer_in_json() -> None:
    """From now on, this process answers what the HTTP parser refuses in the JSON error contract."""
    plain = RequestHandler.handle_error
    if getattr(plain, "fleetbed_json", False):
        return

    def handle_error(
        self: RequestHandler,
        request: Any,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> Any:
        plain(self, request, status, exc, message)  # logs it, and refuses once bytes of an answer were sent
        if status >= 500:
            body = InternalError().body()
        else:
            body = {"error": "bad_http", "message": f"not a valid HTTP request ({_reason(exc, message)}): {HOW_TO_FIX}"}
        answer = json_response(body, status=status)
        answer.force_close()
        return answer

    handle_error.fleetbed_json = True  # type: ignore[attr-defined]
    RequestHandler.handle_error = handle_error  # type: ignore[method-assign]


__all__ = ["answer_in_json"]
