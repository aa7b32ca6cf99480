"""The kettle fleet: devices that log in with random ids, poll for their command, obey it and push telemetry.

    locust -f locustfiles/kettle.py --host http://127.0.0.1:8080 [--shape step --step-users 50 ...] [--slo ...]

Options, shapes, the SLO syntax and the metrics are described in the README ("Simulated fleet"). Debug one
device with `python locustfiles/kettle.py` (needs a service on FLEETBED_URL, default http://127.0.0.1:8080).
"""

import locust  # noqa: I001  (first: gevent's monkey-patching must come before anything else)

import os

from _device import SimulatedDevice
from _fleet_run import attach
from _fleet_user import FleetUser
from _shapes import FleetShape

attach()


class Kettle(FleetUser):
    """A kettle (or a group of kettles with --devices-per-user), on the service's default 30 s command interval."""

    device_class = SimulatedDevice


__all__ = ["FleetShape", "Kettle", "locust"]

if __name__ == "__main__":
    from locust import run_single_user

    Kettle.host = os.environ.get("FLEETBED_URL", "http://127.0.0.1:8080")
    run_single_user(Kettle)
