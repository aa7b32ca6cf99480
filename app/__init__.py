"""fleetbed: a test bed for IoT fleets.

The `app` package holds the device-data service under test (`create_app`), its data layer, the embedded
database and the `fleetbed` command line.
"""

__version__ = "0.1.0"
