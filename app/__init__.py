"""fleetbed: a test bed for IoT fleets.

The top floor of `app` is the device-data service under test (`create_app` in `app.server`, run by
`app.serving`), with its handlers in `app.handlers`. Around it: the data layer (`app.db`), the service's metrics
(`app.metrics`), the one-machine stack the commands start (`app.stack`), the history generator
(`app.backfill`), the experiment and its report (`app.experiment`) and the `fleetbed` command line (`app.cli`).
See docs/design.md for the layout and the rules between the rooms.
"""

from importlib import metadata

try:
    # One source for the version: pyproject.toml, as recorded in the installed distribution's metadata.
    __version__ = metadata.version("fleetbed")
except metadata.PackageNotFoundError:  # imported from a checkout that was never installed
    __version__ = "0+unknown"
