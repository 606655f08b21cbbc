"""index.html: every night's report in the output directory, newest first, with counts."""

from __future__ import annotations

import re
from datetime import date
from pathlib import Path

import polars as pl

from nightly_pipeline.report.html import esc, page, table

_REPORT_NAME = re.compile(r"^(\d{4}-\d{2}-\d{2})\.html$")
HEADERS = ("night", "tests", "passed", "failed", "errors")


def _report_nights(out_dir: Path) -> set[date]:
    """Nights that have a ``<night>.html`` in ``out_dir``."""
    found = set()
    for path in out_dir.glob("*.html"):
        match = _REPORT_NAME.match(path.name)
        if match:
            try:
                found.add(date.fromisoformat(match.group(1)))
            except ValueError:
                continue
    return found


def _row(night: date, counts: dict | None, has_report: bool) -> tuple[list[str], str]:
    label = esc(night)
    cell = f'<a href="{night.isoformat()}.html">{label}</a>' if has_report else label
    if counts is None:
        return [cell, "-", "-", "-", "-"], ""
    bad = bool(counts.get("failed") or counts.get("errored"))
    cells = [cell, *(esc(counts.get(c)) for c in ("tests", "passed", "failed", "errored"))]
    return cells, "failed" if bad else "passed"


def render_index(out_dir: Path, nights: pl.DataFrame) -> Path:
    """Write ``<out_dir>/index.html`` linking every ``<night>.html`` present.

    ``nights`` is MetricStore.nights(): night, tests, passed, failed, errored. Nights
    without a report are listed unlinked; reports without a row are linked without counts.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    reports = _report_nights(out_dir)
    counts = {r["night"]: r for r in nights.iter_rows(named=True)}
    rows, classes = [], []
    for night in sorted(reports | set(counts), reverse=True):
        cells, cls = _row(night, counts.get(night), night in reports)
        rows.append(cells)
        classes.append(cls)
    body = "<h1>Nightly reports</h1>" + (
        table(HEADERS, rows, row_classes=classes, numeric=(1, 2, 3, 4))
        if rows
        else "<p>No nights recorded yet.</p>"
    )
    path = out_dir / "index.html"
    tmp = path.with_suffix(".html.tmp")
    tmp.write_text(page("Nightly reports", body, plotly=False), "utf-8")
    tmp.replace(path)
    return path
