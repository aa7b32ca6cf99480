"""The Fleet tab of Locust's web UI: the devices' figures that are not requests (slots, schedule lag, slots given
up, backlog) and the open window's SLO checks so far, next to Locust's own request statistics.

Locust's UI shows extra tabs named in its template arguments (`extended_tabs`, `extended_tables`) and fills them
from `extended_stats` in its `/stats/requests` answer, which it polls every few seconds.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable
from typing import Any

from _live import LiveState
from flask import Response, request
from locust.env import Environment

TAB = "fleet"
COLUMNS = ({"key": "figure", "title": "Figure"}, {"key": "value", "title": "Value"}, {"key": "note", "title": ""})


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f} ms"


def fleet_rows(state: LiveState | None, slo: str) -> list[dict[str, str]]:
    """The tab's rows: figure, value, a note on what it means."""
    if state is None:
        return [{"figure": "Fleet", "value": "not running", "note": "start a test to see the devices' figures"}]
    recent, total = state.recent.figures, state.total
    rows = [
        {"figure": "Devices", "value": f"{state.devices:,}", "note": f"{state.users:,} Locust users"},
        {"figure": "Slots due", "value": f"{total.slots.due:,}", "note": "planned sends (served + given up)"},
        {
            "figure": "Slots given up",
            "value": f"{total.slots.given_up:,}",
            "note": "devices more than an interval behind their plan",
        },
        {
            "figure": "Schedule lag p50 / p95 / p99",
            "value": " / ".join(_ms(recent.lag_ms(p)) for p in (50, 95, 99)),
            "note": f"last {state.recent.seconds:.0f} s",
        },
        {"figure": "Backlog", "value": f"{state.backlog_readings:,}", "note": "readings taken, not yet uploaded"},
    ]
    verdict = state.verdict
    if verdict is None:
        return rows
    window = verdict.window
    if verdict.checks is None:
        rows.append({"figure": "SLO", "value": "warming up", "note": f"{window.devices:,} devices, not judged yet"})
    elif not slo:
        rows.append({"figure": "SLO", "value": "none set", "note": "--slo (or the field in the start form)"})
    else:
        for check in verdict.checks:
            rows.append(
                {
                    "figure": f"SLO {check.objective.label} <= {check.objective.limit:g}",
                    "value": "no data" if check.value is None else f"{check.value:.4g}",
                    "note": f"{'met' if check.passed else 'BROKEN'} over {window.judged_seconds:.0f} s judged "
                    f"at {window.devices:,} devices",
                }
            )
    return rows


def attach_fleet_tab(environment: Environment, state: Callable[[], LiveState | None], slo: Callable[[], str]) -> None:
    web_ui = environment.web_ui
    if web_ui is None or web_ui.app is None:
        return
    app = web_ui.app
    web_ui.template_args["extended_tabs"] = [{"title": "Fleet", "key": TAB}]
    web_ui.template_args["extended_tables"] = [{"key": TAB, "structure": list(COLUMNS)}]
    web_ui.template_args["extended_csv_files"] = [{"href": "/fleet/csv", "title": "Download the fleet's figures CSV"}]

    @app.after_request
    def _add_fleet(response: Response) -> Response:
        if request.path != "/stats/requests" or response.status_code != 200:
            return response
        body: dict[str, Any] = response.get_json() or {}
        body["extended_stats"] = [{"key": TAB, "data": fleet_rows(state(), slo())}]
        response.set_data(json.dumps(body))
        return response

    @app.route("/fleet/csv")
    @web_ui.auth_required_if_enabled
    def _fleet_csv() -> Response:
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow([column["title"] or "Note" for column in COLUMNS])
        for row in fleet_rows(state(), slo()):
            writer.writerow([row["figure"], row["value"], row["note"]])
        return Response(
            out.getvalue(), mimetype="text/csv", headers={"Content-Disposition": "attachment;filename=fleet.csv"}
        )
