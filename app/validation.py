"""Parsing and validation of request bodies: JSON decoding and the measurement schema.

Every rule in one place, so the OpenAPI document (`app.openapi`) and the error messages agree with it.
"""

from __future__ import annotations

import math
import re
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from app.db.readings import Reading
from app.errors import BadRequest, FieldProblem, InvalidFields
from app.limits import EARLIEST_YEAR, MAX_FUTURE_S, NUMERIC_FIELDS

MAX_FUTURE = timedelta(seconds=MAX_FUTURE_S)
EARLIEST_TIME = datetime(EARLIEST_YEAR, 1, 1, tzinfo=UTC)

_RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(?:\.\d{1,9})?(?:[Zz]|[+-]\d{2}:\d{2})")

MEASUREMENT_FIELDS = ("time", *NUMERIC_FIELDS)
_FIELD_SET = frozenset(MEASUREMENT_FIELDS)


# An escaped NUL (\u0000) not itself escaped: PostgreSQL cannot store NUL in text or jsonb, and no field needs it.
_ESCAPED_NUL = re.compile(rb"(?<!\\)(?:\\\\)*\\u0000")


def decode_json(body: bytes) -> Any:
    """Decode a request body; malformed JSON, NaN/Infinity, invalid UTF-8, NUL and deep nesting are 400s."""
    if not body:
        raise BadRequest("the request body is empty; send a JSON document")
    if b"\\u0000" in body and _ESCAPED_NUL.search(body):
        raise BadRequest("the body contains a NUL character (\\u0000), which no field accepts; remove it")
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"the body is not valid JSON ({exc}); send a JSON document in UTF-8") from None


def parse_time(
    value: object, path: str, now: datetime, max_age: timedelta | None = None
) -> tuple[datetime | None, FieldProblem | None]:
    """An RFC 3339 time, not in the future (beyond clock skew), not before 2000, nor older than `max_age`."""
    if not isinstance(value, str) or not _RFC3339.fullmatch(value):
        return None, FieldProblem(path, "must be an RFC 3339 time with an offset, e.g. 2026-01-31T12:00:00Z")
    try:
        parsed = datetime.fromisoformat(value.upper().replace("Z", "+00:00"))
    except ValueError:
        return None, FieldProblem(path, "is not a valid calendar time")
    if parsed < EARLIEST_TIME:
        return None, FieldProblem(path, f"must not be before {EARLIEST_TIME.isoformat().replace('+00:00', 'Z')}")
    if max_age is not None and parsed < now - max_age:
        return None, FieldProblem(
            path, f"must not be older than {max_age.total_seconds():g} s (FLEETBED_MAX_READING_AGE_S); drop it"
        )
    if parsed > now + MAX_FUTURE:
        return None, FieldProblem(
            path, f"must not be more than {MAX_FUTURE_S // 60} minutes in the future; check the device clock"
        )
    return parsed, None


def _check_number(value: object, kind: str, low: float, high: float) -> str | None:
    # bool is a subclass of int in Python, but a JSON true is not a number. As in JSON Schema, 61.0 is an integer.
    if isinstance(value, bool) or not isinstance(value, int | float):
        return "must be an integer" if kind == "int" else "must be a number"
    if kind == "int" and not (isinstance(value, int) or value.is_integer()):
        return "must be an integer"
    if not math.isfinite(value):
        return "must be finite"
    if not low <= value <= high:
        return f"must be between {low:g} and {high:g}"
    return None


def parse_reading(
    item: object, path: str, now: datetime, max_age: timedelta | None = None
) -> tuple[Reading | None, list[FieldProblem]]:
    if not isinstance(item, dict):
        return None, [FieldProblem(path or "(body)", "must be a JSON object with the measurement fields")]
    problems = [
        FieldProblem(f"{path}.{name}" if path else name, "is not a known field; remove it")
        for name in item
        if name not in _FIELD_SET
    ]
    values: dict[str, Any] = {}
    for name in MEASUREMENT_FIELDS:
        field_path = f"{path}.{name}" if path else name
        if name not in item:
            problems.append(FieldProblem(field_path, "is required"))
            continue
        value = item[name]
        if name == "time":
            parsed, problem = parse_time(value, field_path, now, max_age)
            if problem:
                problems.append(problem)
            values[name] = parsed
            continue
        kind, low, high = NUMERIC_FIELDS[name]
        message = _check_number(value, kind, low, high)
        if message:
            problems.append(FieldProblem(field_path, message))
        values[name] = value
    if not problems and values["charge_now"] > values["charge_full"]:
        problems.append(FieldProblem(f"{path}.charge_now" if path else "charge_now", "must not exceed charge_full"))
    if problems:
        return None, problems
    return (
        Reading(
            values["time"],
            int(values["charge_now"]),
            int(values["charge_full"]),
            float(values["charge_rate"]),
            float(values["ambient_temp"]),
            float(values["water_temp"]),
            int(values["water_level"]),
        ),
        [],
    )


def parse_measurements(
    document: object, max_batch: int, now: datetime | None = None, max_age: timedelta | None = None
) -> list[Reading]:
    """One reading (object) or up to `max_batch` (array): all valid, or `InvalidFields` listing every problem.
    `max_age`: the oldest reading accepted (the service passes `Settings.max_reading_age_s`)."""
    now = now or datetime.now(UTC)
    if isinstance(document, list):
        if not document:
            raise InvalidFields([FieldProblem("(body)", "the array is empty; send at least one reading")])
        if len(document) > max_batch:
            from app.errors import PayloadTooLarge

            raise PayloadTooLarge(f"{len(document)} readings in one request; send at most {max_batch} per request")
        readings: list[Reading] = []
        problems: list[FieldProblem] = []
        for index, item in enumerate(document):
            reading, item_problems = parse_reading(item, f"[{index}]", now, max_age)
            if reading is not None:
                readings.append(reading)
            problems.extend(item_problems)
        if problems:
            raise InvalidFields(problems)
        return readings
    reading, problems = parse_reading(document, "", now, max_age)
    if reading is None:
        raise InvalidFields(problems)
    return [reading]


# 32 ASCII hex digits, hyphens optional: `uuid.UUID` alone would also take braces, a urn: prefix and other
# scripts' digits.
_UUID = re.compile(r"[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}")


def strict_uuid(text: str) -> uuid.UUID | None:
    """The UUID in `text` (hex, hyphens optional), or None for anything else; the one parser of ids."""
    return uuid.UUID(text) if _UUID.fullmatch(text) else None


def parse_uuid(value: object, path: str) -> uuid.UUID:
    parsed = strict_uuid(value) if isinstance(value, str) else None
    if parsed is None:
        raise InvalidFields([FieldProblem(path, "must be a UUID such as 0b1e6a9c-7d4c-4b8e-9a43-2f4d5c6e7f80")])
    return parsed


def path_uuid(raw: str, what: str, hint: str) -> uuid.UUID:
    """A UUID from the URL path; a malformed one is the client's mistake (400), with where to get a real one."""
    parsed = strict_uuid(raw)
    if parsed is None:
        raise BadRequest(f"{raw[:64]!r} is not a {what}; {hint}")
    return parsed


def require_object(document: object, what: str) -> dict[str, Any]:
    if not isinstance(document, dict):
        raise BadRequest(f"the body must be a JSON object ({what})")
    return document


def reject_unknown(document: dict[str, Any], allowed: frozenset[str]) -> None:
    unknown = sorted(set(document) - allowed)
    if unknown:
        raise InvalidFields([FieldProblem(name, "is not a known field; remove it") for name in unknown])
