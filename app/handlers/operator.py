"""Operator endpoints: standing commands for devices, their metadata, and resetting a device's secret."""

from __future__ import annotations

import math
import uuid

from aiohttp import web

from app.auth import require_operator
from app.db.devices import Command, clear_command, device_exists, reset_secret, set_command, set_metadata
from app.errors import FieldProblem, InvalidFields, NotFound
from app.handlers.devices import default_command, parse_metadata
from app.keys import COMMANDS, POOL, SETTINGS
from app.request_body import read_json
from app.responses import json_response
from app.validation import path_uuid, reject_unknown, require_object

COMMAND_FIELDS = frozenset({"charge", "fill", "flush", "interval_s"})
MAX_INTERVAL_S = 86_400
MAX_FLUSH_PERCENT = 100


def path_device_id(request: web.Request) -> uuid.UUID:
    return path_uuid(request.match_info["device_id"], "device id", "use the UUID returned by POST /login")


def parse_command(document: object, default: Command) -> Command:
    """A full or partial command; fields left out take the fleet default."""
    body = require_object(document, "a command")
    reject_unknown(body, COMMAND_FIELDS)
    problems: list[FieldProblem] = []
    charge = body.get("charge", default.charge)
    fill = body.get("fill", default.fill)
    flush = body.get("flush", default.flush)
    interval_s = body.get("interval_s", default.interval_s)
    for name, value in (("charge", charge), ("fill", fill)):
        if not isinstance(value, bool):
            problems.append(FieldProblem(name, "must be true or false"))
    if flush is not None and (
        isinstance(flush, bool) or not isinstance(flush, int | float) or not math.isfinite(flush)
        or not 0 <= flush <= MAX_FLUSH_PERCENT
    ):  # fmt: skip
        problems.append(
            FieldProblem("flush", f"must be null or a number between 0 and {MAX_FLUSH_PERCENT} (percent of the tank)")
        )
    if isinstance(interval_s, float) and interval_s.is_integer():
        interval_s = int(interval_s)  # as in JSON Schema, 5.0 is an integer
    if isinstance(interval_s, bool) or not isinstance(interval_s, int) or not 1 <= interval_s <= MAX_INTERVAL_S:
        problems.append(FieldProblem("interval_s", f"must be an integer between 1 and {MAX_INTERVAL_S}"))
    if problems:
        raise InvalidFields(problems)
    return Command(charge, fill, None if flush is None else float(flush), interval_s)


async def put_command(request: web.Request) -> web.Response:
    settings = request.app[SETTINGS]
    require_operator(request, settings)
    device_id = path_device_id(request)
    command = parse_command(await read_json(request), default_command(settings))
    stored = await set_command(request.app[POOL], device_id, command)
    request.app[COMMANDS].invalidate(device_id)
    if not stored:
        raise NotFound(f"device {device_id} is not registered; devices register with POST /login")
    return json_response(command.as_json())


async def delete_command(request: web.Request) -> web.Response:
    settings = request.app[SETTINGS]
    require_operator(request, settings)
    device_id = path_device_id(request)
    pool = request.app[POOL]
    removed = await clear_command(pool, device_id)
    request.app[COMMANDS].invalidate(device_id)
    if not removed and not await device_exists(pool, device_id):
        raise NotFound(f"device {device_id} is not registered; devices register with POST /login")
    return json_response(default_command(settings).as_json())


async def put_metadata(request: web.Request) -> web.Response:
    """Replace a device's metadata: only the operator, or the device itself at its login, changes it."""
    require_operator(request, request.app[SETTINGS])
    device_id = path_device_id(request)
    metadata = parse_metadata(await read_json(request))
    if not await set_metadata(request.app[POOL], device_id, metadata):
        raise NotFound(f"device {device_id} is not registered; devices register with POST /login")
    return json_response({"device_id": str(device_id), "metadata": metadata})


async def delete_secret(request: web.Request) -> web.Response:
    """Forget a device's secret (lost with the device's storage, say): its next login is given a new one."""
    require_operator(request, request.app[SETTINGS])
    device_id = path_device_id(request)
    if not await reset_secret(request.app[POOL], device_id):
        raise NotFound(f"device {device_id} is not registered; devices register with POST /login")
    return json_response({"device_id": str(device_id), "secret": "reset: the device's next login gets a new one"})
