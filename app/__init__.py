"""fleetbed: a test bed for IoT fleets.

The top floor of `app` is the device-data service under test (`create_app` in `app.server`, run by
`app.serving`), with its handlers in `app.handlers`. Around it: the data layer (`app.db`), the service's metrics
(`app.metrics`), the one-machine stack the commands start (`app.stack`), the history generator
(`app.backfill`), the experiment and its report (`app.experiment`) and the `fleetbed` command line (`app.cli`).
See docs/design.md for the layout and the rules between the rooms.
"""

__version__ = "0.1.0"
