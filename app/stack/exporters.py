"""node_exporter and postgres_exporter for one machine, as the deployments run them: what `fleetbed up` starts
beside its Prometheus so that a report of a run made in its web UI sees this machine and PostgreSQL.

The binaries are Debian's (`prometheus-node-exporter`, `prometheus-postgres-exporter`) or the upstream names
(`node_exporter`, `postgres_exporter`) on PATH; postgres_exporter runs with the shipped extra queries
(`monitoring/postgres_exporter/queries.yml`: wait events, WAL timing, checkpoints), found through
`app.stack.resources` so an installed wheel finds its own copy. An exporter that is not installed is not started
and is named, with how to install it, in `LocalExporters.missing`.
"""

from __future__ import annotations

import shutil
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from app.stack.processes import child, free_port
from app.stack.resources import monitoring_dir

NODE_EXPORTER = ("prometheus-node-exporter", "node_exporter")
POSTGRES_EXPORTER = ("prometheus-postgres-exporter", "postgres_exporter")
# What the verdict reads of a host (app.experiment.prometheus_evidence): CPU by mode, memory, swap, disks, network.
NODE_COLLECTORS = ("cpu", "meminfo", "diskstats", "netdev", "vmstat")


def binary(names: tuple[str, ...]) -> str | None:
    """The first of `names` on PATH."""
    return next((found for found in map(shutil.which, names) if found), None)


def queries_file() -> Path:
    return monitoring_dir() / "postgres_exporter" / "queries.yml"


def node_exporter_args(path: str, listen: str) -> list[str]:
    collectors = [f"--collector.{name}" for name in NODE_COLLECTORS]
    return [path, f"--web.listen-address={listen}", "--collector.disable-defaults", *collectors]


def postgres_exporter_args(path: str, listen: str) -> list[str]:
    return [path, f"--web.listen-address={listen}", f"--extend.query-path={queries_file()}"]


def exporter_dsn(database_url: str) -> str:
    """postgres_exporter's DATA_SOURCE_NAME: the database URL, without TLS unless the URL asks for it."""
    if "sslmode=" in database_url:
        return database_url
    return f"{database_url}{'&' if '?' in database_url else '?'}sslmode=disable"


def install_hint(names: tuple[str, ...], what: str) -> str:
    return (
        f"{names[1]} not installed (Debian: apt-get install {names[0]}; elsewhere put {names[1]} on PATH): "
        f"reports cannot see {what}"
    )


@dataclass
class LocalExporters:
    """node_exporter and postgres_exporter of `database_url` on free 127.0.0.1 ports, logs in `logs`, while open.

    `node` and `postgres` are the scrape targets ("127.0.0.1:port") of those started, `missing` the sentences for
    those not installed."""

    database_url: str
    logs: Path
    node: str | None = field(default=None, init=False)
    postgres: str | None = field(default=None, init=False)
    missing: list[str] = field(default_factory=list, init=False)
    _stack: ExitStack = field(default_factory=ExitStack, init=False)

    def __enter__(self) -> LocalExporters:
        with ExitStack() as stack:
            node = binary(NODE_EXPORTER)
            if node is None:
                self.missing.append(install_hint(NODE_EXPORTER, "this machine's CPU, memory, disks and network"))
            else:
                self.node = f"127.0.0.1:{free_port()}"
                stack.enter_context(child(node_exporter_args(node, self.node), self.logs / "node-exporter.log", {}))
            postgres = binary(POSTGRES_EXPORTER)
            if postgres is None:
                self.missing.append(install_hint(POSTGRES_EXPORTER, "PostgreSQL's wait events, commits and WAL"))
            else:
                self.postgres = f"127.0.0.1:{free_port()}"
                env = {"DATA_SOURCE_NAME": exporter_dsn(self.database_url)}
                args = postgres_exporter_args(postgres, self.postgres)
                stack.enter_context(child(args, self.logs / "postgres-exporter.log", env))
            self._stack = stack.pop_all()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self._stack.close()
