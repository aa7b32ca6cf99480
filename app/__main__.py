"""`python -m app`: the `fleetbed` command line, for when the console script is not on PATH."""

from app.cli import run

run()
