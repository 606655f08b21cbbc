"""History frames as numpy arrays, one contiguous run per series.

Verdicts and baselines both walk every (profile, test, metric, tags) series of a history
frame; doing it as one sort plus numpy slices (instead of polars group_by → Python lists
of dates) keeps 300 series × 365 nights in tens of milliseconds. Nights are ``int`` days
since 1970-01-01 (polars' Date representation) until the output frames cast them back.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import numpy as np
import polars as pl

KEYS = ("profile", "test", "metric", "tags")
_EPOCH = date(1970, 1, 1)


def day(d: date) -> int:
    """A date as polars' Date integer (days since the epoch)."""
    return (d - _EPOCH).days


@dataclass(frozen=True)
class Grouped:
    """``keys`` row i describes ``night/value/passed[starts[i]:ends[i]]`` (sorted by night)."""

    keys: pl.DataFrame
    starts: np.ndarray
    ends: np.ndarray
    night: np.ndarray  # int64 days
    value: np.ndarray  # float64, NaN for null
    passed: np.ndarray  # bool: the test's status that night was 'passed'

    def __len__(self) -> int:
        return self.starts.size


def group_history(history: pl.DataFrame, *, until: date | None = None) -> Grouped:
    """Sort and slice a history frame (analysis/CONTRACT.md columns) by series.

    A series' duplicate rows for one night (the store replaces a night, so only a hand-made
    frame has them) keep the last.
    """
    h = history
    if until is not None:
        h = h.filter(pl.col("night") <= until)
    h = (
        h.with_columns(pl.col("tags").fill_null("{}"))
        .unique(subset=[*KEYS, "night"], keep="last", maintain_order=True)
        .sort([*KEYS, "night"])
    )
    if h.is_empty():
        empty = np.zeros(0, dtype=np.int64)
        return Grouped(h.select(KEYS), empty, empty, empty, np.zeros(0), np.zeros(0, dtype=bool))
    gid = h.select(pl.struct(KEYS).rle_id()).to_series().to_numpy()
    starts = np.flatnonzero(np.r_[True, gid[1:] != gid[:-1]])
    ends = np.r_[starts[1:], gid.size]
    return Grouped(
        keys=h.select(KEYS)[starts.tolist()],
        starts=starts,
        ends=ends,
        night=h["night"].cast(pl.Int64).to_numpy(),
        value=h["value"].cast(pl.Float64).fill_null(float("nan")).to_numpy(),
        passed=(h["status"] == "passed").fill_null(False).to_numpy(),
    )
