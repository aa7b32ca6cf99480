"""Argument types shared by the commands."""

from __future__ import annotations

import argparse
import re

_DURATION = re.compile(r"^(\d+(?:\.\d+)?)(ms|s|m|h|d)?$")
_UNIT_S = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}


def parse_duration_s(text: str) -> float:
    """`15s`, `1.5m`, `2h`, `500ms`, or plain seconds."""
    match = _DURATION.match(text.strip())
    if match is None or float(match[1]) <= 0:
        raise argparse.ArgumentTypeError(f"not a positive duration: {text!r} (examples: 500ms, 15s, 2m, 1h)")
    return float(match[1]) * _UNIT_S[match[2]]


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value
