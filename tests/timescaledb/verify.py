"""Smoke check of the real-TimescaleDB test server: ``python -m tests.timescaledb.verify`` from the repository root.

Starts the server through tests/support/timescaledb.py, exercises the TimescaleDB features fleetbed relies on
through asyncpg and prints one PASS/FAIL line per check (exit status 1 if any check failed). Some checks document
known limits of the server rather than features; their expected outcome is stated in the check name.
"""

from __future__ import annotations

import asyncio
import functools
import sys
import time
import traceback
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta

import asyncpg

from tests.support.timescaledb import close_quietly, running_timescaledb, timescaledb_available

Check = Callable[[asyncpg.Connection], Awaitable[str]]

T0 = datetime(2025, 1, 1, tzinfo=UTC)
DEVICES = [uuid.UUID(int=i + 1) for i in range(3)]
CAGG_SQL = """
    CREATE MATERIALIZED VIEW {name} WITH (timescaledb.continuous) AS
    SELECT time_bucket('1 hour', time) AS hour, count(*) AS n, sum(v) AS s, sum(v * v) AS ss
    FROM m GROUP BY 1 WITH {data}
"""


class Runner:
    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self.results: list[tuple[str, bool, str]] = []

    async def connect(self) -> asyncpg.Connection:
        return await asyncpg.connect(self.dsn, ssl=False, timeout=20)

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[asyncpg.Connection]:
        conn = await self.connect()
        try:
            yield conn
        finally:
            await close_quietly(conn)

    async def run(self, name: str, check: Callable[[], Awaitable[str]], limit_s: float = 60) -> None:
        started = time.monotonic()
        try:
            detail = await asyncio.wait_for(check(), limit_s)
            ok = True
        except Exception as exc:  # report every failure, keep going
            ok, detail = False, f"{type(exc).__name__}: {exc}".strip()
            if not isinstance(exc, asyncpg.PostgresError | TimeoutError | AssertionError):
                traceback.print_exc()
        elapsed = time.monotonic() - started
        self.results.append((name, ok, detail))
        print(f"{'PASS' if ok else 'FAIL'}  {name}  ({elapsed:.2f}s){'  -- ' + detail if detail else ''}", flush=True)


# ---------------------------------------------------------------- checks on one connection


async def create_extension(conn: asyncpg.Connection) -> str:
    await conn.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
    version = await conn.fetchval("SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'")
    row = await conn.fetchrow("SELECT current_database(), current_user")
    assert row is not None
    db, user = row
    return f"timescaledb {version}; current_database()={db}, current_user={user}"


async def hypertable(conn: asyncpg.Connection) -> str:
    await conn.execute(
        "CREATE TABLE m (device_id uuid, time timestamptz NOT NULL, v double precision, UNIQUE (device_id, time))"
    )
    row = await conn.fetchrow("SELECT * FROM create_hypertable('m', by_range('time', INTERVAL '1 day'))")
    assert row is not None
    return f"create_hypertable -> {dict(row)}"


async def insert_unnest(conn: asyncpg.Connection) -> str:
    devices = [DEVICES[i % 3] for i in range(300)]
    times = [T0 + timedelta(minutes=10 * i) for i in range(300)]
    values = [float(i) for i in range(300)]
    sql = """
        INSERT INTO m (device_id, time, v)
        SELECT * FROM unnest($1::uuid[], $2::timestamptz[], $3::float8[])
        ON CONFLICT DO NOTHING
    """
    first = await conn.execute(sql, devices, times, values)
    again = await conn.execute(sql, devices, times, values)
    assert (first, again) == ("INSERT 0 300", "INSERT 0 0"), (first, again)
    row = await conn.fetchrow("SELECT device_id, time, v FROM m ORDER BY time LIMIT 1")
    assert row is not None
    assert isinstance(row["device_id"], uuid.UUID), row
    assert row["device_id"] == DEVICES[0], row
    assert row["time"] == T0, row
    assert row["time"].tzinfo is not None, row
    chunks = await conn.fetchval("SELECT count(*) FROM show_chunks('m')")
    return f"{first} then {again}; uuid/timestamptz round-trip exact; {chunks} chunks"


