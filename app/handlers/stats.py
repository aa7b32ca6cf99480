"""GET /stats: fleet totals and hourly water-temperature statistics."""

from __future__ import annotations

from aiohttp import web

from app.auth import identify
from app.db.stats import fleet_stats
from app.keys import POOL, SETTINGS
from app.query_params import integer_param
from app.responses import json_response

DEFAULT_HOURS = 24
MAX_HOURS = 24 * 31


def hours_param(request: web.Request) -> int:
    return integer_param(request, "hours", DEFAULT_HOURS, 1, MAX_HOURS)


async def get_stats(request: web.Request) -> web.Response:
    identify(request, request.app[SETTINGS])
    hours = hours_param(request)
    async with request.app[POOL].acquire() as conn:
        stats = await fleet_stats(conn, hours)
    return json_response(stats.as_json())
