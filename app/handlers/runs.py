"""Operator endpoints for load-test run records (`/runs`): the Locust master registers a run, sends aggregated
stats every 15 s and finishes it; runs stay in the database for comparison. Locust needs only the operator token."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from app.auth import require_operator
from app.db.runs import add_snapshot, create_run, finish_run, get_run, list_runs
from app.errors import FieldProblem, InvalidFields, NotFound
from app.keys import POOL, SETTINGS
from app.query_params import integer_param
from app.request_body import read_json
from app.responses import json_response
from app.validation import parse_time, path_uuid, reject_unknown, require_object

MAX_NAME_CHARS = 200
RUN_STATUSES = frozenset({"running", "passed", "failed", "finished", "aborted"})
FINISHED_STATUSES = RUN_STATUSES - {"running"}
DEFAULT_LIST_LIMIT = 50
MAX_LIST_LIMIT = 1000


def path_run_id(request: web.Request) -> uuid.UUID:
    return path_uuid(request.match_info["run_id"], "run id", "use the id returned by POST /runs")


def _object_field(body: dict[str, Any], name: str, problems: list[FieldProblem]) -> dict[str, Any] | None:
    if name not in body:
        return None
    value = body[name]
    if not isinstance(value, dict):
        problems.append(FieldProblem(name, "must be a JSON object"))
        return None
    return value


async def post_run(request: web.Request) -> web.Response:
    require_operator(request, request.app[SETTINGS])
    body = require_object(await read_json(request), "a run")
    reject_unknown(body, frozenset({"name", "config"}))
    problems: list[FieldProblem] = []
    name = body.get("name")
    if not isinstance(name, str) or not 1 <= len(name) <= MAX_NAME_CHARS or "\x00" in name:
        problems.append(FieldProblem("name", f"must be a string of 1 to {MAX_NAME_CHARS} characters"))
    config = _object_field(body, "config", problems) or {}
    if problems:
        raise InvalidFields(problems)
    assert isinstance(name, str)
    run = await create_run(request.app[POOL], uuid.uuid4(), name, config)
    return json_response(run, status=201)


async def post_snapshot(request: web.Request) -> web.Response:
    require_operator(request, request.app[SETTINGS])
    run_id = path_run_id(request)
    body = require_object(await read_json(request), "a snapshot")
    reject_unknown(body, frozenset({"time", "stats"}))
    problems: list[FieldProblem] = []
    time = datetime.now(UTC)
    if "time" in body:
        parsed, problem = parse_time(body["time"], "time", time)
        if problem:
            problems.append(problem)
        elif parsed is not None:
            time = parsed
    stats = _object_field(body, "stats", problems)
    if stats is None and not problems:
        problems.append(FieldProblem("stats", "is required: a JSON object of aggregated stats"))
    if problems:
        raise InvalidFields(problems)
    assert stats is not None
    if not await add_snapshot(request.app[POOL], run_id, time, stats):
        raise NotFound(f"run {run_id} does not exist; register it with POST /runs")
    return json_response({"run_id": str(run_id), "time": time.isoformat()}, status=201)


async def post_finish(request: web.Request) -> web.Response:
    require_operator(request, request.app[SETTINGS])
    run_id = path_run_id(request)
    # An empty body finishes with the defaults; a JSON null is not an empty body.
    empty = not (await request.read()).strip()
    body = {} if empty else require_object(await read_json(request), "a run result")
    reject_unknown(body, frozenset({"status", "summary"}))
    problems: list[FieldProblem] = []
    status = body.get("status", "finished")
    if not isinstance(status, str) or status not in FINISHED_STATUSES:
        problems.append(FieldProblem("status", f"must be one of {', '.join(sorted(FINISHED_STATUSES))}"))
    summary = _object_field(body, "summary", problems)
    if problems:
        raise InvalidFields(problems)
    run = await finish_run(request.app[POOL], run_id, str(status), summary)
    if run is None:
        raise NotFound(f"run {run_id} does not exist; register it with POST /runs")
    return json_response(run)


async def get_runs(request: web.Request) -> web.Response:
    require_operator(request, request.app[SETTINGS])
    limit = integer_param(request, "limit", DEFAULT_LIST_LIMIT, 1, MAX_LIST_LIMIT)
    return json_response({"runs": await list_runs(request.app[POOL], limit)})


async def get_one_run(request: web.Request) -> web.Response:
    require_operator(request, request.app[SETTINGS])
    run_id = path_run_id(request)
    run = await get_run(request.app[POOL], run_id)
    if run is None:
        raise NotFound(f"run {run_id} does not exist")
    return json_response(run)
