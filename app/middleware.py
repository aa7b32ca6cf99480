"""Middlewares: the JSON error contract, and request metrics.

Every failure leaves as `{"error": code, "message": ...}`. Domain errors map to their status, aiohttp's
HTTP errors (unknown route, wrong method, body too large) to theirs, a lost database to 503 with Retry-After.
Anything else is a bug: logged with its traceback, answered 500 with no internals.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import asyncpg
from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from app.db import DATABASE_UNAVAILABLE
from app.errors import FleetbedError, Unavailable
from app.metrics import ServiceMetrics
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


def error_middleware(max_body_bytes: int) -> Middleware:
    @web.middleware
    async def json_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            return await handler(request)
        except FleetbedError as exc:
            return json_response(exc.body(), status=exc.status, headers=exc.headers())
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            return http_error_response(exc, max_body_bytes)
        except asyncpg.UndefinedTableError:
            log.error("the database schema is not migrated (%s %s)", request.method, request.path)
            error = Unavailable("the database schema is not migrated yet; the operator must run `fleetbed migrate`", 5)
            return json_response(error.body(), status=error.status, headers=error.headers())
        except DATABASE_UNAVAILABLE as exc:
            log.warning("database unavailable during %s %s: %r", request.method, request.path, exc)
            error = Unavailable("the database is unavailable; retry after the delay in Retry-After")
            return json_response(error.body(), status=error.status, headers=error.headers())
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("unexpected error in %s %s", request.method, request.path)
            return json_response(
                {"error": "internal", "message": "an unexpected error occurred; it has been logged"},
                status=500,
            )

    return json_errors


def route_label(request: web.Request) -> str:
    """The route template that matched, or a fixed label: unbounded paths must not become label values."""
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else "unmatched"


def metrics_middleware(metrics: ServiceMetrics) -> Middleware:
    # Label children looked up once per (method, route, status): the label sets are bounded, the lookup is not free.
    counters: dict[tuple[str, str, int], Any] = {}
    durations: dict[tuple[str, str], Any] = {}

    @web.middleware
    async def record(request: web.Request, handler: Handler) -> web.StreamResponse:
        started = time.perf_counter()
        status = 500
        try:
            response = await handler(request)
            status = response.status
            return response
        except web.HTTPException as exc:
            status = exc.status
            raise
        finally:
            route = route_label(request)
            method = request.method if request.method in _KNOWN_METHODS else "OTHER"
            counter = counters.get((method, route, status))
            if counter is None:
                counter = counters[method, route, status] = metrics.requests.labels(method, route, str(status))
            duration = durations.get((method, route))
            if duration is None:
                duration = durations[method, route] = metrics.request_duration.labels(method, route)
            counter.inc()
            duration.observe(time.perf_counter() - started)

    return record


_KNOWN_METHODS = frozenset({"GET", "POST", "PUT", "DELETE", "HEAD", "OPTIONS", "PATCH"})
