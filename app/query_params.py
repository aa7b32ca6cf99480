"""Query-string parameters: each kind parsed by one function, strictly (ASCII only, bounded length), so no
byte sequence a client puts in a URL reaches a 500 (`str.isdigit` accepts superscripts and other scripts'
digits, which `int()` then refuses, and `int()` refuses thousands of digits)."""

from __future__ import annotations

import re

from aiohttp import web

from app.errors import FieldProblem, InvalidFields

# Plain ASCII digits, at most 9 of them: every integer parameter fits, and no string reaches int() unbounded.
_ASCII_INTEGER = re.compile(r"[0-9]{1,9}")


def integer_param(request: web.Request, name: str, default: int, low: int, high: int) -> int:
    """The integer query parameter `name` (its first occurrence), `default` when absent; 422 when it is not a
    decimal integer in [low, high]."""
    raw = request.query.get(name)
    if raw is None:
        return default
    if not _ASCII_INTEGER.fullmatch(raw) or not low <= int(raw) <= high:
        raise InvalidFields([FieldProblem(name, f"must be an integer between {low} and {high} (ASCII digits)")])
    return int(raw)
