"""fleetbed: a test bed for IoT fleets.

The `app` package holds the device-data service under test (`create_app`), its data layer, the embedded
database and the `fleetbed` command line.
"""

from importlib import metadata

try:
    # One source for the version: pyproject.toml, as recorded in the installed distribution's metadata.
    __version__ = metadata.version("fleetbed")
except metadata.PackageNotFoundError:  # imported from a checkout that was never installed
    __version__ = "0+unknown"
