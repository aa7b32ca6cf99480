"""The kettle fleet's readings written straight into PostgreSQL, bypassing the service, to separate the
database's cost from the service's ("single insert execution time", "total time for 1,000,000 inserts").

    locust -f locustfiles/kettle_db.py --headless -u 4 --db-batch-size 1 -t 30s            # single-row inserts
    locust -f locustfiles/kettle_db.py --headless -u 4 --db-batch-size 1000 --db-rows 1000000  # batched, 1M rows

Each user holds one connection (`--database-url`, default FLEETBED_DATABASE_URL) and simulates
`--devices-per-user` kettles with the same model as the HTTP fleet, inserting as fast as the database allows.
Unlike the HTTP fleet, this scenario holds database credentials: that is its point.
"""

import json
import logging
import os
import random
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import gevent
from _database_client import REQUEST_TYPE, DatabaseClient
from _device_model import Command, Kettle, device_metadata
from locust import User, constant, events, task
from locust.env import Environment
from locust.runners import WorkerRunner

log = logging.getLogger(__name__)
READING_STEP = timedelta(seconds=30)


@events.init_command_line_parser.add_listener
def _add_options(parser: Any) -> None:
    parser.add_argument(
        "--database-url",
        default=os.environ.get("FLEETBED_DATABASE_URL", ""),
        env_var="LOCUST_DATABASE_URL",
        help="PostgreSQL DSN (default: FLEETBED_DATABASE_URL)",
    )
    parser.add_argument(
        "--db-batch-size",
        type=int,
        default=1,
        env_var="LOCUST_DB_BATCH_SIZE",
        include_in_web_ui=True,
        help="Rows per INSERT (1: single-row inserts)",
    )
    parser.add_argument(
        "--db-rows",
        type=int,
        default=0,
        env_var="LOCUST_DB_ROWS",
        help="Stop once this many rows were inserted, and print the total time (0: no limit)",
    )
    parser.add_argument("--db-devices-per-user", type=int, default=100, env_var="LOCUST_DB_DEVICES_PER_USER")


class KettleDatabaseUser(User):
    """Simulated kettles whose readings go straight into `measurement`, one statement at a time."""

    wait_time = constant(0)

    def __init__(self, environment: Environment) -> None:
        super().__init__(environment)
        options = environment.parsed_options
        assert options is not None, "Locust parses the options before it creates users"
        self.batch_size = max(1, int(getattr(options, "db_batch_size", 1)))
        count = max(1, int(getattr(options, "db_devices_per_user", 100)))
        rng = random.Random()
        self.kettles = []
        for _ in range(count):
            device_id = uuid.UUID(int=rng.getrandbits(128), version=4)
            metadata = device_metadata(device_id)
            self.kettles.append((device_id, json.dumps(metadata), Kettle.for_device(device_id, str(metadata["model"]))))
        # Readings carry simulated times, one step apart per device, so no two collide on (device, time).
        self.clock = datetime.now(UTC) - timedelta(days=365)
        self.next_device = 0
        self.client = DatabaseClient(options.database_url, environment.events.request)

    def on_start(self) -> None:
        self.client.register([(device_id, metadata) for device_id, metadata, _ in self.kettles])

    def on_stop(self) -> None:
        self.client.close()

    def next_reading(self) -> tuple[uuid.UUID, dict[str, Any]]:
        device_id, _, kettle = self.kettles[self.next_device]
        self.next_device = (self.next_device + 1) % len(self.kettles)
        if self.next_device == 0:
            self.clock += READING_STEP
        kettle.step(READING_STEP.total_seconds(), Command(), self.clock)
        return device_id, kettle.reading(self.clock)

    @task
    def insert(self) -> None:
        if self.batch_size == 1:
            self.client.insert_one(*self.next_reading())
        else:
            self.client.insert_batch([self.next_reading() for _ in range(self.batch_size)])


def _inserted_rows(environment: Environment) -> int:
    runner = environment.runner
    assert runner is not None
    return sum(
        entry.total_content_length
        for entry in runner.stats.entries.values()
        if entry.method == REQUEST_TYPE and entry.name.startswith("INSERT measurement")
    )


@events.test_start.add_listener
def _watch_row_target(environment: Environment, **_: Any) -> None:
    target = getattr(environment.parsed_options, "db_rows", 0)
    if not target or isinstance(environment.runner, WorkerRunner):
        return
    started = time.monotonic()

    def watch() -> None:
        while _inserted_rows(environment) < target:
            gevent.sleep(0.2)
        elapsed = time.monotonic() - started
        rows = _inserted_rows(environment)
        log.info("inserted %s rows in %.1f s (%.0f rows/s)", rows, elapsed, rows / elapsed)
        assert environment.runner is not None
        environment.runner.quit()

    gevent.spawn(watch)
