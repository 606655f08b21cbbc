"""baselines(): failed nights and regressed nights stay out."""

import numpy as np
import polars as pl
import pytest

from nightly_pipeline.analysis import BASELINE_SCHEMA, baselines, regression_verdicts
from nightly_pipeline.analysis import synthetic as syn
from nightly_pipeline.analysis.synthetic import Step

from .conftest import frame, night


def test_excludes_failed_and_regressed_nights() -> None:
    values = syn.values(21, 80, steps=[Step(60, 0.2)])
    status = ["passed"] * 80
    failed = [5, 17, 33, 70]
    for i in failed:
        status[i] = "failed"
    history = frame(values.tolist(), status=status)
    verdicts = regression_verdicts(history)
    assert verdicts["first_bad_night"][0] == night(60)
    (row,) = baselines(history, verdicts).iter_rows(named=True)
    keep = [i for i in range(60) if i not in failed]
    assert row["n"] == len(keep)
    assert row["mean"] == pytest.approx(values[keep].mean())
    assert row["std"] == pytest.approx(values[keep].std(ddof=1))
    assert (row["low"], row["high"]) == pytest.approx(
        (row["mean"] - 2 * row["std"], row["mean"] + 2 * row["std"])
    )
    assert (row["first_night"], row["last_night"]) == (night(0), night(59))


def test_stable_series_uses_its_current_regime() -> None:
    # an improvement 40 nights ago: the baseline is the level since then
    values = syn.values(22, 100, steps=[Step(60, 0.2, -1)])
    history = frame(values.tolist())
    verdicts = regression_verdicts(history)
    assert verdicts["verdict"][0] == "improvement"
    (row,) = baselines(history, verdicts).iter_rows(named=True)
    assert row["first_night"] == night(60)
    assert row["mean"] == pytest.approx(values[60:].mean())
    assert verdicts["baseline_mean"][0] == pytest.approx(row["mean"])


def test_without_verdicts_and_schema() -> None:
    history = pl.concat([frame([1.0, 2.0, 3.0]), frame([5.0], metric="http_reqs.rate")])
    empty_verdicts = regression_verdicts(history).clear()
    out = baselines(history, empty_verdicts).sort("metric")
    assert dict(out.schema) == BASELINE_SCHEMA
    assert out["n"].to_list() == [3, 1]
    assert out["mean"].to_list() == [2.0, 5.0]
    assert out["std"][1] is None  # one night: no spread
    all_failed = frame([1.0, 2.0], status=["failed", "error"])
    assert baselines(all_failed, regression_verdicts(all_failed)).is_empty()
    assert np.isfinite(out["std"][0])
