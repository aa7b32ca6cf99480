"""Device endpoints: log in, poll for the command, post measurements."""

from __future__ import annotations

import asyncio
import math
import secrets
import uuid
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any

from aiohttp import web

from app.auth import require_device
from app.db.devices import Command, LoginOutcome, login_device, pending_command, secret_hash
from app.errors import FieldProblem, Forbidden, InvalidFields, TooManyRequests, Unauthorized
from app.keys import COMMANDS, INGEST, LOGIN_LIMIT, METRICS, POOL, SETTINGS
from app.request_body import read_json
from app.responses import encoded_json_response, json_response
from app.settings import Settings
from app.tokens import issue_device_token, tokens_equal
from app.validation import parse_measurements, parse_uuid, reject_unknown, require_object

LOGIN_FIELDS = frozenset({"device_id", "device_secret", "enroll_key", "metadata"})
MIN_SECRET_CHARS = 32
MAX_SECRET_CHARS = 256
MAX_METADATA_KEYS = 32
MAX_METADATA_KEY_CHARS = 64
MAX_METADATA_TEXT_CHARS = 256


def default_command(settings: Settings) -> Command:
    return _fleet_default(settings.default_interval_s)


@lru_cache(maxsize=8)
def _fleet_default(interval_s: int) -> Command:
    return Command(charge=False, fill=False, flush=None, interval_s=interval_s)


def parse_metadata(value: object) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise InvalidFields([FieldProblem("metadata", "must be an object of short strings, numbers or booleans")])
    if len(value) > MAX_METADATA_KEYS:
        raise InvalidFields([FieldProblem("metadata", f"must have at most {MAX_METADATA_KEYS} keys")])
    problems = []
    for key, item in value.items():
        path = f"metadata.{key[:MAX_METADATA_KEY_CHARS]}"
        if len(key) > MAX_METADATA_KEY_CHARS:
            problems.append(FieldProblem(path, f"key must be at most {MAX_METADATA_KEY_CHARS} characters"))
        elif isinstance(item, str):
            if len(item) > MAX_METADATA_TEXT_CHARS or "\x00" in item:
                problems.append(FieldProblem(path, f"must be at most {MAX_METADATA_TEXT_CHARS} characters, no NUL"))
        elif isinstance(item, float) and not math.isfinite(item):
            problems.append(FieldProblem(path, "must be finite"))
        elif item is not None and not isinstance(item, bool | int | float):
            problems.append(FieldProblem(path, "must be a string, number, boolean or null"))
        elif isinstance(item, int) and not isinstance(item, bool) and abs(item) > 2**53:
            problems.append(FieldProblem(path, "integers must fit in a double (|n| <= 2^53)"))
        if "\x00" in key:
            problems.append(FieldProblem("metadata", "keys must not contain NUL"))
    if problems:
        raise InvalidFields(problems)
    return value


def parse_secret(value: object) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not MIN_SECRET_CHARS <= len(value) <= MAX_SECRET_CHARS:
        raise InvalidFields(
            [
                FieldProblem(
                    "device_secret",
                    f"must be the string of {MIN_SECRET_CHARS}..{MAX_SECRET_CHARS} "
                    "characters the device's first login returned",
                )
            ]
        )
    return value


async def login(request: web.Request) -> web.Response:
    settings = request.app[SETTINGS]
    address = request.remote or "unknown"
    wait_s = request.app[LOGIN_LIMIT].take(address, asyncio.get_running_loop().time())
    if wait_s is not None:
        raise TooManyRequests(f"too many logins from {address}; retry after {wait_s} s (Retry-After)", wait_s)
    document = await read_json(request, allow_empty=True)
    body = require_object(document, "the login request")
    reject_unknown(body, LOGIN_FIELDS)
    given = body.get("enroll_key")
    if given is not None and not isinstance(given, str):
        raise InvalidFields([FieldProblem("enroll_key", "must be a string")])
    if settings.enroll_key is not None:
        if given is None:
            raise Unauthorized("this fleet is closed: send the enrolment key as enroll_key")
        if not tokens_equal(given, settings.enroll_key):
            raise Forbidden("wrong enrolment key")
    device_id = parse_uuid(body["device_id"], "device_id") if body.get("device_id") is not None else uuid.uuid4()
    metadata = parse_metadata(body["metadata"]) if body.get("metadata") is not None else None
    presented = parse_secret(body.get("device_secret"))
    new_secret = secrets.token_urlsafe(32)
    outcome = await login_device(
        request.app[POOL],
        device_id,
        metadata,
        None if presented is None else secret_hash(presented),
        secret_hash(new_secret),
        may_register=settings.enrolment != "closed",
    )
    if outcome is None:
        raise Forbidden(
            "enrolment is closed: this service listens beyond loopback without FLEETBED_ENROLL_KEY, so only "
            "registered devices log in; set FLEETBED_ENROLL_KEY (devices send it as enroll_key) or "
            "FLEETBED_ENROLL_OPEN=1 on the service"
        )
    if outcome is LoginOutcome.REFUSED:
        raise Unauthorized(
            f"device {device_id} is registered and this is not its secret: send the device_secret its first "
            "login returned (an operator resets a lost one with DELETE /devices/{id}/secret)"
        )
    created = outcome is LoginOutcome.CREATED
    request.app[METRICS].logins.labels(str(created).lower()).inc()
    token = issue_device_token(settings.secret, device_id, settings.token_ttl_s)
    answer = {
        "device_id": str(device_id),
        "token": token.token,
        "expires_at": datetime.fromtimestamp(token.expires_at, UTC).isoformat(),
        "created": created,
    }
    if presented is None and outcome in (LoginOutcome.CREATED, LoginOutcome.CLAIMED):
        answer["device_secret"] = new_secret  # returned this once: only its hash is stored
    return json_response(answer)


async def get_command(request: web.Request) -> web.Response:
    settings = request.app[SETTINGS]
    device_id = require_device(request, settings)
    cache = request.app[COMMANDS]
    found, command = cache.lookup(device_id)
    (request.app[METRICS].command_cache_hits if found else request.app[METRICS].command_cache_misses).inc()
    if not found:
        read_generation = cache.generation
        command = await pending_command(request.app[POOL], device_id)
        cache.store(device_id, command, read_generation)
    return encoded_json_response((command or default_command(settings)).encoded)


async def post_measurement(request: web.Request) -> web.Response:
    settings = request.app[SETTINGS]
    device_id = require_device(request, settings)
    readings = parse_measurements(
        await read_json(request), settings.max_batch, max_age=timedelta(seconds=settings.max_reading_age_s)
    )
    result = await request.app[INGEST].submit(device_id, readings)
    request.app[METRICS].readings_received.inc(result.received)
    return json_response({"accepted": result.received, "duplicates": result.duplicates}, status=201)