async def continuous_aggregate(conn: asyncpg.Connection) -> str:
    await conn.execute(CAGG_SQL.format(name="m_hourly", data="NO DATA"))
    await conn.execute("ALTER MATERIALIZED VIEW m_hourly SET (timescaledb.materialized_only = false)")
    expected = await conn.fetch(
        "SELECT time_bucket('1 hour', time) AS hour, count(*) AS n, sum(v) AS s FROM m GROUP BY 1 ORDER BY 1"
    )
    realtime = await conn.fetch("SELECT hour, n, s FROM m_hourly ORDER BY hour")
    assert [tuple(r) for r in realtime] == [tuple(r) for r in expected], "real-time aggregate differs from raw"
    await conn.execute("CALL refresh_continuous_aggregate('m_hourly', NULL, NULL)")
    materialized = await conn.fetchval(
        "SELECT count(*) FROM _timescaledb_catalog.continuous_agg ca "
        "JOIN _timescaledb_catalog.hypertable h ON h.id = ca.mat_hypertable_id "
        "WHERE ca.user_view_name = 'm_hourly'"
    )
    await conn.execute(
        "SELECT add_continuous_aggregate_policy('m_hourly', start_offset => INTERVAL '3 days', "
        "end_offset => INTERVAL '1 hour', schedule_interval => INTERVAL '1 hour')"
    )
    return (
        f"real-time query = raw ({len(realtime)} buckets); refresh_continuous_aggregate OK "
        f"({materialized} materialization hypertable); add_continuous_aggregate_policy OK"
    )


async def compression_legacy(conn: asyncpg.Connection) -> str:
    await conn.execute("ALTER TABLE m SET (timescaledb.compress, timescaledb.compress_segmentby = 'device_id')")
    job = await conn.fetchval("SELECT add_compression_policy('m', INTERVAL '7 days')")
    compressed = await conn.fetch("SELECT compress_chunk(c) FROM show_chunks('m') c")
    total = await conn.fetchval("SELECT count(*) FROM m")
    sums = await conn.fetchval("SELECT sum(n) FROM m_hourly")
    stats = await conn.fetchrow(
        "SELECT count(*) FILTER (WHERE is_compressed) AS compressed, count(*) AS chunks "
        "FROM timescaledb_information.chunks WHERE hypertable_name = 'm'"
    )
    assert stats is not None
    assert (total, sums) == (300, 300)
    return (
        f"compress + compress_segmentby + add_compression_policy OK (job {job}); compress_chunk on "
        f"{len(compressed)} chunks -> {stats['compressed']}/{stats['chunks']} compressed; reads still correct"
    )


async def columnstore_api(conn: asyncpg.Connection) -> str:
    await conn.execute("CREATE TABLE m2 (device_id uuid, time timestamptz NOT NULL, v double precision)")
    await conn.execute("SELECT create_hypertable('m2', by_range('time', INTERVAL '1 day'))")
    await conn.execute("ALTER TABLE m2 SET (timescaledb.enable_columnstore, timescaledb.segmentby = 'device_id')")
    await conn.execute("CALL add_columnstore_policy('m2', after => INTERVAL '7 days')")
    jobs = await conn.fetch(
        "SELECT proc_name, hypertable_name FROM timescaledb_information.jobs "
        "WHERE hypertable_name IN ('m', 'm2', 'm_hourly') ORDER BY job_id"
    )
    job_list = ", ".join(f"{j['hypertable_name']}:{j['proc_name']}" for j in jobs)
    return f"enable_columnstore + segmentby + CALL add_columnstore_policy OK; jobs: {job_list}"


async def advisory_locks(conn: asyncpg.Connection) -> str:
    await conn.execute("SELECT pg_advisory_lock(4242)")
    held = await conn.fetchval("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objid = 4242 AND granted")
    unlocked = await conn.fetchval("SELECT pg_advisory_unlock(4242)")
    xact = await conn.fetchval("SELECT pg_try_advisory_xact_lock(4243)")
    assert (held, unlocked, xact) == (1, True, True)
    return "pg_advisory_lock / pg_advisory_unlock / pg_try_advisory_xact_lock OK"


SCRIPT = """
CREATE TABLE script_t (device_id uuid NOT NULL, time timestamptz NOT NULL, v double precision);
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'timescaledb') THEN
        PERFORM create_hypertable('script_t', by_range('time', INTERVAL '1 day'));
    END IF;
END
$$;
CREATE INDEX script_t_device_time ON script_t (device_id, time DESC);
INSERT INTO script_t VALUES ('00000000-0000-0000-0000-000000000001', '2025-01-01T00:00:00Z', 1.5);
"""


async def script_in_transaction(conn: asyncpg.Connection) -> str:
    async with conn.transaction():
        await conn.execute(SCRIPT)
    is_ht = await conn.fetchval(
        "SELECT count(*) FROM timescaledb_information.hypertables WHERE hypertable_name = 'script_t'"
    )
    assert is_ht == 1
    assert await conn.fetchval("SELECT count(*) FROM script_t") == 1
    return "multi-statement script with DO $$ create_hypertable $$ inside conn.transaction() OK"


