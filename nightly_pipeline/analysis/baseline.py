"""Baselines: what "normal" looks like for each series, to compare a night against.

A baseline must not learn from the nights it is meant to judge, which is exactly the
plan's rule's flaw (plan_rule.py). So it excludes

- nights whose test did not pass (a failed night's numbers describe the failure), and
- nights at or after a regression's ``first_bad_night`` (they are the regression),

and it is taken from the *current regime*: the nights since the last change point before
that cut-off (levels before an older, accepted change are a different normal). Values
are taken after removing isolated one-night spikes (spikes.py), as the verdicts do. When that
regime holds fewer than ``MIN_BASELINE_NIGHTS`` eligible nights it reaches back one
change point at a time.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import polars as pl

from nightly_pipeline.analysis._frames import KEYS, day, group_history
from nightly_pipeline.analysis.spikes import despike

MIN_BASELINE_NIGHTS = 3
BASELINE_SCHEMA = {
    "profile": pl.String,
    "test": pl.String,
    "metric": pl.String,
    "tags": pl.String,
    "mean": pl.Float64,
    "std": pl.Float64,
    "low": pl.Float64,
    "high": pl.Float64,
    "n": pl.Int64,
    "first_night": pl.Date,
    "last_night": pl.Date,
}


def baseline_mask(
    nights: np.ndarray,
    eligible: np.ndarray,
    change_nights: Sequence[int],
    first_bad_night: int | None,
) -> np.ndarray:
    """Which of a series' nights (int days, sorted) form its baseline (see module docstring).

    ``eligible``: usable value and a passed test. ``change_nights`` and ``first_bad_night``
    are int days too.
    """
    allowed = eligible if first_bad_night is None else eligible & (nights < first_bad_night)
    starts = sorted(
        (c for c in change_nights if first_bad_night is None or c < first_bad_night),
        reverse=True,
    )
    for start in starts:
        mask = allowed & (nights >= start)
        if mask.sum() >= MIN_BASELINE_NIGHTS:
            return mask
    return allowed


def baselines(history: pl.DataFrame, verdicts: pl.DataFrame) -> pl.DataFrame:
    """Per series: mean, std, band ``mean ± 2 std``, n and night range of its baseline.

    Series without a verdict row are treated as having no change points. Series with no
    eligible night are left out; ``std``/``low``/``high`` are null with a single night.
    """
    g = group_history(history)
    info = _verdict_info(verdicts)
    rows: list[tuple] = []
    for i, key in enumerate(g.keys.iter_rows()):
        sl = slice(int(g.starts[i]), int(g.ends[i]))
        nights, values = g.night[sl], g.value[sl]
        usable = np.isfinite(values)
        nights, values, passed = nights[usable], despike(values[usable]), g.passed[sl][usable]
        changes, first_bad = info.get(key, ((), None))
        mask = baseline_mask(nights, passed, changes, first_bad)
        if not mask.any():
            continue
        v = values[mask]
        mean = float(v.mean())
        std = float(v.std(ddof=1)) if v.size > 1 else None
        band = (mean - 2 * std, mean + 2 * std) if std is not None else (None, None)
        rows.append(
            (*key, mean, std, *band, int(v.size), int(nights[mask][0]), int(nights[mask][-1]))
        )
    int_schema = {**BASELINE_SCHEMA, "first_night": pl.Int32, "last_night": pl.Int32}
    return pl.DataFrame(rows, schema=int_schema, orient="row").with_columns(
        pl.col("first_night", "last_night").cast(pl.Date)
    )


def _verdict_info(verdicts: pl.DataFrame) -> dict[tuple, tuple[list[int], int | None]]:
    """(profile, test, metric, tags) → (change nights, first bad night), as int days."""
    out: dict[tuple, tuple[list[int], int | None]] = {}
    if verdicts.is_empty():
        return out
    cols = [*KEYS, "change_nights", "first_bad_night"]
    for row in verdicts.select(cols).iter_rows():
        *key, changes, first_bad = row
        out[tuple(key)] = (
            [day(d) for d in changes or ()],
            day(first_bad) if first_bad is not None else None,
        )
    return out
