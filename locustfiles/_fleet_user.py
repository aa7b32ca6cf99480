"""The abstract base user: a Locust user that carries one or more simulated devices.

With `--devices-per-user 1` (the default) every device is its own Locust user with its own connection, the
classic pattern. With more, one user carries a group of devices: a single scheduler greenlet wakes at each device's
planned time and hands the cycle to a bounded gevent pool, the devices share the user's connection pool
(`--connections-per-user`, default one per device up to 20), and each keeps its own identity, token, state,
schedule and backlog. Locust's users, spawn rate, shapes, stats and master/worker distribution all stay in force;
one user is then a group of devices in the UI.
"""

from __future__ import annotations

import heapq
import random
import time
from typing import Any

import gevent
from _device import LAG_NAME, LAG_REQUEST_TYPE, SimulatedDevice
from _lean_http import LeanSession
from gevent.pool import Pool
from locust import FastHttpUser, task
from locust.env import Environment

DEFAULT_INTERVAL_S = 30.0


class MissedSlot(Exception):
    """A device's slot came while its previous cycle was still in flight."""


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
        self.concurrency = connections or min(self.devices_per_user, 20)
        super().__init__(environment)
        self.interval_s = float(getattr(options, "device_interval", 0) or DEFAULT_INTERVAL_S)
        self.jitter = float(getattr(options, "device_jitter", 0.1))
        self.rng = random.Random()
        self.lean = bool(getattr(options, "lean_http", False))
        self.device_client: Any = (
            LeanSession(self.host or "", self.concurrency, environment.events.request, self.network_timeout)
            if self.lean
            else self.client
        )
        self.devices = [self.device_class(self.rng, self.interval_s, self.jitter) for _ in range(self.devices_per_user)]

    def report_lag(self, lag_ms: float) -> None:
        self.environment.events.request.fire(
            request_type=LAG_REQUEST_TYPE,
            name=LAG_NAME,
            response_time=lag_ms,
            response_length=0,
            exception=None,
            context={},
        )

    def report_missed_slot(self, planned: float) -> None:
        """The device's previous cycle is still waiting on the service: this slot is lost, counted as a failure."""
        self.environment.events.request.fire(
            request_type=LAG_REQUEST_TYPE,
            name=LAG_NAME,
            response_time=(time.monotonic() - planned) * 1000.0,
            response_length=0,
            exception=MissedSlot("the previous cycle was still running"),
            context={},
        )

    @task
    def run_devices(self) -> None:
        """Serve every device's slots in planned order, forever (until Locust stops the user)."""
        queue = [(device.schedule.next_due, index) for index, device in enumerate(self.devices)]
        heapq.heapify(queue)
        pool = Pool(self.devices_per_user)
        busy: set[int] = set()

        def serve(index: int, planned: float) -> None:
            try:
                self.devices[index].cycle(self.device_client, planned, self.report_lag)
            finally:
                busy.discard(index)

        try:
            while True:
                due, index = queue[0]
                delay = due - time.monotonic()
                if delay > 0:
                    gevent.sleep(delay)
                device = self.devices[index]
                planned = device.schedule.take(device.command.interval_s, time.monotonic(), self.rng)
                heapq.heapreplace(queue, (device.schedule.next_due, index))
                if index in busy:
                    self.report_missed_slot(planned)
                    continue
                busy.add(index)
                pool.spawn(serve, index, planned)
        finally:
            pool.kill(block=False)
            if self.lean:
                self.device_client.close()
