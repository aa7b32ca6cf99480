"""The bottleneck of a run in one sentence, with the evidence that names it.

Judged on the *stress step* (the knee, else the first step that broke the SLO, else the last step) against the
first step. A generator out of CPU is named first: then nothing measured on the service can be trusted. Then, in
the order they usually give out: service CPU; the database's own resources when they were measured (its CPU, lock
waits, its disk, the network to it: `host_verdict`); a machine whose cores were shared and full with the run's own
processes, or short of memory (a full machine slows the database, so the pool and the commits are its symptoms);
the database pool; commit time; GC pauses; event-loop lag. Last, the generator again: devices behind schedule
while the service answered quickly, or answers far slower at the devices than at the service (time spent in the
generator's own queues), with none of the service's resources saturated. (A device waiting on a stuck service also
falls behind its schedule, so lag alone does not blame the generator.) `unknown` only when nothing measured rose,
and then the sentence names what could not be seen.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from app.experiment.analysis import StepFigures
from app.experiment.host_verdict import host_evidence, judge_database, judge_machines
from app.experiment.hosts import HostEvidence

GENERATOR_CPU_SATURATED = 0.85  # of one core: Locust runs one process
SERVICE_CPU_SATURATED = 0.8  # of one core per worker
POOL_WAITING = 0.5
POOL_UTILISATION = 0.8
POOL_SOME_WAITING = 0.05
POOL_ACQUIRE_MS = 5.0
COMMIT_MS = 20.0
COMMIT_SLOW_MS = 80.0  # slow whatever the first step saw: a batch commit this long is the storage's doing
RISE_FACTOR = 3.0
GC_FRACTION = 0.1
LOOP_LAG_MS = 50.0
LAG_BEHIND_MS = 250.0
FAST_SERVER_MS = 50.0
CLIENT_GAP_FACTOR = 4.0
CLIENT_GAP_MS = 100.0


@dataclass(frozen=True)
class Diagnosis:
    # generator, service-cpu, database-cpu, lock-waits, database-disk, network, pool, commit, shared-cores,
    # host-memory, gc, event-loop, none, unknown
    kind: str
    sentence: str
    evidence: list[str]
    step_devices: int | None


def _ms(value: float) -> str:
    """A duration for a sentence; none measured (no acquire completed, say) reads as such, not as "nan ms"."""
    return f"{value:.1f} ms" if math.isfinite(value) else "no figure (none completed)"


def _locust_cpu(cores: float) -> str:
    """Locust's CPU for a sentence: none when it was not measured (a Prometheus that kept no Locust CPU figures)."""
    return f"Locust used {cores:.2f} cores" if math.isfinite(cores) else "Locust's CPU was not measured"


def _rose(now: float, before: float, floor: float) -> bool:
    if not math.isfinite(now) or now < floor:
        return False
    return not math.isfinite(before) or before <= 0 or now >= RISE_FACTOR * before


def stress_step(steps: list[StepFigures], knee_step: StepFigures | None) -> StepFigures:
    broken = next((step for step in steps if not step.slo_passed), None)
    candidates = [step for step in (knee_step, broken) if step is not None]
    return min(candidates, key=lambda s: s.devices) if candidates else steps[-1]


