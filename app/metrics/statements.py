"""Execution time of every SQL statement the pool's connections run, named by verb and table.

asyncpg calls a connection's query loggers after each statement with its elapsed time (pool wait excluded,
unlike `fleetbed_db_query_duration_seconds`, which times a whole data-layer call). The statement is named from
its text, so the data layer needs no changes and the label stays bounded by the statements in the code:
`insert:measurement` (the first table written by a data-modifying statement, CTEs included), `select:fleet_totals`
(the first table read), or the bare command (`commit`, `begin`, `listen`). `commit` is the database's own commit
time. Past `MAX_STATEMENT_NAMES` distinct names, the rest are counted as `other`.
"""

from __future__ import annotations

import re
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram

MAX_STATEMENT_NAMES = 64
STATEMENT_BUCKETS_S = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
)  # fmt: skip

_COMMENT = re.compile(r"--[^\n]*|/\*.*?\*/", re.DOTALL)
_WRITE = re.compile(r"\b(INSERT\s+INTO|UPDATE|DELETE\s+FROM)\s+(?:ONLY\s+)?([A-Za-z_][\w.]*)", re.IGNORECASE)
_READ = re.compile(r"\bFROM\s+(?!unnest\b|generate_series\b)([A-Za-z_][\w.]*)(?!\s*\()", re.IGNORECASE)
_VERB = {"INSERT INTO": "insert", "UPDATE": "update", "DELETE FROM": "delete"}


def statement_name(sql: str) -> str:
    """A short, bounded name for one SQL statement (see the module docstring)."""
    text = _COMMENT.sub(" ", sql).strip()
    write = _WRITE.search(text)
    if write is not None:
        verb = _VERB[" ".join(write[1].upper().split())]
        return f"{verb}:{write[2].lower()}"
    first = text.split(None, 1)[0].lower().rstrip(";") if text else "empty"
    if first in ("select", "with"):
        read = _READ.search(text)
        return f"select:{read[1].lower()}" if read else "select"
    return first


class StatementMetrics:
    """Watches connections (`watch(connection)` on each acquire: adding the same logger twice is a no-op)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.duration = Histogram(
            "fleetbed_db_statement_duration_seconds",
            "Execution time of one SQL statement on its connection (no pool wait), by verb and table.",
            ["statement"],
            buckets=STATEMENT_BUCKETS_S,
            registry=registry,
        )
        self.errors = Counter(
            "fleetbed_db_statement_errors_total",
            "SQL statements that raised, by verb and table.",
            ["statement"],
            registry=registry,
        )
        self._names: dict[str, str] = {}

    def name(self, sql: str) -> str:
        name = self._names.get(sql)
        if name is None:
            known = set(self._names.values())
            name = statement_name(sql)
            if name not in known and len(known) >= MAX_STATEMENT_NAMES:
                name = "other"
            if len(self._names) < 10 * MAX_STATEMENT_NAMES:
                self._names[sql] = name
        return name

    def record(self, query: Any) -> None:
        name = self.name(query.query)
        self.duration.labels(name).observe(query.elapsed)
        if query.exception is not None:
            self.errors.labels(name).inc()

    def watch(self, connection: Any) -> None:
        connection.add_query_logger(self.record)
