"""One simulated device: identity, token, physical state, schedule and backlog, independent of the Locust user
that carries it (a user may carry many devices).

A cycle: log in when there is no token, poll `GET /command`, apply it to the kettle, take a reading and upload the
backlog (one object, or arrays of up to 1000 readings after an outage). While the service fails, readings stay in
the backlog; on 401 the device drops its token and logs in again on the next cycle. The device keeps the secret its
first login returned and proves itself with it on every later login (and the fleet's enrolment key, when given).
"""

from __future__ import annotations

import random
import time
import uuid
from collections import deque
from datetime import UTC, datetime
from typing import Any, Protocol

import orjson
from _device_model import Command, Kettle, device_metadata
from _schedule import Schedule

from app.limits import MAX_BATCH_READINGS

MAX_BATCH = MAX_BATCH_READINGS  # the service's limit per request
MAX_BACKLOG = 20_000
MAX_BATCHES_PER_CYCLE = 5


class ReportLag(Protocol):
    def __call__(self, lag_ms: float) -> None: ...


class SimulatedDevice:
    """A kettle with its own id, token, command, schedule and backlog. Not thread-safe: one cycle at a time."""

    __slots__ = (
        "backlog", "command", "device_id", "enroll_key", "kettle", "last_step", "metadata", "schedule", "secret",
        "token",
    )  # fmt: skip

    def __init__(self, rng: random.Random, interval_s: float, jitter: float, enroll_key: str = "") -> None:
        self.device_id = uuid.UUID(int=rng.getrandbits(128), version=4)
        self.metadata = device_metadata(self.device_id)
        self.kettle = Kettle.for_device(self.device_id, str(self.metadata["model"]))
        self.command = Command(interval_s=max(1, round(interval_s)))
        self.schedule = Schedule.starting(time.monotonic(), interval_s, jitter, rng)
        self.token: str | None = None
        self.secret: str | None = None  # from the first login; sent on every later one
        self.enroll_key = enroll_key
        self.backlog: deque[dict[str, Any]] = deque(maxlen=MAX_BACKLOG)
        self.last_step = time.monotonic()

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"}

    def cycle(self, client: Any, planned: float, report_lag: ReportLag) -> None:
        """One interval's work; `planned` is the slot's planned start (time.monotonic()), its lag reported first."""
        report_lag((time.monotonic() - planned) * 1000.0)
        if self.token is None and not self.login(client):
            self.take_reading()
            return
        self.poll(client)
        self.take_reading()
        self.upload(client)

    def login(self, client: Any) -> bool:
        document: dict[str, Any] = {"device_id": str(self.device_id), "metadata": self.metadata}
        if self.secret is not None:
            document["device_secret"] = self.secret
        if self.enroll_key:
            document["enroll_key"] = self.enroll_key
        with client.post(
            "/login",
            data=orjson.dumps(document),
            headers={"Content-Type": "application/json"},
            name="/login",
            catch_response=True,
        ) as response:
            if response.status_code == 200:
                answer = response.json()
                self.token = answer["token"]
                self.secret = answer.get("device_secret", self.secret)
                return True
            response.failure(f"login answered {response.status_code}")
            return False

    def poll(self, client: Any) -> None:
        with client.get("/command", headers=self.headers, name="/command", catch_response=True) as response:
            if response.status_code == 200:
                self.command = Command.from_json(response.json(), self.command)
                return
            self._failed(response, "poll")

    def take_reading(self) -> None:
        now = time.monotonic()
        at = datetime.now(UTC)
        self.kettle.step(now - self.last_step, self.command, at)
        self.last_step = now
        self.backlog.append(self.kettle.reading(at))

    def upload(self, client: Any) -> None:
        for _ in range(MAX_BATCHES_PER_CYCLE):
            if not self.backlog or self.token is None:
                return
            count = min(len(self.backlog), MAX_BATCH)
            batch = [self.backlog[i] for i in range(count)]
            document: object = batch[0] if count == 1 else batch
            name = "/measurement" if count == 1 else "/measurement (backlog)"
            with client.post(
                "/measurement", data=orjson.dumps(document), headers=self.headers, name=name, catch_response=True
            ) as response:
                if response.status_code == 201:
                    for _ in range(count):
                        self.backlog.popleft()
                    continue
                if response.status_code == 422:
                    # A reading the service refuses will never pass: drop it rather than retry forever.
                    for _ in range(count):
                        self.backlog.popleft()
                self._failed(response, "upload")
                return

    def _failed(self, response: Any, what: str) -> None:
        status = response.status_code
        if status == 401:
            self.token = None
        response.failure(f"{what} answered {status or 'no response'}: {str(response.text)[:200]!r}")
