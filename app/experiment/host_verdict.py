"""The machines' and PostgreSQL's part of the verdict: which host or database resource gave out, in one sentence.

Judged on the stress step's settled part (its last two thirds) against the first step's, from `HostEvidence`, in
two groups that `diagnosis` places in its order: the database's resources (`judge_database`: CPU, locks, disk,
network), judged before the service's pool (which fills whenever the database is slow), and the machines as a whole
(`judge_machines`: shared cores, memory), judged after the pool and commits (which name a cause more precisely):

- shared cores: one host carries two or more of the service, the database and the generator, and its cores are full;
- database CPU: the database host's cores filled up during the run, or PostgreSQL's backends are active with no
  wait event (on a CPU or queued for one, as under a CPU quota) far more than at the first step, and that is the
  main thing they do (a CPU-starved server also syncs its WAL late, so disk waits rise with it);
- lock waits: backends queued on heavyweight locks (a row or a table);
- database disk: backends waiting on WAL writes or syncs, or on data file reads; slow WAL syncs;
- network: the service's commits slowed (its event loop and GC free) while PostgreSQL had no backend working on
  them (none on CPU, locks, disk or anything else; at most waiting for the service inside a transaction): the
  time went on the round trips between them;
- host memory: a host carrying a role ran short of memory or swapped.

Each returns None when its evidence is absent, so a run with no exporters falls through to the service's own kinds.
"""

from __future__ import annotations

import math
from typing import NamedTuple

from app.experiment.analysis import StepFigures
from app.experiment.hosts import ROLES, HostEvidence

HOST_CPU_FULL = 0.9  # busy share of a host's cores
DB_HOST_CPU_FULL = 0.85
OURS_OF_THE_CORES = 0.6  # the run's own processes (service, PostgreSQL, generator) used this share of the cores
HOST_CPU_ROSE = 0.25  # share of the cores the host's busy time grew by since the first step
RISE_FACTOR = 3.0
# Mean backends running or queued for a CPU, as for the other wait classes: a healthy database at a few hundred
# commits a second keeps about 0.3 busy (measured under `fleetbed up`, its host 17% busy).
DB_BACKENDS_ON_CPU = 0.5
CPU_SHARE_OF_WORK = 0.5  # ... and at least half as many as in the busiest other wait class
DB_BACKENDS_WAITING = 0.5  # mean backends in one wait class
WAL_SYNC_SLOW_MS = 10.0
DISK_FULL = 0.9
MEMORY_SHORT = 0.05  # available share
SWAP_PAGES_PER_S = 100.0
COMMIT_ROSE_MS = 5.0
LOOP_LAG_MS = 50.0  # the service's own event loop, as in `diagnosis`: a blocked loop also slows commits
GC_FRACTION = 0.1
# Backends doing the database's own work (anything but waiting for the client), from postgres_exporter's queries.
WORKING_BACKENDS = ("cpu", "lock", "io_wal", "io_data", "lwlock", "other")


class Finding(NamedTuple):
    kind: str
    sentence: str


def settled(step: StepFigures) -> tuple[float, float]:
    return step.start + (step.end - step.start) / 3, step.end


def _rose(now: float, before: float, floor: float) -> bool:
    if not math.isfinite(now) or now < floor:
        return False
    return not math.isfinite(before) or before <= 0 or now >= RISE_FACTOR * before


def _zero(value: float) -> float:
    return value if math.isfinite(value) else 0.0


