"""Rules checked on the source itself: SQL only with parameters, secrets compared in constant time, imports that
run one way only (the arrows of docs/design.md)."""

from __future__ import annotations

import ast
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import pytest

ROOT = Path(__file__).resolve().parent.parent
APP = ROOT / "app"
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


# --- Direction rules: which room may import which. ---

# Modules of `app` that the Locust side (gevent) may import: standard library only, no asyncio, nothing else of
# `app` but each other. `app` itself is on the list because importing any of them runs `app/__init__.py`.
MADE_FOR_BOTH = ("app", "app.limits", "app.slo")
_ASYNC_WORLDS = ("asyncio", "aiohttp", "asyncpg", "uvloop", "gevent", "locust")


@dataclass(frozen=True)
class DirectionRule:
    """Files under `folders` (relative to the root; `*.py` directly in a folder when it ends in `/*`) may not import
    modules `within` any of `forbidden` unless `within` one of `allowed`, or one of `allowed_exactly` (a module itself
    or a name in it, not its submodules). `wrong` and `right` are a planted file each, `(path, source)`, that the
    rule must flag and must let pass."""

    rule: str
    folders: tuple[str, ...]
    forbidden: tuple[str, ...]
    wrong: tuple[str, str]
    right: tuple[str, str]
    allowed: tuple[str, ...] = ()
    allowed_exactly: tuple[str, ...] = ()
    exempt: tuple[str, ...] = ()


