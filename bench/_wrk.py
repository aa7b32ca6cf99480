"""Driving wrk: Lua scripts for fleetbed's requests, and reading its summary."""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

WRK_CORE = "1"  # the service runs on core 0, the load generator on core 1


@dataclass(frozen=True)
class WrkResult:
    requests_per_s: float
    p50_ms: float
    p99_ms: float
    non_2xx: int


def _ms(value: str) -> float:
    """wrk's latency text in milliseconds; NaN when wrk had nothing to report (e.g. no request completed)."""
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m|h)", value)
    if match is None:
        return float("nan")
    return float(match[1]) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0, "h": 3_600_000.0}[match[2]]


def run_wrk(url: str, script: Path | None, seconds: int = 10, connections: int = 50) -> WrkResult:
    command = ["taskset", "-c", WRK_CORE, "wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency"]
    if script is not None:
        command += ["-s", str(script)]
    output = subprocess.run([*command, url], capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", output)[1])  # type: ignore[index]
    p50 = _ms(re.search(r"50%\s+(\S+)", output)[1])  # type: ignore[index]
    p99 = _ms(re.search(r"99%\s+(\S+)", output)[1])  # type: ignore[index]
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    return WrkResult(rps, p50, p99, int(non_2xx[1]) if non_2xx else 0)


def request_script(path: Path, tokens: list[str], request_body: str) -> Path:
    """A wrk script whose `request` runs `request_body` (Lua) with `tokens` and a request counter `n` in scope."""
    listed = ",\n".join(f'"{token}"' for token in tokens)
    path.write_text(
        f"local tokens = {{\n{listed}\n}}\nlocal n = 0\nrequest = function()\n  n = n + 1\n{request_body}end\n"
    )
    return path


def get_script(path: Path, tokens: list[str]) -> Path:
    """GET /command, cycling through device tokens."""
    return request_script(
        path,
        tokens,
        """  return wrk.format("GET", "/command", {["Authorization"] = "Bearer " .. tokens[n % #tokens + 1]})
""",
    )


def post_script(path: Path, tokens: list[str], start_epoch: int) -> Path:
    """POST /measurement: device n % len(tokens), each device's time one second later per round: no duplicates."""
    return request_script(
        path,
        tokens,
        f"""  local device = n % #tokens + 1
  local t = {start_epoch} + math.floor(n / #tokens)
  local body = string.format(
    '{{"time":"%s","charge_now":%d,"charge_full":1000,"charge_rate":-2.5,"ambient_temp":21.5,' ..
    '"water_temp":%.1f,"water_level":%d}}',
    os.date("!%Y-%m-%dT%H:%M:%SZ", t), n % 1000, 20 + (n % 80), n % 101)
  return wrk.format("POST", "/measurement",
    {{["Authorization"] = "Bearer " .. tokens[device], ["Content-Type"] = "application/json"}}, body)
""",
    )
