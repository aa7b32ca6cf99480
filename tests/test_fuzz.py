"""Property-based fuzzing of the whole API from its own OpenAPI document (schemathesis): no 5xx, and every
response conforms to the documented status codes, content types, headers and schemas."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tempfile
import urllib.request
from pathlib import Path

import orjson
import pytest

from tests.support.processes import free_port, read_output, running_fleetbed
from tests.support.requirements import missing

pytestmark = pytest.mark.slow

CONFIG = Path(__file__).with_name("schemathesis.toml")
OPERATOR_TOKEN = "operator-token-for-fuzzing-0123456789"
DEVICE_OPERATIONS = r"^/(login|command|measurement|stats|healthz|readyz|openapi\.json|metrics)$"


def schemathesis() -> str:
    found = shutil.which("st", path=str(Path(sys.executable).parent))
    if found is None:
        missing("schemathesis is not installed (pip install -e '.[dev]')")
    return found


def fuzz(cli: str, base: str, token: str, path_filter: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            cli, "--config-file", str(CONFIG), "run", f"{base}/openapi.json",
            "--header", f"Authorization: Bearer {token}",
            "--checks", "all", "--exclude-checks", "positive_data_acceptance",
            "--max-examples", "40", "--seed", "20261123", "--workers", "2",
            *path_filter,
        ],
        capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip


def test_the_api_survives_fuzzing_from_its_own_schema(pg_url: str) -> None:
    cli = schemathesis()
    port = free_port()
    env = {
        "FLEETBED_DATABASE_URL": pg_url,
        "FLEETBED_DATA_DIR": tempfile.mkdtemp(),
        "FLEETBED_PORT": str(port),
        "FLEETBED_OPERATOR_TOKEN": OPERATOR_TOKEN,
    }
    base = f"http://127.0.0.1:{port}"
    with running_fleetbed(["serve"], env, port) as service:
        with urllib.request.urlopen(urllib.request.Request(f"{base}/login", method="POST")) as response:
            device_token = orjson.loads(response.read())["token"]
        as_device = fuzz(cli, base, device_token, ["--include-path-regex", DEVICE_OPERATIONS])
        as_operator = fuzz(cli, base, OPERATOR_TOKEN, ["--exclude-path-regex", r"^/(command|measurement)$"])
        service.terminate()
        service.wait(60)
        log = read_output(service)
    for run in (as_device, as_operator):
        summary = run.stdout[-3000:]
        assert run.returncode == 0, summary
        generated = re.search(r"(\d+) generated", run.stdout)
        assert generated is not None
        print(f"fuzz: {generated[1]} cases generated")
        assert int(generated[1]) > 100, summary
    assert "Traceback" not in log, "no unexpected error was logged while fuzzing"
