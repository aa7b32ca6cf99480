"""Shared fixtures: a real PostgreSQL (embedded server) and a real TimescaleDB (PGlite in Node), the app on them.

The ingest, statistics and fault tests also run on Debian's PostgreSQL 15 (the server versions TimescaleDB
installations run on): they override `pg_url` with `each_pg_url`, or `backend_url` with `each_backend_url`.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient

from app.server import create_app
from app.settings import Settings
from tests.support import postgres as pg
from tests.support.monitored_stack import monitored_stack  # noqa: F401  (session fixture: a scraped service)
from tests.support.requirements import missing

OPERATOR_TOKEN = "operator-token-for-tests-0123456789"
SECRET = b"s" * 48

AiohttpClient = Callable[..., Awaitable[TestClient]]


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """URL of the session's embedded PostgreSQL server (its `fleetbed` database); a migrated template exists."""
    with pg.running_postgres() as (_, url):
        asyncio.run(pg.create_template(url))
        yield url


@pytest.fixture
async def pg18_url(postgres_server: str) -> AsyncIterator[str]:
    """A fresh, migrated database on the embedded PostgreSQL 18, for one test."""
    url = await pg.fresh_database(postgres_server)
    yield url
    await pg.drop_database(postgres_server, url)


@pytest.fixture
def pg_url(pg18_url: str) -> str:
    """A fresh, migrated PostgreSQL database for one test (the embedded server)."""
    return pg18_url


@pytest.fixture(scope="session")
def postgres15_server() -> Iterator[str]:
    """URL of the session's Debian PostgreSQL 15 (started like the embedded server); a migrated template exists."""
    reason = pg.postgres_15_missing()
    if reason is not None:
        missing(reason)
    with pg.running_postgres(pg.POSTGRES_15_BIN) as (_, url):
        asyncio.run(pg.create_template(url))
        yield url


@pytest.fixture
async def pg15_url(postgres15_server: str) -> AsyncIterator[str]:
    """A fresh, migrated database on PostgreSQL 15, for one test."""
    url = await pg.fresh_database(postgres15_server)
    yield url
    await pg.drop_database(postgres15_server, url)


# Backend name -> the fixture giving a fresh database on it.
BACKEND_FIXTURES = {"postgresql": "pg18_url", "postgresql15": "pg15_url", "timescaledb": "ts_url"}
TIMESCALEDB = pytest.param("timescaledb", marks=pytest.mark.timescaledb)


@pytest.fixture(params=["postgresql", "postgresql15"])
def each_pg_url(request: pytest.FixtureRequest) -> str:
    """A fresh database on PostgreSQL 18 (embedded), then on PostgreSQL 15."""
    url: str = request.getfixturevalue(BACKEND_FIXTURES[request.param])
    return url


@pytest.fixture(params=["postgresql", "postgresql15", TIMESCALEDB])
def each_backend_url(request: pytest.FixtureRequest) -> str:
    """A fresh database on PostgreSQL 18, PostgreSQL 15 and TimescaleDB in turn."""
    url: str = request.getfixturevalue(BACKEND_FIXTURES[request.param])
    return url


@pytest.fixture
async def empty_pg_url(postgres_server: str) -> AsyncIterator[str]:
    """A fresh PostgreSQL database with no migrations applied."""
    url = await pg.fresh_database(postgres_server, migrated=False)
    yield url
    await pg.drop_database(postgres_server, url)


@pytest.fixture(scope="session")
def timescaledb_server() -> Iterator[str]:
    """URL of the session's TimescaleDB (PGlite + TimescaleDB 2.23 in Node), migrated once."""
    from tests.support import timescaledb as ts

    reason = ts.timescaledb_available()
    if reason is not None:
        missing(reason)
    ts.ensure_node_modules()
    with ts.running_timescaledb() as url:
        asyncio.run(ts.migrate_timescaledb(url))
        yield url


@pytest.fixture
async def ts_url(timescaledb_server: str) -> str:
    """The TimescaleDB, emptied of the previous test's rows."""
    from tests.support import timescaledb as ts

    await ts.reset_timescaledb(timescaledb_server)
    return timescaledb_server


@pytest.fixture(params=["postgresql", TIMESCALEDB])
def backend_url(request: pytest.FixtureRequest) -> str:
    """Each API test runs on plain PostgreSQL and on TimescaleDB."""
    url: str = request.getfixturevalue(BACKEND_FIXTURES[request.param])
    return url


def make_settings(database_url: str, data_dir: Path, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "database_url": database_url,
        "data_dir": data_dir,
        "secret": SECRET,
        "operator_token": OPERATOR_TOKEN,
        "pool_min_size": 1,
        "pool_max_size": 4,
    }
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


@pytest.fixture
def settings(backend_url: str, tmp_path: Path) -> Settings:
    return make_settings(backend_url, tmp_path)


@pytest.fixture
async def client(settings: Settings, aiohttp_client: AiohttpClient) -> TestClient:
    # settings first: the database must outlive the app, so it is set up before and torn down after it.
    return await aiohttp_client(create_app(settings))


@pytest.fixture
async def pg_client(pg_url: str, tmp_path: Path, aiohttp_client: AiohttpClient) -> TestClient:
    """The app on plain PostgreSQL only (tests of behaviour that does not depend on the backend)."""
    return await aiohttp_client(create_app(make_settings(pg_url, tmp_path)))
