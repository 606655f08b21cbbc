"""Computing a chaos test's journal for the report: its fault windows on the series' time
axis, and its activities as table rows. Nothing here plots or writes HTML.

The series' x axis is seconds since the test's load started (``load_started_at``, the wall
time of second 0; a second's point at ``x = s`` stands for ``[s, s + 1)``). The journal's
times are wall times, so an activity lands at ``its time - load_started_at``. A fault's
window runs from the end of its ``inject-<fault>`` action to the end of the next
``revert-<fault>`` that succeeded; without one the fault was never known to be reverted
and the window runs to the end of the series. A failed injection opens no window.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import polars as pl

_S, _T = pl.String(), pl.Datetime("us")
EXPERIMENTS_SCHEMA = dict(
    profile=_S, test=_S, title=_S, status=_S, deviated=pl.Boolean(), started_at=_T,
    error=_S, load_started_at=_T,
)  # fmt: skip
ACTIVITIES_SCHEMA = dict(
    profile=_S, test=_S, seq=pl.Int64(), phase=_S, kind=_S, name=_S, status=_S,
    started_at=_T, ended_at=_T, duration_s=pl.Float64(), output_json=_S,
    tolerance_met=pl.Boolean(), error=_S,
)  # fmt: skip
INJECT, REVERT = "inject-", "revert-"
OUTPUT_SHOWN = 300
"""Characters of an output shown in the table (the store keeps it whole)."""


@dataclass(frozen=True)
class FaultWindow:
    """When one fault was in the world, in seconds since the load started."""

    fault: str
    start_s: float
    end_s: float
    reverted: bool  # False: shaded to the end of the series, no successful revert seen

    @property
    def label(self) -> str:
        return self.fault if self.reverted else f"{self.fault} (not reverted)"


@dataclass(frozen=True)
class Journal:
    """One chaos test's experiment and activities, on its series' time axis when known."""

    title: str
    status: str
    deviated: bool
    error: str | None
    origin: datetime | None  # the load's start (series second 0); None: not recorded
    experiment_start: datetime | None
    activities: pl.DataFrame  # ACTIVITIES_SCHEMA columns of this test, in journal order

    @property
    def placed(self) -> bool:
        """Whether the journal's times can be put on the series' axis."""
        return self.origin is not None


def journal_of(
    experiments: pl.DataFrame, activities: pl.DataFrame, profile: str, test: str
) -> Journal | None:
    """The journal of (profile, test) from the store's two frames; None for a test
    without an experiment."""
    mine = (pl.col("profile") == profile) & (pl.col("test") == test)
    found = experiments.filter(mine)
    if found.is_empty():
        return None
    e = found.row(0, named=True)
    return Journal(
        title=str(e["title"]),
        status=str(e["status"]),
        deviated=bool(e["deviated"]),
        error=e["error"],
        origin=e["load_started_at"],
        experiment_start=e["started_at"],
        activities=activities.filter(mine).sort("seq"),
    )


def _offset(moment: datetime | None, origin: datetime | None) -> float | None:
    if moment is None or origin is None:
        return None
    return (moment - origin).total_seconds()


def fault_windows(journal: Journal, series_end_s: float) -> list[FaultWindow]:
    """Each injected fault's window on the series' axis, in injection order; none when
    the load's start was not recorded (the windows could not be placed honestly)."""
    if not journal.placed:
        return []
    opened: dict[str, list[float]] = {}  # fault -> start offsets still open, oldest first
    windows: list[tuple[float, FaultWindow]] = []
    for a in journal.activities.filter(pl.col("kind") == "action").iter_rows(named=True):
        at = _offset(a["ended_at"] or a["started_at"], journal.origin)
        name = str(a["name"])
        if at is None or a["status"] != "succeeded":
            continue
        if name.startswith(INJECT) and len(name) > len(INJECT):
            opened.setdefault(name[len(INJECT) :], []).append(at)
        elif name.startswith(REVERT) and opened.get(name[len(REVERT) :]):
            fault = name[len(REVERT) :]
            start = opened[fault].pop(0)
            windows.append((start, FaultWindow(fault, start, max(start, at), reverted=True)))
    for fault, starts in opened.items():
        for start in starts:
            end = max(start, series_end_s)
            windows.append((start, FaultWindow(fault, start, end, reverted=False)))
    return [w for _, w in sorted(windows, key=lambda pair: pair[0])]


def _shown_output(output: str | None, error: str | None) -> str:
    text = output or ""
    if len(text) > OUTPUT_SHOWN:
        text = text[:OUTPUT_SHOWN] + " …"
    if error:
        text = f"{text}\n{error}".strip()
    return text


def _status(row: dict) -> str:
    if row["tolerance_met"] is False:
        return f"{row['status']}, tolerance not met"
    return str(row["status"])


def activity_table(journal: Journal) -> tuple[str, list[dict]]:
    """What the origin of the offsets is, and per activity: phase, name, kind, status,
    start offset s, duration s, output (or error). Offsets count from the load's start
    when it is known, else from the experiment's start."""
    origin, what = journal.origin, "load start"
    if origin is None:
        origin, what = journal.experiment_start, "experiment start"
    rows = [
        {
            "phase": a["phase"],
            "name": a["name"],
            "kind": a["kind"],
            "status": _status(a),
            "start_s": _offset(a["started_at"], origin),
            "duration_s": a["duration_s"],
            "output": _shown_output(a["output_json"], a["error"]),
            "failed": a["status"] != "succeeded" or a["tolerance_met"] is False,
        }
        for a in journal.activities.iter_rows(named=True)
    ]
    return what, rows
