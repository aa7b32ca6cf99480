"""Skipping a test for a missing tool locally, failing it in CI.

CI sets FLEETBED_REQUIRE_ALL=1 after installing every tool, so a test can never pass there by skipping.
"""

from __future__ import annotations

import os
import shutil
from typing import NoReturn

import pytest

REQUIRE_ALL_VARIABLE = "FLEETBED_REQUIRE_ALL"


def requirements_enforced() -> bool:
    return os.environ.get(REQUIRE_ALL_VARIABLE, "") not in ("", "0", "false", "no")


def missing(reason: str) -> NoReturn:
    if requirements_enforced():
        pytest.fail(f"{reason} ({REQUIRE_ALL_VARIABLE} is set: missing tools fail instead of skipping)")
    pytest.skip(reason)


def installed(*names: str) -> str:
    """The first of `names` on PATH (Debian's package name first); missing, with how to install it, otherwise."""
    found = next((path for path in map(shutil.which, names) if path), None)
    if found is None:
        missing(f"{names[-1]} is not installed (Debian: apt-get install {names[0]})")
    return found
