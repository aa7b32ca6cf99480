"""Reference servers the service is measured against, run as `python -m bench._servers KIND --port P [--dsn D]`.

- `bare`: aiohttp returning a constant JSON document (GET) and reading the body then returning one (POST): the
  ceiling for any handler on this machine.
- `naive`: POST /measurement the way the original experiment stored readings: per request one transaction of a
  SELECT (does the device exist?) and an INSERT, same token check and validation as fleetbed.
"""

from __future__ import annotations

import argparse

import asyncpg
from aiohttp import web

from app.errors import FleetbedError
from app.responses import json_response
from app.tokens import bearer_token, verify_device_token
from app.validation import decode_json, parse_measurements

SECRET = b"b" * 48
CONSTANT = {"charge": False, "fill": False, "flush": None, "interval_s": 30}


def bare_app() -> web.Application:
    async def constant(request: web.Request) -> web.Response:
        return json_response(CONSTANT)

    async def constant_after_body(request: web.Request) -> web.Response:
        await request.read()
        return json_response({"accepted": 1, "duplicates": 0}, status=201)

    app = web.Application()
    app.router.add_get("/healthz", constant)
    app.router.add_get("/command", constant)
    app.router.add_post("/measurement", constant_after_body)
    return app


def naive_app(dsn: str) -> web.Application:
    app = web.Application()
    pool_key = web.AppKey("pool", asyncpg.Pool)

    async def pool_context(app: web.Application):  # type: ignore[no-untyped-def]
        app[pool_key] = await asyncpg.create_pool(dsn, min_size=10, max_size=10)
        yield
        await app[pool_key].close()

    async def store(request: web.Request) -> web.Response:
        try:
            device_id = verify_device_token(SECRET, bearer_token(request.headers.get("Authorization")))
            readings = parse_measurements(decode_json(await request.read()), 1000)
        except FleetbedError as exc:
            return json_response(exc.body(), status=exc.status)
        async with app[pool_key].acquire() as conn, conn.transaction():
            if not await conn.fetchval("SELECT EXISTS (SELECT 1 FROM device WHERE id = $1)", device_id):
                return json_response({"error": "not_found"}, status=404)
            for r in readings:
                await conn.execute(
                    "INSERT INTO measurement VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT DO NOTHING",
                    device_id, *r,
                )  # fmt: skip
        return json_response({"accepted": len(readings)}, status=201)

    app.cleanup_ctx.append(pool_context)

    async def healthz(request: web.Request) -> web.Response:
        return json_response({"status": "ok"})

    app.router.add_get("/healthz", healthz)
    app.router.add_post("/measurement", store)
    return app


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("kind", choices=["bare", "naive"])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--dsn")
    args = parser.parse_args()
    app = bare_app() if args.kind == "bare" else naive_app(args.dsn)
    web.run_app(app, host="127.0.0.1", port=args.port, print=None, access_log=None)


if __name__ == "__main__":
    main()