class _Judge:
    def __init__(self, hosts: HostEvidence, step: StepFigures, base: StepFigures) -> None:
        self.hosts, self.step, self.base = hosts, step, base
        self.at = f"at {step.devices:,} devices"

    def now(self, host: str, quantity: str) -> float:
        return self.hosts.figure(host, quantity, *settled(self.step))

    def before(self, host: str, quantity: str) -> float:
        return self.hosts.figure(host, quantity, *settled(self.base))

    def busy_share(self, host: str, before: bool = False) -> float:
        at = self.before if before else self.now
        return at(host, "cpu_busy_cores") / max(1.0, at(host, "cpu_cores"))

    def shared_cores(self) -> Finding | None:
        for host in self.hosts.hosts():
            roles = [role for role in ROLES if role in self.hosts.roles.get(host, [])]
            share = self.busy_share(host)
            if len(roles) < 2 or not math.isfinite(share) or share < HOST_CPU_FULL:
                continue
            cores = self.now(host, "cpu_cores")
            parts = {"service": self.step.service_cpu_cores}
            if "database" in roles:
                parts["PostgreSQL"] = self.now(host, "postgres_cpu_cores")
            if "generator" in roles:
                parts["the generator"] = self.step.generator_cpu_cores
            ours = sum(_zero(value) for value in parts.values())
            # Full because of the run's own processes: a machine kept busy by others did not fail this run's parts.
            if ours < OURS_OF_THE_CORES * max(1.0, cores):
                continue
            used = ", ".join(f"{name} {value:.2f}" for name, value in parts.items() if math.isfinite(value))
            return Finding(
                "shared-cores",
                f"The machine's cores were shared and full: {self.at} {_host(host)} had {100 * share:.0f}% of its "
                f"{cores:.0f} cores busy, shared by {', '.join(roles)} ({used} cores); none of them could take "
                "more. Give them separate machines (or cores) to find which one gives out first.",
            )
        return None

    def database_cpu(self) -> Finding | None:
        for host in self.hosts.hosts_with("database"):
            on_cpu, before = self.now(host, "db_backends_cpu"), self.before(host, "db_backends_cpu")
            share, share_before = self.busy_share(host), self.busy_share(host, before=True)
            dedicated = set(self.hosts.roles.get(host, [])) == {"database"}
            # Full, and filled by this run: a host busy with something else from the start did not give out here.
            host_full = (
                dedicated
                and math.isfinite(share)
                and share >= DB_HOST_CPU_FULL
                and (not math.isfinite(share_before) or share - share_before >= HOST_CPU_ROSE)
            )
            others = [self.now(host, f"db_backends_{name}") for name in WORKING_BACKENDS if name != "cpu"]
            # On a CPU (or queued for one) more than before, and the main thing the working backends do.
            cpu_bound = _rose(on_cpu, before, DB_BACKENDS_ON_CPU) and on_cpu >= CPU_SHARE_OF_WORK * max(
                [_zero(value) for value in others], default=0.0
            )
            if host_full or cpu_bound:
                host_text = f"{100 * share:.0f}% of its cores busy" if math.isfinite(share) else "no CPU figure"
                return Finding(
                    "database-cpu",
                    f"The database host ran out of CPU: {self.at} {_zero(on_cpu):.1f} of PostgreSQL's backends "
                    f"were running or queued for a CPU with nothing else to wait on (first step {_zero(before):.1f}); "
                    f"{_host(host)} had {host_text}.",
                )
        return None

    def lock_waits(self) -> Finding | None:
        for host in self.hosts.hosts_with("database"):
            waiting, before = self.now(host, "db_backends_lock"), self.before(host, "db_backends_lock")
            if _rose(waiting, before, DB_BACKENDS_WAITING):
                deadlocks = _zero(self.now(host, "db_deadlocks_per_s"))
                return Finding(
                    "lock-waits",
                    f"Writers queued on locks: {self.at} {waiting:.1f} of PostgreSQL's backends waited on a row or "
                    f"table lock on average (first step {_zero(before):.1f}), with {deadlocks:.2f} deadlocks/s; "
                    "something holds the rows the service writes.",
                )
        return None

    def database_disk(self) -> Finding | None:
        for host in self.hosts.hosts_with("database"):
            wal, data = self.now(host, "db_backends_io_wal"), self.now(host, "db_backends_io_data")
            sync_ms, sync_before = self.now(host, "db_wal_sync_ms"), self.before(host, "db_wal_sync_ms")
            util = self.now(host, "disk_util")
            sync_text = (
                f"{sync_ms:.1f} ms per WAL sync (first step {sync_before:.1f} ms)"
                if math.isfinite(sync_ms)
                else "no sync timing (set track_wal_io_timing = on)"
            )
            if _rose(wal, self.before(host, "db_backends_io_wal"), DB_BACKENDS_WAITING) or _rose(
                sync_ms, sync_before, WAL_SYNC_SLOW_MS
            ):
                return Finding(
                    "database-disk",
                    f"Commits waited on the database's disk: {self.at} {_zero(wal):.1f} of PostgreSQL's backends "
                    f"waited on WAL writes and syncs on average, {sync_text}; "
                    f"the busiest disk of {_host(host)} was {100 * _zero(util):.0f}% busy.",
                )
            if _rose(data, self.before(host, "db_backends_io_data"), DB_BACKENDS_WAITING):
                hit = self.now(host, "db_buffer_hit_ratio")
                return Finding(
                    "database-disk",
                    f"Queries waited on the database's disk: {self.at} {data:.1f} of PostgreSQL's backends waited "
                    f"on data file reads on average, the buffer cache hit ratio was {100 * _zero(hit):.1f}% and the "
                    f"busiest disk of {_host(host)} was {100 * _zero(util):.0f}% busy.",
                )
        return None

    def network(self) -> Finding | None:
        step = self.step
        commit_rose = _rose(step.commit_ms, self.base.commit_ms, COMMIT_ROSE_MS)
        service_free = _zero(step.loop_lag_ms) < LOOP_LAG_MS and _zero(step.gc_fraction) < GC_FRACTION
        for host in self.hosts.hosts_with("database"):
            if "service" in self.hosts.roles.get(host, []):
                continue  # the service beside its database talks over loopback: no network to blame
            working = [self.now(host, f"db_backends_{name}") for name in WORKING_BACKENDS]
            if not (commit_rose and service_free) or not any(math.isfinite(value) for value in working):
                continue
            busy = sum(_zero(value) for value in working)
            if busy >= DB_BACKENDS_WAITING:
                continue
            client = self.now(host, "db_backends_client")
            return Finding(
                "network",
                f"The network between the service and the database was the limit: {self.at} a batch took "
                f"{step.commit_ms:.1f} ms to commit at the service (first step {self.base.commit_ms:.1f} ms) while "
                f"PostgreSQL had {busy:.1f} backends working on average (on CPU, locks, disk or anything else) and "
                f"{_zero(client):.1f} inside a transaction waiting for the service: the time went on the round "
                "trips between them.",
            )
        return None

    def host_memory(self) -> Finding | None:
        for host in self.hosts.hosts():
            if not self.hosts.roles.get(host):
                continue
            available, swapping = self.now(host, "mem_available_ratio"), self.now(host, "swap_pages_per_s")
            short = math.isfinite(available) and available < MEMORY_SHORT
            if short or _rose(swapping, self.before(host, "swap_pages_per_s"), SWAP_PAGES_PER_S):
                return Finding(
                    "host-memory",
                    f"{_host(host).capitalize()} ran short of memory: {self.at} {100 * _zero(available):.0f}% of its "
                    f"memory was available and it swapped {_zero(swapping):.0f} pages/s "
                    f"(it carries the {' and '.join(self.hosts.roles[host])}).",
                )
        return None


