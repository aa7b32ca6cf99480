"""The request boundary: the JSON error contract, and request metrics.

Every failure leaves as `{"error": code, "message": ...}`. Domain errors map to their status, aiohttp's
HTTP errors (unknown route, wrong method, body too large) to theirs, database errors by SQLSTATE class
(`app.database_errors`: 503 with Retry-After for conditions that pass, counted and logged once per interval).
Anything else is a bug: logged with its traceback, answered 500 with no internals.
"""

from __future__ import annotations

import asyncio
import logging
import time

from aiohttp import HttpVersion11, web
from aiohttp.typedefs import Handler, Middleware

from app.database_errors import DatabaseFaults, is_database_error
from app.errors import FleetbedError, InternalError
from app.metrics.requests import RequestMetrics
from app.metrics.service import ServiceMetrics
from app.responses import json_response

log = logging.getLogger(__name__)


_HTTP_CODES = {
    400: ("bad_request", "the request is malformed"),
    404: ("not_found", "no such endpoint; GET /openapi.json lists them"),
    405: ("method_not_allowed", "this endpoint does not accept that method; see GET /openapi.json"),
    413: ("payload_too_large", "the body is over the size limit; send at most {limit} bytes per request"),
    415: ("unsupported_media_type", "send the body as application/json"),
}


def http_error_response(exc: web.HTTPException, max_body_bytes: int) -> web.Response:
    code, message = _HTTP_CODES.get(exc.status, ("http_error", exc.reason))
    headers = {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else None
    return json_response(
        {"error": code, "message": message.format(limit=max_body_bytes)}, status=exc.status, headers=headers
    )


def error_response(request: web.Request, exc: Exception, max_body_bytes: int, faults: DatabaseFaults) -> web.Response:
    """The JSON error contract for anything a handler raised (below 400, aiohttp's own exceptions pass through)."""
    if isinstance(exc, FleetbedError):
        return json_response(exc.body(), status=exc.status, headers=exc.headers())
    if isinstance(exc, web.HTTPException):
        return http_error_response(exc, max_body_bytes)
    if is_database_error(exc):
        unavailable = faults.report(exc, f"{request.method} {route_label(request)}")
        if unavailable is not None:
            return json_response(unavailable.body(), status=unavailable.status, headers=unavailable.headers())
        return _internal_error()
    log.error("unexpected error in %s %s", request.method, request.path, exc_info=exc)
    return _internal_error()


def _internal_error() -> web.Response:
    error = InternalError()
    return json_response(error.body(), status=error.status)


async def expect_handler(request: web.Request) -> web.StreamResponse | None:
    """`Expect: 100-continue` is met; any other expectation is a 417 in the JSON contract. (aiohttp's own handler
    runs before any middleware, echoes the header in plain text, and answers 500 when its bytes are not UTF-8.)"""
    if request.version != HttpVersion11:
        return None
    if request.headers.get("Expect", "").lower() == "100-continue":
        await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        request.writer.output_size = 0  # the interim answer is not part of the response's size
        return None
    return json_response(
        {"error": "expectation_failed", "message": "the only expectation this service meets is 100-continue"},
        status=417,
    )


def route_label(request: web.Request) -> str:
    """The route template that matched, or a fixed label: unbounded paths must not become label values."""
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else "unmatched"


def boundary_middleware(metrics: ServiceMetrics, max_body_bytes: int) -> Middleware:
    """The request boundary, in one layer (each layer costs every request): errors mapped, request recorded."""
    requests = metrics.requests
    faults = metrics.database_faults

    @web.middleware
    async def boundary(request: web.Request, handler: Handler) -> web.StreamResponse:
        started = time.perf_counter()
        try:
            response = await handler(request)
        except asyncio.CancelledError:
            raise
        except web.HTTPException as exc:
            if exc.status >= 400:
                response = error_response(request, exc, max_body_bytes, faults)
            else:
                _record(requests, request, exc.status, started)
                raise
        except Exception as exc:
            response = error_response(request, exc, max_body_bytes, faults)
        _record(requests, request, response.status, started)
        return response

    return boundary


def _record(requests: RequestMetrics, request: web.Request, status: int, started: float) -> None:
    method = request.method if request.method in _KNOWN_METHODS else "OTHER"
    requests.record(method, route_label(request), status, time.perf_counter() - started)


_KNOWN_METHODS = frozenset({"GET", "POST", "PUT", "DELETE", "HEAD", "OPTIONS", "PATCH"})
