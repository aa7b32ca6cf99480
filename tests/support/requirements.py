"""Skipping a test for a missing tool locally, failing it in CI.

CI sets FLEETBED_REQUIRE_ALL=1 after installing every tool, so a test can never pass there by skipping.
"""

from __future__ import annotations

import os
from typing import NoReturn

import pytest

REQUIRE_ALL_VARIABLE = "FLEETBED_REQUIRE_ALL"


def requirements_enforced() -> bool:
    return os.environ.get(REQUIRE_ALL_VARIABLE, "") not in ("", "0", "false", "no")


def missing(reason: str) -> NoReturn:
    if requirements_enforced():
        pytest.fail(f"{reason} ({REQUIRE_ALL_VARIABLE} is set: missing tools fail instead of skipping)")
    pytest.skip(reason)