async def rollback_works(conn: asyncpg.Connection) -> str:
    try:
        async with conn.transaction():
            await conn.execute("CREATE TABLE rolled_back (x int)")
            await conn.execute("SELECT create_hypertable('rolled_back', by_range('x', 10))")
            raise RuntimeError("rollback")
    except RuntimeError:
        pass
    exists = await conn.fetchval("SELECT to_regclass('rolled_back') IS NOT NULL")
    assert exists is False
    return "transaction rollback undoes table + hypertable"


def cagg_variant(view: str | None, sql: str, explicit_tx: bool) -> Check:
    """Try one way of creating a continuous aggregate; report success or the exact error."""

    async def check(conn: asyncpg.Connection) -> str:
        try:
            if explicit_tx:
                async with conn.transaction():
                    await conn.execute(sql)
            else:
                await conn.execute(sql)
        except asyncpg.PostgresError as exc:
            return f"NOT ALLOWED: [{exc.sqlstate}] {exc}"
        finally:
            if view:
                await conn.execute(f"DROP MATERIALIZED VIEW IF EXISTS {view}")
        return "works"

    return check


def do_block(body: str) -> str:
    return (
        "DO $do$ BEGIN IF EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'timescaledb') THEN "
        f"EXECUTE $sql${body}$sql$; END IF; END $do$"
    )


def cagg(view: str, data: str = "NO DATA") -> str:
    return CAGG_SQL.format(name=view, data=data)


CAGG_VARIANTS: list[tuple[str, str | None, str, bool]] = [
    ("cagg WITH NO DATA, plain statement", "cv1", cagg("cv1"), False),
    ("cagg WITH DATA, plain statement", "cv2", cagg("cv2", "DATA"), False),
    ("cagg WITH NO DATA inside conn.transaction()", "cv3", cagg("cv3"), True),
    ("cagg WITH DATA inside conn.transaction()", "cv4", cagg("cv4", "DATA"), True),
    ("cagg WITH NO DATA in a multi-statement script (implicit tx)", "cv5", f"SELECT 1; {cagg('cv5')}; SELECT 2", False),
    ("cagg WITH NO DATA via EXECUTE in a DO block", "cv6", do_block(cagg("cv6")), False),
    ("cagg WITH NO DATA via EXECUTE in a DO block, in conn.transaction()", "cv7", do_block(cagg("cv7")), True),
    (
        "cagg + ALTER materialized_only + add_continuous_aggregate_policy in one DO block, in a transaction",
        "cv8",
        "DO $do$ BEGIN "
        f"EXECUTE $sql${cagg('cv8')}$sql$; "
        "EXECUTE 'ALTER MATERIALIZED VIEW cv8 SET (timescaledb.materialized_only = false)'; "
        "PERFORM add_continuous_aggregate_policy('cv8', INTERVAL '3 days', INTERVAL '1 hour', INTERVAL '1 hour'); "
        "END $do$",
        True,
    ),
    ("cagg WITH DATA via EXECUTE in a DO block", "cv9", do_block(cagg("cv9", "DATA")), False),
    (
        "CALL refresh_continuous_aggregate inside conn.transaction()",
        None,
        "CALL refresh_continuous_aggregate('m_hourly', NULL, NULL)",
        True,
    ),
]


# ---------------------------------------------------------------- checks needing several connections


async def pool_concurrency(runner: Runner) -> str:
    pool = await asyncpg.create_pool(runner.dsn, ssl=False, min_size=1, max_size=4, timeout=20)
    try:

        async def one(i: int) -> int:
            return int(await pool.fetchval("SELECT $1::int + count(*)::int * 0 FROM m", i))

        results = await asyncio.gather(*(one(i) for i in range(50)))
        assert results == list(range(50)), results
        size = pool.get_size()

        async def tx(i: int) -> int:
            async with pool.acquire() as conn, conn.transaction():
                await conn.execute("INSERT INTO pool_t VALUES ($1)", i)
                await asyncio.sleep(0.01)  # hold the transaction open across an await
                return int(await conn.fetchval("SELECT count(*) FROM pool_t WHERE x = $1", i))

        await pool.execute("CREATE TABLE pool_t (x int)")
        counts = await asyncio.gather(*(tx(i) for i in range(20)))
        assert counts == [1] * 20
        assert await pool.fetchval("SELECT count(*) FROM pool_t") == 20
        return f"50 concurrent queries OK, pool grew to {size} connections; 20 concurrent transactions isolated"
    finally:
        await close_quietly(pool)


