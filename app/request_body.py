"""Reading request bodies: content type, size limit (enforced by aiohttp's client_max_size) and JSON."""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web

from app.errors import RequestTimeout, UnsupportedMedia
from app.keys import SETTINGS
from app.validation import decode_json

JSON_TYPES = frozenset({"application/json"})


async def read_json(request: web.Request, *, allow_empty: bool = False) -> Any:
    """The decoded JSON body; `{}` for an empty body when `allow_empty`. A stalled body ends in 408."""
    timeout_s = request.app[SETTINGS].body_timeout_s
    try:
        async with asyncio.timeout(timeout_s):
            body = await request.read()
    except TimeoutError:
        raise RequestTimeout(
            f"the body did not arrive within {timeout_s:g} s; send the whole request at once"
        ) from None
    if allow_empty and not body.strip():
        return {}
    if request.content_type not in JSON_TYPES:
        raise UnsupportedMedia(
            f"the body is {request.content_type or 'untyped'}; send it with Content-Type: application/json"
        )
    return decode_json(body)