def within(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def is_or_in(imported: Imported, exact: str, root: Path) -> bool:
    """The import is `exact` or a name defined in it (`from app.limits import X`), not one of its submodules
    (`import app.ingest`, `from app import ingest`)."""
    if imported.module == exact:
        return True
    base = root.joinpath(*imported.module.split("."))
    is_submodule = base.is_dir() or base.with_suffix(".py").exists()
    return imported.from_import and imported.module.rpartition(".")[0] == exact and not is_submodule


def is_allowed(imported: Imported, rule: DirectionRule, root: Path) -> bool:
    return any(within(imported.module, a) for a in rule.allowed) or any(
        is_or_in(imported, a, root) for a in rule.allowed_exactly
    )


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


class Imported(NamedTuple):
    line: int
    module: str
    from_import: bool  # `from a import b` gives `a.b`, where b may be a submodule of `a` or a name defined in it


def imported_modules(path: Path, root: Path) -> Iterator[Imported]:
    """Every module a file imports, anywhere in it, as an absolute dotted name."""
    package = module_name(path, root).split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield Imported(node.lineno, alias.name, from_import=False)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package[: len(package) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                yield Imported(node.lineno, f"{base}.{alias.name}" if base else alias.name, from_import=True)


def rule_files(root: Path, rule: DirectionRule) -> list[Path]:
    files: set[Path] = set()
    for folder in rule.folders:
        if folder.endswith("/*"):
            files.update((root / folder[:-2]).glob("*.py"))
        else:
            files.update((root / folder).rglob("*.py"))
    exempt = [root / name for name in rule.exempt]
    return sorted(path for path in files if not any(path == e or e in path.parents for e in exempt))


def wrong_way_imports(root: Path, rule: DirectionRule) -> list[str]:
    return [
        f"{path.relative_to(root)}:{imported.line}: {imported.module}"
        for path in rule_files(root, rule)
        for imported in imported_modules(path, root)
        if any(within(imported.module, f) for f in rule.forbidden) and not is_allowed(imported, rule, root)
    ]


DIRECTION_RULES = (
    DirectionRule(
        "nothing outside app/cli imports app.cli (the commands use the rooms, never the other way round); "
        "the entry point app/__main__.py is the one exception",
        folders=("app",),
        forbidden=("app.cli",),
        exempt=("app/cli", "app/__main__.py"),
        wrong=("app/experiment/planted.py", "def f():\n    from app.cli.export import parse_time\n"),
        right=("app/cli/planted.py", "from app.cli._arguments import parse_duration_s\n"),
    ),
    DirectionRule(
        "app/db imports nothing of app outside app/db (the data layer takes plain values and returns them)",
        folders=("app/db",),
        forbidden=("app",),
        allowed=("app.db",),
        wrong=("app/db/planted.py", "from app import validation\n"),
        right=("app/db/planted.py", "from . import Connection\nfrom app.db.readings import Reading\n"),
    ),
    DirectionRule(
        "the service (app's top floor, handlers, metrics, data layer) never imports the stack, the experiment, "
        "the backfill or the commands: it runs alone in production",
        folders=("app/*", "app/handlers", "app/metrics", "app/db"),
        forbidden=("app.stack", "app.experiment", "app.backfill", "app.cli"),
        exempt=("app/__main__.py",),
        wrong=("app/handlers/planted.py", "from ..stack.processes import stop\n"),
        right=("app/handlers/planted.py", "from app.db.stats import fleet_stats\n"),
    ),
    DirectionRule(
        "locustfiles/ import nothing of app but the modules made for both sides (gevent and asyncio stay apart)",
        folders=("locustfiles",),
        forbidden=("app",),
        allowed_exactly=MADE_FOR_BOTH,
        wrong=("locustfiles/planted.py", "import app.ingest\n"),
        right=("locustfiles/planted.py", "import app\nfrom app import __version__\nimport _device_model\n"),
    ),
)


@pytest.mark.parametrize("rule", DIRECTION_RULES, ids=lambda rule: rule.folders[0])
def test_imports_run_one_way(rule: DirectionRule) -> None:
    assert rule_files(ROOT, rule), f"no files under {rule.folders}: the rule checks nothing"
    assert wrong_way_imports(ROOT, rule) == [], rule.rule


@pytest.mark.parametrize("rule", DIRECTION_RULES, ids=lambda rule: rule.folders[0])
def test_each_direction_rule_catches_a_wrong_way_import(rule: DirectionRule, tmp_path: Path) -> None:
    for (name, source), expected in ((rule.wrong, 1), (rule.right, 0)):
        planted = tmp_path / name
        planted.parent.mkdir(parents=True, exist_ok=True)
        planted.write_text(source)
        assert len(wrong_way_imports(tmp_path, rule)) == expected, (name, source)
        planted.unlink()


def unsafe_for_both_sides(path: Path, root: Path) -> list[str]:
    """Imports that make a module unfit for both sides: anything not in the standard library, an event loop or
    gevent, or a module of `app` not made for both."""
    found = []
    for imported in imported_modules(path, root):
        top = imported.module.split(".")[0]
        if top == "__future__":
            continue
        if top == "app":
            ok = any(is_or_in(imported, m, root) for m in MADE_FOR_BOTH)
        else:
            ok = top in sys.stdlib_module_names and top not in _ASYNC_WORLDS
        if not ok:
            found.append(f"{path.relative_to(root)}:{imported.line}: {imported.module}")
    return found


def module_file(root: Path, module: str) -> Path:
    base = root.joinpath(*module.split("."))
    return base / "__init__.py" if base.is_dir() else base.with_suffix(".py")


def test_modules_made_for_both_sides_import_only_the_standard_library() -> None:
    for module in MADE_FOR_BOTH:
        assert unsafe_for_both_sides(module_file(ROOT, module), ROOT) == [], module


def test_the_both_sides_rule_would_catch_an_event_loop(tmp_path: Path) -> None:
    (tmp_path / "app").mkdir()
    planted = tmp_path / "app" / "__init__.py"
    for source, expected in (("import asyncio\n", 1), ("from app.db import TOTALS_SHARDS\n", 1), ("import math\n", 0)):
        planted.write_text(source)
        assert len(unsafe_for_both_sides(planted, tmp_path)) == expected, source


# --- One statement for each derived table. ---

DERIVED_TABLES = ("water_temp_hourly", "fleet_totals")  # device_state is kept by the ingest statement alone


def writers_of(table: str, root: Path) -> list[str]:
    """Python files under root/app that hold an INSERT INTO `table` of their own."""
    pattern = re.compile(rf"INSERT\s+INTO\s+{table}\b", re.IGNORECASE)
    return sorted(
        str(path.relative_to(root)) for path in (root / "app").rglob("*.py") if pattern.search(path.read_text())
    )


@pytest.mark.parametrize("table", DERIVED_TABLES)
def test_each_derived_table_is_upserted_by_one_definition(table: str) -> None:
    assert writers_of(table, ROOT) == ["app/db/derived.py"], "build the statement with app.db.derived"


def test_the_one_definition_rule_would_catch_a_second_writer(tmp_path: Path) -> None:
    (tmp_path / "app" / "db").mkdir(parents=True)
    (tmp_path / "app" / "db" / "derived.py").write_text('"INSERT INTO fleet_totals AS t (shard) ..."\n')
    (tmp_path / "app" / "db" / "planted.py").write_text('SQL = """insert into fleet_totals (shard) VALUES ($1)"""\n')
    assert writers_of("fleet_totals", tmp_path) == ["app/db/derived.py", "app/db/planted.py"]


# --- Every module says what lives there. ---


def undocumented_modules(root: Path, folders: tuple[str, ...]) -> list[str]:
    return [
        str(path.relative_to(root))
        for folder in folders
        for path in sorted((root / folder).rglob("*.py"))
        if ast.get_docstring(ast.parse(path.read_text())) is None
    ]


def test_every_module_starts_with_a_docstring() -> None:
    assert undocumented_modules(ROOT, ("app", "locustfiles", "bench")) == []


def test_the_docstring_rule_would_catch_a_bare_module(tmp_path: Path) -> None:
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "bare.py").write_text("# a comment is not a docstring\nX = 1\n")
    (tmp_path / "app" / "said.py").write_text('"""What lives here."""\n')
    assert undocumented_modules(tmp_path, ("app",)) == ["app/bare.py"]
