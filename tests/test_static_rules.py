"""Rules checked on the source itself: SQL only with parameters, secrets compared in constant time."""

from __future__ import annotations

import ast
import re
from pathlib import Path

APP = Path(__file__).resolve().parent.parent / "app"
QUERY_METHODS = {"execute", "executemany", "fetch", "fetchrow", "fetchval", "prepare", "cursor"}


def python_files() -> list[Path]:
    return sorted(APP.rglob("*.py"))


def is_constant_name(node: ast.expr) -> bool:
    """A module constant such as `_RUN_COLUMNS`: fixed SQL text, not a value from a request."""
    return isinstance(node, ast.Name) and re.fullmatch(r"_?[A-Z][A-Z0-9_]*", node.id) is not None


def built_at_runtime(node: ast.expr) -> bool:
    """An f-string, a %-format or a .format() call: text assembled from values at the call site."""
    if isinstance(node, ast.JoinedStr):
        return any(isinstance(part, ast.FormattedValue) and not is_constant_name(part.value) for part in node.values)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Mod):
        return True
    return isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "format"


def test_sql_is_never_assembled_from_values_at_the_call_site() -> None:
    offenders = []
    for path in python_files():
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr in QUERY_METHODS
                and node.args
                and built_at_runtime(node.args[0])
            ):
                offenders.append(f"{path.relative_to(APP.parent)}:{node.lineno}")
    assert offenders == [], "SQL must take values as $n parameters, not string formatting"


def test_this_rule_would_catch_formatted_sql() -> None:
    call = ast.parse('conn.execute(f"SELECT * FROM device WHERE id = {device_id}")').body[0]
    assert isinstance(call, ast.Expr)
    assert isinstance(call.value, ast.Call)
    assert built_at_runtime(call.value.args[0])
    assert not built_at_runtime(ast.parse('"SELECT $1"').body[0].value)  # type: ignore[attr-defined]
    assert not built_at_runtime(ast.parse('f"SELECT {_COLUMNS} FROM run"').body[0].value)  # type: ignore[attr-defined]


def test_secrets_are_compared_in_constant_time() -> None:
    """Every comparison that involves a token, key, signature or secret goes through hmac.compare_digest."""
    offenders = []
    secret_words = ("token", "secret", "signature", "enroll_key", "password")
    for path in python_files():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Compare) and any(isinstance(op, ast.Eq | ast.NotEq) for op in node.ops):
                text = ast.unparse(node).lower()
                if any(word in text for word in secret_words) and "is none" not in text and "len(" not in text:
                    offenders.append(f"{path.relative_to(APP.parent)}:{node.lineno}: {ast.unparse(node)}")
    assert offenders == [], "compare secrets with hmac.compare_digest (app.tokens.tokens_equal)"
    tokens_source = (APP / "tokens.py").read_text()
    assert tokens_source.count("hmac.compare_digest") >= 2
