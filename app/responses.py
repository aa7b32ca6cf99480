"""JSON responses, encoded with orjson."""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web


def encoded_json_response(body: bytes, status: int = 200) -> web.Response:
    """A body that is JSON already (e.g. cached)."""
    return web.Response(body=body, status=status, content_type="application/json")


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(body=orjson.dumps(body), status=status, headers=headers, content_type="application/json")
