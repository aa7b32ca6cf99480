"""A bare device endpoint for the generator benchmark: constant answers to /login, /command and /measurement,
no database, so the benchmark measures the load generator and not the service."""

from __future__ import annotations

import sys

from aiohttp import web

LOGIN = b'{"device_id": "00000000-0000-4000-8000-000000000000", "token": "v1.bench", "expires_at": 0}'
COMMAND = b'{"charge": false, "fill": false, "flush": null, "interval_s": %d}'


def create_app(interval_s: int) -> web.Application:
    command = COMMAND % interval_s

    async def login(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(body=LOGIN, content_type="application/json")

    async def get_command(request: web.Request) -> web.Response:
        return web.Response(body=command, content_type="application/json")

    async def post_measurement(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(body=b'{"accepted": 1, "duplicates": 0}', status=201, content_type="application/json")

    app = web.Application()
    app.add_routes(
        [web.post("/login", login), web.get("/command", get_command), web.post("/measurement", post_measurement)]
    )
    return app


if __name__ == "__main__":
    port, interval_s = int(sys.argv[1]), int(sys.argv[2])
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    web.run_app(create_app(interval_s), host="127.0.0.1", port=port, print=None, access_log=None, backlog=4096)
