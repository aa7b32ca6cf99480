"""Hosts for the multi-host rehearsals on one machine: a network namespace per host, each with its own address on
a virtual switch (a bridge in a namespace of its own, one veth per host), as the NixOps network's machines have;
processes started inside them and stopped when a block ends; the fleet's Locust and compose.yaml's worker command.
Used by tests/test_netns_rehearsal.py and tests/test_netns_verdict.py (root and iproute2 needed; skipped with the
reason otherwise, failed in CI).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

import yaml

from app.stack.processes import stop as stop_process
from tests.support.requirements import missing

REPO = Path(__file__).resolve().parents[2]
LOCUSTFILE = REPO / "locustfiles" / "kettle.py"
SUBNET_PREFIX = "10.231.0"

# Fetch a URL from inside a namespace; prints the status and the body as one JSON line.
PROBE = """
import json, sys, urllib.error, urllib.request
request = urllib.request.Request(sys.argv[1], headers={"Authorization": "Bearer " + sys.argv[2]})
try:
    with urllib.request.urlopen(request, timeout=3) as response:
        print(json.dumps([response.status, response.read().decode()]))
except urllib.error.HTTPError as error:
    print(json.dumps([error.code, error.read().decode()]))
except OSError as error:
    print(json.dumps([0, str(error)]))
"""


@dataclass(frozen=True)
class Host:
    """One machine of the rehearsal: a network namespace with one address."""

    role: str
    namespace: str
    address: str

    def command(self, *argv: str) -> list[str]:
        return ["ip", "netns", "exec", self.namespace, *argv]

    def run(self, *argv: str) -> str:
        return subprocess.run(self.command(*argv), capture_output=True, text=True, check=True).stdout

    def fetch(self, url: str, token: str = "") -> tuple[int, str]:
        status, body = json.loads(self.run(sys.executable, "-c", PROBE, url, token))
        return int(status), str(body)

    def established_peers(self, local_port: int) -> set[str]:
        """Addresses of the hosts with an established TCP connection to `local_port` here."""
        lines = self.run("ss", "-Htn", "state", "established", f"( sport = :{local_port} )").splitlines()
        return {line.split()[-1].rsplit(":", 1)[0] for line in lines if line.strip()}


def ip(*argv: str) -> None:
    subprocess.run(["ip", *argv], capture_output=True, text=True, check=True)


@contextmanager
def virtual_network(roles: list[str]) -> Iterator[dict[str, Host]]:
    """A namespace per role, wired to a bridge in a switch namespace; removed with every process left inside."""
    if os.geteuid() != 0 or shutil.which("ip") is None or shutil.which("ss") is None:
        missing("the multi-host rehearsal needs root and iproute2 (ip netns, ss)")
    prefix = f"fb{os.getpid()}-"
    switch = f"{prefix}switch"
    hosts = {role: Host(role, f"{prefix}{role}", f"{SUBNET_PREFIX}.{i + 1}") for i, role in enumerate(roles)}
    created: list[str] = []
    try:
        try:
            ip("netns", "add", switch)
        except subprocess.CalledProcessError as error:
            missing(f"cannot create network namespaces here: {error.stderr.strip()}")
        created.append(switch)
        ip("-n", switch, "link", "add", "br0", "type", "bridge")
        ip("-n", switch, "link", "set", "dev", "br0", "up")
        for host in hosts.values():
            ip("netns", "add", host.namespace)
            created.append(host.namespace)
            ip("-n", host.namespace, "link", "set", "dev", "lo", "up")
            ip(
                "link",
                "add",
                "eth0",
                "netns",
                host.namespace,
                "type",
                "veth",
                "peer",
                "name",
                host.role,
                "netns",
                switch,
            )
            ip("-n", switch, "link", "set", "dev", host.role, "master", "br0", "up")
            ip("-n", host.namespace, "addr", "add", f"{host.address}/24", "dev", "eth0")
            ip("-n", host.namespace, "link", "set", "dev", "eth0", "up")
        yield hosts
    finally:
        for namespace in reversed(created):
            kill_processes_in(namespace)
            subprocess.run(["ip", "netns", "del", namespace], capture_output=True, check=False)


def kill_processes_in(namespace: str) -> None:
    """What the rehearsal started and left behind in its namespace (the embedded PostgreSQL after a crash)."""
    pids = subprocess.run(["ip", "netns", "pids", namespace], capture_output=True, text=True, check=False).stdout
    for pid in pids.split():
        with suppress(ProcessLookupError):
            os.kill(int(pid), signal.SIGKILL)


@contextmanager
def started(
    command: list[str], log: Path, env: dict[str, str], stop: signal.Signals
) -> Iterator[subprocess.Popen[bytes]]:
    """A process whose output goes to `log`; stopped with `stop` (then killed) when the block ends."""
    with open(log, "wb") as output:
        process = subprocess.Popen(command, env={**os.environ, **env}, stdout=output, stderr=subprocess.STDOUT)
    try:
        yield process
    finally:
        stop_process(process, 60, stop)


def wait_for(what: str, seen: Callable[[], set[str]], expected: set[str], timeout_s: float = 90.0) -> None:
    """Poll `seen()` until it includes everything in `expected`."""
    deadline = time.monotonic() + timeout_s
    while not seen() >= expected:
        if time.monotonic() > deadline:
            raise AssertionError(f"not seen within {timeout_s} s: {what} (expected {expected}, seen {seen()})")
        time.sleep(0.5)


def locust(host: Host, *argv: str) -> list[str]:
    return host.command(sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), *argv)


def compose_worker_command(master_address: str) -> list[str]:
    """The Locust worker's command from compose.yaml, with the master's service name replaced by its address."""
    command: list[str] = yaml.safe_load((REPO / "compose.yaml").read_text())["services"]["locust-worker"]["command"]
    assert "locust-master" in command
    return [master_address if arg == "locust-master" else arg for arg in command]
