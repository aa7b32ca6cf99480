"""What a database error means for the client: a passing server condition (503 + Retry-After) or a bug (500).

Every error from the database goes through `classify`, which maps it by SQLSTATE class, deliberately:

    the server is away       connection lost or refused, 08xxx, 57P01-57P03 (shutdown, recovery),  503, 1 s
                             asyncpg's protocol state broken by a goodbye that crossed a statement
    no answer in time        a connect, pool or statement timeout on our side                        503, 2 s
    out of resources         53xxx: disk full, out of memory, too many connections                   503, 10 s
    read-only                25006: a standby, or default_transaction_read_only                      503, 10 s
    timed out                57014 (statement timeout, cancel), 55P03 (lock timeout)                 503, 2 s
    contention               40001 / 40P01 once the writer's own retries are spent                   503, 1 s
    system error             58xxx (I/O error, file missing)                                         503, 10 s
    schema missing           42P01 (no such table: `fleetbed migrate` has not run)                   503, 5 s
    anything else            a bug of ours: 22xxx data (asyncpg.DataError, also for an argument it cannot
                             encode, and its InterfaceError namesake), 23xxx integrity, 42xxx syntax  500

`DatabaseFaults` counts each error by its SQLSTATE class (`fleetbed_database_errors_total`) and logs each class
at most once per interval, with how many it did not log, so a database that is away or full cannot flood the log.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import asyncpg
from prometheus_client import CollectorRegistry, Counter

from app.db import DATABASE_UNAVAILABLE
from app.errors import Unavailable

log = logging.getLogger(__name__)

# asyncpg has two DataErrors: the server's class 22 (`asyncpg.DataError`, which also reports an argument it could
# not encode, as 22000), and this one, an InterfaceError raised on our side for arguments of the wrong shape.
ArgumentError = asyncpg.exceptions._base.DataError

LOG_INTERVAL_S = 5.0
# The label for errors that carry no SQLSTATE: the connection, or asyncpg on our side of it.
NO_SQLSTATE = "none"

_AWAY = "the database is unavailable; retry after the delay in Retry-After"
_BY_SQLSTATE: dict[str, tuple[str, int]] = {
    "25006": ("the database is read-only (a standby, or in maintenance); retry after the delay in Retry-After", 10),
    "57014": ("a database statement timed out or was cancelled; retry after the delay in Retry-After", 2),
    "55P03": ("a database lock is held by someone else; retry after the delay in Retry-After", 2),
    "40001": ("the database is busy with conflicting writes; retry after the delay in Retry-After", 1),
    "40P01": ("the database is busy with conflicting writes; retry after the delay in Retry-After", 1),
    "42P01": ("the database schema is not migrated yet; the operator must run `fleetbed migrate`", 5),
}
_BY_CLASS: dict[str, tuple[str, int]] = {
    "08": (_AWAY, 1),
    "53": ("the database is out of disk space, memory or connections; retry after the delay in Retry-After", 10),
    "57": (_AWAY, 1),
    "58": ("the database has a system or I/O error; retry after the delay in Retry-After", 10),
}


def sqlstate(error: BaseException) -> str | None:
    code = getattr(error, "sqlstate", None)
    return code if isinstance(code, str) and len(code) == 5 else None


def classify(error: BaseException) -> Unavailable | None:
    """The 503 to answer for a server-side condition that passes, or None when the error is a bug (500)."""
    if isinstance(error, asyncpg.DataError | ArgumentError):  # our own arguments refused: a bug, not an outage
        return None
    code = sqlstate(error)
    if code is not None:
        found = _BY_SQLSTATE.get(code) or _BY_CLASS.get(code[:2])
        return None if found is None else Unavailable(*found)
    if isinstance(error, asyncpg.InternalClientError):  # a server's goodbye caught mid-statement (see ingest)
        return Unavailable(_AWAY, 1)
    if isinstance(error, TimeoutError):  # no connection, or no answer, within FLEETBED_DB_TIMEOUT_S (or twice it)
        return Unavailable("the database did not answer in time; retry after the delay in Retry-After", 2)
    if isinstance(error, DATABASE_UNAVAILABLE):
        return Unavailable(_AWAY, 1)
    return None


def is_database_error(error: BaseException) -> bool:
    return isinstance(
        error, (asyncpg.PostgresError, asyncpg.InterfaceError, asyncpg.InternalClientError, *DATABASE_UNAVAILABLE)
    )


@dataclass
class _Quiet:
    last_logged: float
    suppressed: int = 0


class DatabaseFaults:
    """Counts database errors by SQLSTATE class and logs each class at most once per `interval_s`."""

    def __init__(self, registry: CollectorRegistry, interval_s: float = LOG_INTERVAL_S) -> None:
        self.interval_s = interval_s
        self.errors = Counter(
            "fleetbed_database_errors_total",
            "Database errors met while answering requests, by SQLSTATE class (first two characters; "
            f"'{NO_SQLSTATE}' for a lost connection or an error on the client side), and by outcome: "
            "503 for server-side conditions that pass, 500 for bugs.",
            ["sqlstate_class", "status"],
            registry=registry,
        )
        # Zero series for the classes a deployment meets first (the server away, refused, out of resources, shut
        # down), so dashboards and alerts read 0 rather than nothing before the first error.
        for group in (NO_SQLSTATE, "08", "53", "57"):
            self.errors.labels(group, "503")
        self._quiet: dict[str, _Quiet] = {}

    def report(self, error: BaseException, where: str) -> Unavailable | None:
        """Count and (rate-limited) log the error; return the 503 to answer, or None for a bug (answer 500)."""
        unavailable = classify(error)
        code = sqlstate(error)
        group = code[:2] if code else NO_SQLSTATE
        self.errors.labels(group, "503" if unavailable else "500").inc()
        key = f"{group}/{'503' if unavailable else '500'}"
        now = time.monotonic()
        quiet = self._quiet.get(key)
        if quiet is not None and now - quiet.last_logged < self.interval_s:
            quiet.suppressed += 1
            return unavailable
        suppressed = quiet.suppressed if quiet is not None else 0
        self._quiet[key] = _Quiet(now)
        more = f" ({suppressed} more like it since the last report)" if suppressed else ""
        label = f"SQLSTATE {code}" if code else type(error).__name__
        if unavailable is not None:
            log.warning("database error %s in %s, answered 503%s: %s", label, where, more, error)
        else:
            log.error("unexpected database error %s in %s, answered 500%s", label, where, more, exc_info=error)
        return unavailable
