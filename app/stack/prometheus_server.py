"""A local Prometheus server for one machine: write its configuration, start the `prometheus` binary, stop it.

The deployments (docker compose) use `monitoring/prometheus/prometheus.yml`, whose targets are compose service
names. On one machine the same recording and alert rules are used with 127.0.0.1 targets: `write_local_config`
writes that file, `LocalPrometheus` runs the binary on it (storage in a directory of the caller's choosing) until
`stop()`. `fleetbed up` and the test suite both use it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from app.stack.lifetime import die_with_parent
from app.stack.processes import stop
from app.stack.resources import monitoring_dir

INSTALL_HINT = (
    "Prometheus is not installed: on Debian/Ubuntu `apt-get install prometheus` (do not enable its service; "
    "fleetbed runs the binary itself), elsewhere download it from prometheus.io and put `prometheus` on PATH"
)
READY_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 10.0


class PrometheusError(RuntimeError):
    """The binary is missing, did not become ready, or exited early; the message says what to do."""


def rule_files() -> list[Path]:
    return sorted((monitoring_dir() / "prometheus" / "rules").glob("*.yml"))


def prometheus_binary() -> str | None:
    return shutil.which("prometheus")


@dataclass(frozen=True)
class ScrapeTargets:
    """Where the local components listen ("127.0.0.1:port"); None leaves the job out."""

    service: list[str]
    locust: str | None = None
    node: str | None = None
    postgres: str | None = None


def local_config(targets: ScrapeTargets, scrape_interval_s: float = 5.0) -> str:
    """The text of a prometheus.yml scraping `targets`, with the shipped rules (absolute paths)."""
    jobs: list[tuple[str, list[str]]] = [("fleetbed", targets.service)]
    jobs += [(job, [target]) for job, target in (("locust", targets.locust), ("node", targets.node)) if target]
    if targets.postgres:
        jobs.append(("postgres", [targets.postgres]))
    interval = f"{scrape_interval_s:g}s"
    rules = rule_files()
    lines = [
        "# Written by fleetbed for a run on one machine; the deployments use monitoring/prometheus/prometheus.yml.",
        "global:",
        f"  scrape_interval: {interval}",
        f"  evaluation_interval: {interval}",
        *(["rule_files:", *(f"  - {path}" for path in rules)] if rules else ["rule_files: []"]),
        "scrape_configs:",
    ]
    for job, job_targets in jobs:
        lines += [f"  - job_name: {job}", "    static_configs:", f"      - targets: [{', '.join(job_targets)}]"]
    return "\n".join(lines) + "\n"


def write_local_config(path: Path, targets: ScrapeTargets, scrape_interval_s: float = 5.0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(local_config(targets, scrape_interval_s))
    return path


@dataclass
class LocalPrometheus:
    """The `prometheus` binary on `config`, listening on 127.0.0.1:`port`, keeping its data in `storage`."""

    config: Path
    storage: Path
    port: int = 9090
    log_path: Path | None = None
    process: subprocess.Popen[bytes] | None = field(default=None, init=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> LocalPrometheus:
        binary = prometheus_binary()
        if binary is None:
            raise PrometheusError(INSTALL_HINT)
        self.storage.mkdir(parents=True, exist_ok=True)
        log_path = self.log_path or self.storage / "prometheus.log"
        with log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [
                    binary,
                    f"--config.file={self.config}",
                    f"--storage.tsdb.path={self.storage}",
                    f"--web.listen-address=127.0.0.1:{self.port}",
                    "--web.enable-lifecycle",
                    "--storage.tsdb.retention.time=30d",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                preexec_fn=die_with_parent(os.getpid()),
            )
        self._wait_ready(log_path)
        return self

    def _wait_ready(self, log_path: Path) -> None:
        assert self.process is not None
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                tail = log_path.read_text(errors="replace")[-2000:]
                raise PrometheusError(f"prometheus exited with {self.process.returncode}:\n{tail}")
            try:
                with urllib.request.urlopen(f"{self.url}/-/ready", timeout=2) as response:  # noqa: S310 (http only)
                    if response.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(0.2)
        self.stop()
        raise PrometheusError(f"prometheus not ready on {self.url} after {READY_TIMEOUT_S:g} s; see {log_path}")

    def stop(self) -> None:
        if self.process is None:
            return
        stop(self.process, STOP_TIMEOUT_S)
        self.process = None

    def __enter__(self) -> LocalPrometheus:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.stop()
