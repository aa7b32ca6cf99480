"""Reading request bodies: content type, size limit (enforced by aiohttp's client_max_size) and JSON."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from app.errors import UnsupportedMedia
from app.validation import decode_json

JSON_TYPES = frozenset({"application/json"})


async def read_json(request: web.Request, *, allow_empty: bool = False) -> Any:
    """The decoded JSON body; `None` for an empty body when `allow_empty`."""
    body = await request.read()
    if allow_empty and not body.strip():
        return None
    if request.content_type not in JSON_TYPES:
        raise UnsupportedMedia(
            f"the body is {request.content_type or 'untyped'}; send it with Content-Type: application/json"
        )
    return decode_json(body)