def _host(host: str) -> str:
    return "this machine" if host == "local" else f"host {host}"


def judge_database(hosts: HostEvidence | None, step: StepFigures, base: StepFigures) -> Finding | None:
    """The first of the database's resources that gave out: CPU, locks, disk, the network to it."""
    if hosts is None:
        return None
    judge = _Judge(hosts, step, base)
    for check in (judge.database_cpu, judge.lock_waits, judge.database_disk, judge.network):
        found = check()
        if found is not None:
            return found
    return None


def judge_machines(hosts: HostEvidence | None, step: StepFigures, base: StepFigures) -> Finding | None:
    """A machine that gave out as a whole: cores shared and full, or memory."""
    if hosts is None:
        return None
    judge = _Judge(hosts, step, base)
    for check in (judge.shared_cores, judge.host_memory):
        found = check()
        if found is not None:
            return found
    return None


def _figures(parts: list[tuple[str, float, str]]) -> str:
    return ", ".join(template.format(value) for _, value, template in parts if math.isfinite(value))


def host_evidence(hosts: HostEvidence | None, step: StepFigures) -> list[str]:
    """One line per host (CPU, memory, disk, network) and per database host (PostgreSQL), then what was not seen."""
    if hosts is None:
        return []
    start, end = settled(step)
    lines = []
    for host in hosts.hosts():

        def at(quantity: str, host: str = host) -> float:
            return hosts.figure(host, quantity, start, end)

        roles = ", ".join(hosts.roles.get(host, [])) or "no role"
        machine = _figures([
            ("cpu", at("cpu_busy_cores"), "CPU {:.2f} cores busy" + f" of {at('cpu_cores'):.0f}"),
            ("iowait", at("cpu_iowait_cores"), "I/O wait {:.2f} cores"),
            ("postgres", at("postgres_cpu_cores"), "PostgreSQL {:.2f} cores"),
            ("memory", 100 * at("mem_available_ratio"), "memory {:.0f}% available"),
            ("swap", at("swap_pages_per_s"), "swap {:.0f} pages/s"),
            ("disk", 100 * at("disk_util"), "busiest disk {:.0f}% busy"),
            ("await", at("disk_await_ms"), "{:.1f} ms per I/O"),
            ("net", at("net_bytes_per_s") / 1e6, "network {:.2f} MB/s"),
        ])  # fmt: skip
        if machine:
            lines.append(f"{_host(host)} ({roles}): {machine}")
        database = _figures([
            ("cpu", at("db_backends_cpu"), "backends on CPU {:.1f}"),
            ("lock", at("db_backends_lock"), "on locks {:.1f}"),
            ("wal", at("db_backends_io_wal"), "on WAL I/O {:.1f}"),
            ("data", at("db_backends_io_data"), "on data I/O {:.1f}"),
            ("lwlock", at("db_backends_lwlock"), "on LWLocks {:.1f}"),
            ("other", at("db_backends_other"), "on other waits {:.1f}"),
            ("client", at("db_backends_client"), "waiting for the service in a transaction {:.1f}"),
            ("commits", at("db_commits_per_s"), "{:.0f} commits/s"),
            ("rollbacks", at("db_rollbacks_per_s"), "{:.1f} rollbacks/s"),
            ("write", at("db_wal_write_ms"), "WAL write {:.2f} ms"),
            ("sync", at("db_wal_sync_ms"), "WAL sync {:.2f} ms"),
            ("checkpoints", 60 * at("db_checkpoints_per_s"), "{:.1f} checkpoints/min"),
            ("hit", 100 * at("db_buffer_hit_ratio"), "buffer hit {:.1f}%"),
            ("deadlocks", at("db_deadlocks_per_s"), "{:.2f} deadlocks/s"),
            ("connections", at("db_connections"), "{:.0f} connections" + f" of {at('db_max_connections'):.0f}"),
        ])  # fmt: skip
        if database:
            lines.append(f"PostgreSQL on {_host(host)}: {database}")
    lines += [f"not seen: {what}" for what in hosts.unseen]
    return lines


__all__ = ["Finding", "host_evidence", "judge_database", "judge_machines"]
