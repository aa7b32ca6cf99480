"""The master's run record in the service (`/runs`): register at test start, a snapshot of the aggregated stats
every `--snapshot-interval` seconds, finish with the summary and verdict at test stop.

Locust holds only the operator token (env FLEETBED_OPERATOR_TOKEN, else the service's token file
`$FLEETBED_DATA_DIR/secrets/operator-token`), never database credentials. Recording is best effort: a service that
does not answer costs a logged warning, never the load test.
"""

from __future__ import annotations

import logging
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import gevent
import requests

log = logging.getLogger(__name__)
TIMEOUT_S = 5.0


def operator_token() -> str | None:
    token = os.environ.get("FLEETBED_OPERATOR_TOKEN")
    if token:
        return token
    path = Path(os.environ.get("FLEETBED_DATA_DIR", ".fleetbed")) / "secrets" / "operator-token"
    try:
        return path.read_text().strip() or None
    except OSError:
        return None


class RunRecorder:
    """One run record; `start`, then `finish`. Snapshots come from `snapshot()` in a background greenlet."""

    def __init__(self, host: str, token: str, interval_s: float) -> None:
        self.base = host.rstrip("/")
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Bearer {token}"
        self.interval_s = interval_s
        self.run_id: str | None = None
        self._greenlet: gevent.Greenlet[Any, Any] | None = None

    def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any] | None:
        try:
            response = self.session.post(f"{self.base}{path}", json=body, timeout=TIMEOUT_S)
        except requests.RequestException as exc:
            log.warning("run record: POST %s failed: %s", path, exc)
            return None
        if response.status_code >= 300:
            log.warning("run record: POST %s answered %s: %s", path, response.status_code, response.text[:300])
            return None
        result: dict[str, Any] = response.json()
        return result

    def start(self, name: str, config: dict[str, Any], snapshot: Any) -> None:
        run = self._post("/runs", {"name": name, "config": config})
        if run is None:
            return
        self.run_id = run["id"]
        log.info("run record %s registered at %s/runs/%s", name, self.base, self.run_id)
        self._greenlet = gevent.spawn(self._snapshots, snapshot)

    def _snapshots(self, snapshot: Any) -> None:
        while True:
            gevent.sleep(self.interval_s)
            self.send_snapshot(snapshot())

    def send_snapshot(self, stats: dict[str, Any]) -> None:
        if self.run_id is not None:
            now = datetime.now(UTC).isoformat()
            self._post(f"/runs/{self.run_id}/snapshots", {"time": now, "stats": stats})

    def finish(self, status: str, summary: dict[str, Any], final_stats: dict[str, Any]) -> None:
        if self._greenlet is not None:
            self._greenlet.kill(block=True)
            self._greenlet = None
        if self.run_id is None:
            return
        self.send_snapshot(final_stats)
        self._post(f"/runs/{self.run_id}/finish", {"status": status, "summary": summary})
        self.session.close()
        self.run_id = None
