"""The device model alone: readings always pass the service's validation over long simulated runs, the physics
moves the right way, identity is stable; and the schedule arithmetic the fleet relies on (the SLO's is in
tests/test_slo.py)."""

from __future__ import annotations

import itertools
import random
import uuid
from datetime import UTC, datetime, timedelta

import msgpack
import pytest
from _device_model import MODELS, Command, Kettle, device_metadata
from _fleet_stats import FleetStats
from _schedule import Schedule

from app.validation import parse_measurements

START = datetime(2026, 1, 1, tzinfo=UTC)
STEPS_S = (0.0, 0.001, 1.0, 30.0, 600.0, 86_400.0)
WEIGHTS = (1, 1, 5, 200, 3, 0.05)


def random_command(rng: random.Random) -> Command:
    return Command(
        charge=rng.random() < 0.3,
        fill=rng.random() < 0.05,
        flush=rng.choice([None, None, None, rng.uniform(0, 100), 100.0]),
        interval_s=rng.choice([1, 30, 30, 300]),
    )


@pytest.mark.parametrize("seed", range(6))
def test_readings_always_pass_validation_over_long_runs(seed: int) -> None:
    """Random commands, intervals from 0 s to a day (outages), 3 simulated days per device, every model."""
    rng = random.Random(seed)
    for model in MODELS:
        kettle = Kettle.for_device(uuid.UUID(int=rng.getrandbits(128)), model)
        at = START + timedelta(days=rng.uniform(0, 365))
        end = at + timedelta(days=3)
        batch = []
        while at < end:
            dt = rng.choices(STEPS_S, WEIGHTS)[0]
            at += timedelta(seconds=dt)
            kettle.step(dt, random_command(rng), at)
            batch.append(kettle.reading(at))
            if len(batch) == 1000:
                assert len(parse_measurements(batch, 1000, now=at)) == 1000
                batch = []
        if batch:
            assert len(parse_measurements(batch, 1000, now=at)) == len(batch)


def test_physics_moves_the_right_way() -> None:
    kettle = Kettle.for_device(uuid.uuid4(), "KT-200")
    kettle.water_level, kettle.water_temp, kettle.charge_now, kettle.set_point_c = 50.0, 20.0, 2000.0, 90.0
    idle = Command()
    for minute in range(20):
        kettle.step(60, idle, START + timedelta(minutes=minute))
    assert kettle.water_temp > 60, "heats towards the set point while charged"
    assert kettle.charge_now < 2000, "discharges while heating"
    assert kettle.charge_rate < 0

    kettle.water_temp, kettle.set_point_c = 95.0, 40.0
    for minute in range(30):
        kettle.step(60, idle, START + timedelta(minutes=minute))
    assert kettle.ambient_temp < kettle.water_temp < 95, "cools towards the ambient temperature"

    before = kettle.charge_now
    kettle.step(600, Command(charge=True), START)
    assert kettle.charge_now > before, "charges when told to"
    assert kettle.charge_rate > 0

    kettle.step(1, Command(flush=100.0), START)
    assert kettle.water_level == 0
    kettle.step(1, Command(fill=True), START)
    assert kettle.water_level == 100
    assert kettle.water_temp < 40, "refills with cold tap water"

    kettle.charge_now = 0.0
    kettle.step(3600, idle, START)
    assert kettle.reading(START)["charge_now"] == 0


def test_identity_is_stable_per_device() -> None:
    device_id = uuid.uuid4()
    assert device_metadata(device_id) == device_metadata(device_id)
    assert device_metadata(device_id)["model"] in MODELS
    assert len({device_metadata(uuid.uuid4())["serial"] for _ in range(50)}) == 50


def test_schedule_keeps_its_plan_and_drops_stale_slots() -> None:
    rng = random.Random(1)
    schedule = Schedule.starting(now=100.0, interval_s=30.0, jitter=0.1, rng=rng)
    assert 100.0 <= schedule.next_due < 130.0
    slots = [schedule.take(30.0, now=schedule.next_due + 5.0, rng=rng) for _ in range(100)]
    gaps = [b.planned - a.planned for a, b in itertools.pairwise(slots)]
    assert all(27.0 <= gap <= 33.0 for gap in gaps), "plans follow plans, not responses (no coordinated omission)"
    assert all(slot.skipped == 0 for slot in slots)
    late = schedule.take(30.0, now=schedule.next_due + 1000.0, rng=rng)
    assert schedule.next_due > late.planned + 900.0, "a device far behind does not burst stale slots"
    assert late.skipped == 33, "the slots it gave up are counted (1000 s behind at 30 s per slot)"


class Carrier:
    def __init__(self, readings: int) -> None:
        self.readings = readings

    def backlog_readings(self) -> int:
        return self.readings


def test_fleet_figures_add_up_across_workers() -> None:
    """Each worker sends what it counted since its last report (through Locust's message encoding); the master's
    figures are the sums, and the backlog is each worker's latest level, summed."""
    master = FleetStats()
    carriers = [Carrier(5), Carrier(7)]
    workers = [FleetStats(), FleetStats()]
    for worker, carrier in zip(workers, carriers, strict=True):
        worker.carriers.add(carrier)
    for round_ in range(3):
        for number, worker in enumerate(workers):
            worker.served(4.0)
            worker.served(1234.0)
            worker.gave_up(2, 31_000.0)
            wire = msgpack.dumps(worker.take_report())
            master.add_report(f"worker{number}", msgpack.loads(wire, raw=False, strict_map_key=False))
            assert worker.due == 0, "a report starts the worker's counts again"
        carriers[0].readings = 100 + round_
    slots = master.slots()
    assert (slots.due, slots.given_up) == (2 * 3 * 4, 2 * 3 * 2)
    assert slots.lag == {4: 6, 1200: 6, 31_000: 12}
    assert master.backlog_total() == 101 + 7, "each worker's level as of its last report"
