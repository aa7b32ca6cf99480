"""The abstract base user: a Locust user that carries one or more simulated devices.

With `--devices-per-user 1` (the default) every device is its own Locust user with its own connection, the
classic pattern. With more, one user carries a group of devices served by `--connections-per-user` worker
greenlets (default one per device, at most 20), each with its own keep-alive connection: a free worker takes
the device whose slot is next, sleeps until it is due, runs its cycle and puts it back with its next slot. No
greenlet is spawned and no pool is waited on per cycle; a device is never in two cycles at once, and when every
worker is busy the wait shows as schedule lag. Each device keeps its own identity, token, state, schedule and
backlog. Locust's users, spawn rate, shapes, stats and master/worker distribution all stay in force; one user
is then a group of devices in the UI.
"""

from __future__ import annotations

import contextlib
import heapq
import logging
import random
import resource
import time
import traceback
from typing import Any

import gevent
from _device import SimulatedDevice
from _fleet_stats import fleet_stats
from _lean_http import LeanConnection
from _options import DEFAULT_DEVICE_INTERVAL_S
from locust import FastHttpUser, task
from locust.env import Environment
from locust.user.task import LOCUST_STATE_STOPPING

MAX_DEFAULT_CONNECTIONS = 20
STOP_GRACE_S = 5.0
OPEN_FILES_HEADROOM = 256
_open_files_warned = False

log = logging.getLogger(__name__)


def ensure_open_files(connections: int) -> None:
    """Connections need descriptors: raise the soft open-file limit towards the hard one when the fleet's
    connections come close to it, and say once, with the fix, when even that is not enough."""
    global _open_files_warned
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = connections + OPEN_FILES_HEADROOM
    if wanted <= soft:
        return
    limit = max(wanted * 2, soft)
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (limit, hard))
        soft = limit
    if wanted > soft and not _open_files_warned:
        _open_files_warned = True
        log.warning(
            "%d connections need more open files than this process may have (%d): raise `ulimit -n`, or use "
            "fewer --connections-per-user (devices share a user's connections), or more worker processes",
            connections,
            soft,
        )


class FleetUser(FastHttpUser):
    """Carries `devices_per_user` devices; subclasses choose the device class (`device_class`)."""

    abstract = True
    device_class: type[SimulatedDevice] = SimulatedDevice
    connection_timeout = 10.0
    network_timeout = 30.0
    insecure = True

    def __init__(self, environment: Environment) -> None:
        options = environment.parsed_options
        self.devices_per_user = max(1, int(getattr(options, "devices_per_user", 1) or 1))
        connections = int(getattr(options, "connections_per_user", 0) or 0)
        self.concurrency = min(self.devices_per_user, connections or MAX_DEFAULT_CONNECTIONS)
        super().__init__(environment)
        self.interval_s = float(getattr(options, "device_interval", 0) or DEFAULT_DEVICE_INTERVAL_S)
        self.jitter = float(getattr(options, "device_jitter", 0.1))
        self.http_client = str(getattr(options, "http_client", "lean") or "lean")
        self.rng = random.Random()
        self.stopping = False
        enroll_key = str(getattr(options, "enroll_key", "") or "")
        self.devices = [
            self.device_class(self.rng, self.interval_s, self.jitter, enroll_key) for _ in range(self.devices_per_user)
        ]
        self.fleet = fleet_stats(environment)
        runner = environment.runner
        ensure_open_files(((runner.user_count if runner else 0) + 1) * self.concurrency)

    def report_lag(self, lag_ms: float) -> None:
        """A slot served `lag_ms` after its plan: a fleet figure, not a request (`_fleet_stats`)."""
        self.fleet.served(lag_ms)

    def report_skipped(self, skipped: int, lag_ms: float) -> None:
        """Slots a device gave up because it fell more than an interval behind its plan."""
        self.fleet.gave_up(skipped, lag_ms)

    def backlog_readings(self) -> int:
        """Readings taken and not yet uploaded, over the user's devices."""
        return sum(len(device.backlog) for device in self.devices)

    def open_client(self) -> Any:
        """A worker's client: its own lean connection, or the user's shared FastHttpSession."""
        if self.http_client == "fasthttp":
            return self.client
        return LeanConnection(
            self.host or "", self.environment.events.request, self.network_timeout, self.connection_timeout
        )

    @task
    def run_devices(self) -> None:
        """Serve every device's slots in planned order with the user's workers, until Locust stops the user."""
        due = [(device.schedule.next_due, index) for index, device in enumerate(self.devices)]
        heapq.heapify(due)
        cycling: set[gevent.Greenlet] = set()
        self.stopping = False
        self.fleet.carriers.add(self)
        workers = [gevent.spawn(self.serve_devices, due, self.open_client(), cycling) for _ in range(self.concurrency)]
        try:
            while self._state != LOCUST_STATE_STOPPING:  # a graceful stop (--stop-timeout) ends the task
                for ended in gevent.wait(workers, timeout=1.0, count=1):
                    ended.get()  # a worker only ends on an error it must not hide
        finally:
            self.stop_workers(workers, cycling)
            self.fleet.carriers.discard(self)

    def stop_workers(self, workers: list[gevent.Greenlet], cycling: set[gevent.Greenlet]) -> None:
        """Idle workers go at once; a cycle under way may finish (within STOP_GRACE_S), so every request the
        service saw is also in Locust's stats, however the user is stopped."""
        self.stopping = True
        gevent.killall([worker for worker in workers if worker not in cycling])
        gevent.joinall(workers, timeout=min(STOP_GRACE_S, self.network_timeout))
        gevent.killall(workers)
        now = time.monotonic()
        for device in self.devices:
            behind_s = now - device.schedule.next_due
            self.report_skipped(device.schedule.overdue(device.command.interval_s, now), behind_s * 1000.0)

    def serve_devices(self, due: list[tuple[float, int]], client: Any, cycling: set[gevent.Greenlet]) -> None:
        """One worker: take the next device off the plan, wait for its slot, run its cycle, put it back."""
        me = gevent.getcurrent()
        try:
            while not self.stopping:
                _, index = heapq.heappop(due)
                device = self.devices[index]
                try:
                    delay = device.schedule.next_due - time.monotonic()
                    if delay > 0:
                        gevent.sleep(delay)
                    cycling.add(me)
                    now = time.monotonic()
                    slot = device.schedule.take(device.command.interval_s, now, self.rng)
                    if slot.skipped:
                        self.report_skipped(slot.skipped, (now - slot.planned) * 1000.0)
                    self.run_cycle(device, client, slot.planned)
                finally:
                    cycling.discard(me)
                    heapq.heappush(due, (device.schedule.next_due, index))
        finally:
            if isinstance(client, LeanConnection):
                client.close()

    def run_cycle(self, device: SimulatedDevice, client: Any, planned: float) -> None:
        """A device's cycle; an error in it is reported as Locust reports a failing task (the UI's Exceptions
        tab), and the worker carries on with the next device unless Locust was told not to catch exceptions."""
        try:
            device.cycle(client, planned, self.report_lag)
        except Exception as error:
            self.environment.events.user_error.fire(user_instance=self, exception=error, tb=error.__traceback__)
            if not self.environment.catch_exceptions:
                raise
            log.error("device %s: %s\n%s", device.device_id, error, traceback.format_exc())
