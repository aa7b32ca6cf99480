"""Where the files fleetbed ships beside its code live: the SQL migrations, the fleet's locustfiles, the monitoring
configuration (Prometheus rules, Grafana dashboards).

An installed wheel carries them inside the package (`app/_migrations`, `app/_locustfiles`, `app/_monitoring`,
mapped there by pyproject.toml's force-include) and they are found with `importlib.resources`; a source checkout
(editable install, or the tests) reads the top-level folders `migrations/`, `locustfiles/` and `monitoring/`.
Every command asks here, so they work from any directory.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from app.db import migrations

# Folder in the source checkout -> folder inside the installed package (pyproject.toml maps one to the other).
# The migrations' entry is the data layer's own (it locates its SQL itself: app/db imports only app/db).
SHIPPED = {"migrations": migrations.PACKAGED_DIR, "locustfiles": "_locustfiles", "monitoring": "_monitoring"}
FLEET_LOCUSTFILE = "kettle.py"


class ResourceError(RuntimeError):
    """A shipped folder is in neither the installed package nor a source checkout (a broken install)."""


def _package_root() -> Path:
    root = resources.files("app")
    if not isinstance(root, Path):  # a zip import: Locust and Prometheus need real files
        raise ResourceError(f"fleetbed must be installed as files on disk, not imported from {root}")
    return root


def shipped_dir(name: str) -> Path:
    """The folder `name` (a key of SHIPPED): the installed copy when there is one, else the checkout's."""
    packaged = _package_root() / SHIPPED[name]
    if packaged.is_dir():
        return packaged
    checkout = _package_root().parent / name
    if checkout.is_dir():
        return checkout
    raise ResourceError(f"{packaged} is missing from this installation; reinstall fleetbed (pip install fleetbed)")


def migrations_dir() -> Path:
    return migrations.migrations_dir()


def locustfiles_dir() -> Path:
    return shipped_dir("locustfiles")


def locustfile(name: str = FLEET_LOCUSTFILE) -> Path:
    """The fleet's locustfile (`kettle.py`, or another scenario such as `kettle_db.py`), as an absolute path."""
    return locustfiles_dir() / name


def monitoring_dir() -> Path:
    return shipped_dir("monitoring")