async def pool_without_statement_cache(runner: Runner) -> str:
    pool = await asyncpg.create_pool(runner.dsn, ssl=False, min_size=1, max_size=4, timeout=20, statement_cache_size=0)
    try:
        results = await asyncio.gather(*(pool.fetchval("SELECT $1::text || '!'", str(i)) for i in range(50)))
        assert results == [f"{i}!" for i in range(50)], results
        return "50 concurrent queries with unnamed statements OK"
    finally:
        await close_quietly(pool)


async def abrupt_disconnect(runner: Runner) -> str:
    conn = await runner.connect()
    await conn.execute("CREATE TABLE abrupt_t (x int)")
    tx = conn.transaction()
    await tx.start()
    await conn.execute("INSERT INTO abrupt_t VALUES (1)")
    conn.terminate()  # socket closed mid-transaction, no ROLLBACK sent
    async with runner.connection() as other:
        rows = await other.fetchval("SELECT count(*) FROM abrupt_t")
        # NULL unless this statement runs inside a transaction that already wrote something (the orphan's).
        status = await other.fetchval("SELECT txid_current_if_assigned() IS NULL")
    assert (rows, status) == (0, True)
    return "open transaction of a vanished client was rolled back; next client starts idle"


async def graceful_close(runner: Runner) -> str:
    conn = await runner.connect()
    started = time.monotonic()
    await asyncio.wait_for(conn.close(), 5)
    return f"asyncpg close() completed in {time.monotonic() - started:.3f}s"


async def copy(runner: Runner) -> str:
    async with runner.connection() as conn:
        await conn.execute("CREATE TABLE copy_t (x int)")
        try:
            await conn.copy_records_to_table("copy_t", records=[(1,), (2,)])
            raise AssertionError("COPY FROM STDIN unexpectedly worked")
        except asyncpg.FeatureNotSupportedError:
            pass
        await conn.execute("INSERT INTO copy_t VALUES (1), (2)")
        sink = bytearray()

        async def collect(chunk: bytes) -> None:
            sink.extend(chunk)

        status = await conn.copy_from_query("SELECT x FROM copy_t ORDER BY x", output=collect)
        assert bytes(sink) == b"1\n2\n", bytes(sink)
    async with runner.connection() as other:
        assert await other.fetchval("SELECT 1") == 1
    return f"COPY FROM STDIN rejected with FeatureNotSupportedError; COPY TO STDOUT works ({status})"


async def main() -> int:
    reason = timescaledb_available()
    if reason:
        print(f"SKIP: {reason}")
        return 0
    started = time.monotonic()
    with running_timescaledb() as dsn:
        print(f"server READY after {time.monotonic() - started:.2f}s; DSN {dsn}", flush=True)
        runner = Runner(dsn)
        t = time.monotonic()
        conn = await runner.connect()
        print(f"first connection after {time.monotonic() - t:.3f}s", flush=True)
        try:
            for name, check in [
                ("CREATE EXTENSION IF NOT EXISTS timescaledb", create_extension),
                ("create table + create_hypertable(by_range)", hypertable),
                ("INSERT ... SELECT FROM unnest(...) ON CONFLICT DO NOTHING", insert_unnest),
                ("continuous aggregate, real-time, refresh, policy", continuous_aggregate),
                ("compression (compress/compress_segmentby/add_compression_policy)", compression_legacy),
                ("columnstore API (enable_columnstore/segmentby/add_columnstore_policy)", columnstore_api),
                ("advisory locks", advisory_locks),
                ("multi-statement script + DO block in a transaction", script_in_transaction),
                ("rollback", rollback_works),
            ]:
                await runner.run(name, functools.partial(check, conn))
            for name, view, sql, explicit_tx in CAGG_VARIANTS:
                await runner.run(f"[probe] {name}", functools.partial(cagg_variant(view, sql, explicit_tx), conn))
        finally:
            await close_quietly(conn)

        for name, multi in [
            ("asyncpg pool min_size=1 max_size=4", pool_concurrency),
            ("asyncpg pool, statement_cache_size=0", pool_without_statement_cache),
            ("client vanishing mid-transaction", abrupt_disconnect),
            ("graceful close", graceful_close),
            ("COPY (FROM STDIN rejected, TO STDOUT works)", copy),
        ]:
            await runner.run(name, functools.partial(multi, runner), limit_s=120)
        stop = time.monotonic()
    print(f"server stopped in {time.monotonic() - stop:.2f}s")
    failed = [name for name, ok, _ in runner.results if not ok]
    print(f"{len(runner.results) - len(failed)} passed, {len(failed)} failed" + (f": {failed}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
