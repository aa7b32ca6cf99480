"""GET /stats: fleet totals and hourly water-temperature statistics."""

from __future__ import annotations

from aiohttp import web

from app.auth import identify
from app.db.stats import fleet_stats
from app.errors import FieldProblem, InvalidFields
from app.keys import POOL, SETTINGS
from app.responses import json_response

DEFAULT_HOURS = 24
MAX_HOURS = 24 * 31


def hours_param(request: web.Request) -> int:
    raw = request.query.get("hours")
    if raw is None:
        return DEFAULT_HOURS
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_HOURS:
        raise InvalidFields([FieldProblem("hours", f"must be an integer between 1 and {MAX_HOURS}")])
    return int(raw)


async def get_stats(request: web.Request) -> web.Response:
    identify(request, request.app[SETTINGS])
    hours = hours_param(request)
    async with request.app[POOL].acquire() as conn:
        stats = await fleet_stats(conn, hours)
    return json_response(stats.as_json())
