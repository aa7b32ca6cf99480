"""The suite is calendar-proof: the date-sensitive tests pass with every clock moved a year ahead.

A test that writes a fixed date meets `now()` somewhere (the database's chunk ages and policies, the service's
future limit, token expiry) and fails on the day the real clock overtakes it. This runs those tests again under
libfaketime with the clock a year ahead, for this process's children alike (the test PostgreSQL, the TimescaleDB
server in Node, the services), so such a test fails the day it is written, not months later.

Which tests are date-sensitive is found, not listed: every test module that handles dates (it mentions
`BASE_TIME`, `datetime` or `timedelta`). Slow tests are left out to keep this lean, and so are modules that need a
real Prometheus: Go programs read the clock without the C library, so libfaketime cannot move theirs, and a
Prometheus a year behind its targets is a different test.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.support.requirements import missing

TESTS = Path(__file__).parent
DATE_WORDS = re.compile(r"BASE_TIME|datetime|timedelta")
GO_CLOCK_WORDS = re.compile(r"monitored_stack|prometheus")
LIBFAKETIME_PLACES = (
    "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1",
    "/usr/lib/aarch64-linux-gnu/faketime/libfaketime.so.1",
    "/usr/lib/faketime/libfaketime.so.1",
)


def date_sensitive_modules() -> list[Path]:
    modules = []
    for path in sorted(TESTS.glob("test_*.py")):
        text = path.read_text(encoding="utf-8")
        if path != Path(__file__) and DATE_WORDS.search(text) and not GO_CLOCK_WORDS.search(text):
            modules.append(path)
    return modules


def libfaketime() -> str:
    found = [place for place in LIBFAKETIME_PLACES if Path(place).is_file()]
    if not found:
        missing("libfaketime is not installed (Debian: apt-get install faketime)")
    return found[0]


def test_the_date_sensitive_modules_are_found() -> None:
    names = {path.name for path in date_sensitive_modules()}
    assert {"test_timescaledb.py", "test_stats.py", "test_ingest.py", "test_validation.py"} <= names
    assert "test_static_rules.py" not in names


@pytest.mark.slow
def test_date_sensitive_tests_pass_a_year_from_now(tmp_path: Path) -> None:
    library = libfaketime()
    env = {
        **os.environ,
        "LD_PRELOAD": library,
        "FAKETIME": "+1y",
    }
    probe = subprocess.run(
        [sys.executable, "-c", "import datetime; print(datetime.datetime.now(datetime.UTC).year)"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert int(probe.stdout) == datetime.now(UTC).year + 1, "libfaketime did not move the clock"
    modules = [str(path) for path in date_sensitive_modules()]
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", "-m", "not slow", *modules],
        env=env,
        cwd=TESTS.parent,
        capture_output=True,
        text=True,
        timeout=900,
    )
    tail = "\n".join((result.stdout + result.stderr).splitlines()[-60:])
    assert result.returncode == 0, f"with the clock a year ahead:\n{tail}"
    assert re.search(r"\d+ passed", result.stdout), tail
