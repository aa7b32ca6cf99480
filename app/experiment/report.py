"""`fleetbed report` of one run directory, as a pipeline in one direction: the records are read, the summary
(per-step figures, the verdict) built from them, the charts from both, and the HTML drawn from what it is given.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from app.experiment.records import read_run
from app.experiment.report_charts import build_charts
from app.experiment.report_html import render
from app.experiment.summary import build_summary

SUMMARY_FILE = "summary.json"
REPORT_FILE = "report.html"


def write_report(directory: Path, output: Path | None = None) -> dict[str, Any]:
    """Analyse `directory`, write `summary.json` into it and the HTML to `output` (default DIR/report.html)."""
    records = read_run(directory)
    summary = build_summary(records)
    (directory / SUMMARY_FILE).write_text(json.dumps(summary, indent=2, default=str) + "\n")
    (output or directory / REPORT_FILE).write_text(render(summary, build_charts(records, summary)))
    return summary


__all__ = ["REPORT_FILE", "SUMMARY_FILE", "write_report"]