def diagnose(
    steps: list[StepFigures], knee_step: StepFigures | None, workers: int, hosts: HostEvidence | None = None
) -> Diagnosis:
    if not steps:
        return Diagnosis("unknown", "No step lasted long enough to judge: run longer.", [], None)
    step, base = stress_step(steps, knee_step), steps[0]
    at = f"at {step.devices:,} devices"
    cpu_share = step.service_cpu_cores / max(1, workers)
    evidence = [
        f"service CPU {step.service_cpu_cores:.2f} cores for {workers} worker(s)",
        f"generator CPU {step.generator_cpu_cores:.2f} cores",
        f"p95 {step.p95_ms:.0f} ms (first step {base.p95_ms:.0f} ms), server-side mean {step.server_ms:.1f} ms",
        f"schedule lag p99 {step.lag_p99_ms:.0f} ms",
        f"pool {100 * step.pool_utilisation:.0f}% in use, {step.pool_waiting:.1f} waiting, "
        f"acquire {_ms(step.pool_acquire_ms)} (first step {_ms(base.pool_acquire_ms)})",
        f"commit {step.commit_ms:.1f} ms per batch (first step {base.commit_ms:.1f} ms)",
        f"GC {100 * step.gc_fraction:.1f}% of the time, event-loop lag {step.loop_lag_ms:.1f} ms",
        *host_evidence(hosts, step),
    ]
    server_fast = not math.isfinite(step.server_ms) or step.server_ms < FAST_SERVER_MS
    generator_busy = math.isfinite(step.generator_cpu_cores) and step.generator_cpu_cores >= GENERATOR_CPU_SATURATED
    generator_behind = math.isfinite(step.lag_p99_ms) and step.lag_p99_ms > LAG_BEHIND_MS and server_fast
    # Devices saw far slower answers than the service gave: the time went in the generator's own queues.
    generator_queueing = (
        math.isfinite(step.p50_ms)
        and math.isfinite(step.server_ms)
        and step.p50_ms > CLIENT_GAP_FACTOR * step.server_ms
        and step.p50_ms - step.server_ms > CLIENT_GAP_MS
    )
    generator_limit = Diagnosis(
        "generator",
        f"The generator was the limit, not the service: {at} {_locust_cpu(step.generator_cpu_cores)} and "
        f"devices ran {step.lag_p99_ms:.0f} ms behind schedule (p99) and saw a p50 of {step.p50_ms:.0f} ms while "
        f"the service answered in {_ms(step.server_ms)} on average with {step.service_cpu_cores:.2f} cores.",
        evidence,
        step.devices,
    )
    if generator_busy and not cpu_share >= SERVICE_CPU_SATURATED:
        return generator_limit
    if math.isfinite(cpu_share) and cpu_share >= SERVICE_CPU_SATURATED:
        return Diagnosis(
            "service-cpu",
            f"Service CPU saturated first: {at} the service used {step.service_cpu_cores:.2f} cores with {workers} "
            f"worker(s) (about one core per worker is the ceiling) and p95 reached {step.p95_ms:.0f} ms.",
            evidence,
            step.devices,
        )
    database = judge_database(hosts, step, base)
    if database is not None:
        return Diagnosis(database.kind, database.sentence, evidence, step.devices)
    # A machine full with the run's own processes (the embedded default: service, PostgreSQL and generator on two
    # cores) slows the database and so fills the pool and the commits: the cause is named, not those symptoms.
    machine = judge_machines(hosts, step, base)
    if machine is not None:
        return Diagnosis(machine.kind, machine.sentence, evidence, step.devices)
    # Ingest writers keep their connections, so a small pool looks busy while nobody waits: full means both.
    pool_full = (
        math.isfinite(step.pool_utilisation)
        and step.pool_utilisation >= POOL_UTILISATION
        and math.isfinite(step.pool_waiting)
        and step.pool_waiting >= POOL_SOME_WAITING
    )
    if (
        pool_full
        or (math.isfinite(step.pool_waiting) and step.pool_waiting >= POOL_WAITING)
        or _rose(step.pool_acquire_ms, base.pool_acquire_ms, POOL_ACQUIRE_MS)
    ):
        return Diagnosis(
            "pool",
            f"The database pool ran out first: {at} {100 * step.pool_utilisation:.0f}% of its connections were in "
            f"use, {step.pool_waiting:.1f} requests waited for one on average and an acquire took "
            f"{_ms(step.pool_acquire_ms)} (first step {_ms(base.pool_acquire_ms)}).",
            evidence,
            step.devices,
        )
    commit_slow = math.isfinite(step.commit_ms) and step.commit_ms >= COMMIT_SLOW_MS
    if commit_slow or _rose(step.commit_ms, base.commit_ms, COMMIT_MS):
        return Diagnosis(
            "commit",
            f"Commits slowed first: {at} one batch took {step.commit_ms:.1f} ms to write and commit "
            f"(first step {base.commit_ms:.1f} ms) while CPU stayed at {step.service_cpu_cores:.2f} cores.",
            evidence,
            step.devices,
        )
    if math.isfinite(step.gc_fraction) and step.gc_fraction >= GC_FRACTION:
        return Diagnosis(
            "gc",
            f"Garbage collection stalled the service: {at} it spent {100 * step.gc_fraction:.0f}% of the time in GC.",
            evidence,
            step.devices,
        )
    if math.isfinite(step.loop_lag_ms) and step.loop_lag_ms >= LOOP_LAG_MS:
        return Diagnosis(
            "event-loop",
            f"The event loop was blocked: {at} its timers fired {step.loop_lag_ms:.0f} ms late on average "
            f"with {step.service_cpu_cores:.2f} cores in use.",
            evidence,
            step.devices,
        )
    # Lag or queueing with no resource of the service saturated. (A device also falls behind while it waits for
    # a service that is stuck, so the service's own resources are judged before this.)
    if generator_behind or generator_queueing:
        return generator_limit
    if all(s.slo_passed for s in steps) and knee_step is None:
        busiest = max(cpu_share if math.isfinite(cpu_share) else 0.0, 0.0)
        return Diagnosis(
            "none",
            f"Nothing gave out: the SLO held up to {steps[-1].devices:,} devices, the service at "
            f"{100 * busiest:.0f}% of its CPU and the generator at {step.generator_cpu_cores:.2f} cores; "
            "ramp further to find the limit.",
            evidence,
            step.devices,
        )
    return Diagnosis("unknown", unknown_sentence(at, hosts), evidence, step.devices)


def unknown_sentence(at: str, hosts: HostEvidence | None) -> str:
    """Latency rose and nothing measured did: say what was not measured, so the reader knows where to look."""
    if hosts is None:
        unseen = ["the machines and the database (no host evidence was recorded for this run)"]
    else:
        unseen = hosts.unseen
    if not unseen:
        return f"Latency rose {at} without a measured resource saturating (see the evidence); every host was measured."
    return (
        f"Latency rose {at} without a measured resource saturating (see the evidence). Not seen: {'; '.join(unseen)}."
    )
