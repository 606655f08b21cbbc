"""despike: isolated 1–2 night spikes go; level changes and the last nights stay."""

import numpy as np

from nightly_pipeline.analysis import synthetic as syn
from nightly_pipeline.analysis.spikes import despike
from nightly_pipeline.analysis.synthetic import SeriesSpec, Step

from .test_verdicts import regression_verdicts


def test_isolated_spike_replaced_steps_and_edges_kept() -> None:
    x = syn.values(1, 40)
    spiked = x.copy()
    spiked[20] = 1000.0
    spiked[-1] = 1000.0  # the last night may be a regression starting: kept
    out = despike(spiked)
    assert out[20] == (x[19] + x[21]) / 2
    three = x.copy()
    three[20:23] *= 3  # three bad nights: a change
    np.testing.assert_array_equal(despike(three), three)
    assert out[-1] == 1000.0
    stepped = syn.values(1, 40, steps=[Step(20, 1.0)])  # doubles: not a spike
    np.testing.assert_array_equal(despike(stepped), stepped)
    two = x.copy()
    two[20:22] *= 3  # two bad nights in a row: still a spike
    np.testing.assert_allclose(despike(two)[20:22], x[19] + np.array([1, 2]) / 3 * (x[22] - x[19]))


def test_steps_found_next_to_outliers_and_gaps() -> None:
    specs = [
        SeriesSpec(f"t{i:02d}", metric, base=100.0, steps=(Step(60 + i, 0.15),))
        for i in range(10)
        for metric in ("http_req_duration.p95", "http_reqs.rate")
    ]
    history, truth = syn.generate(
        3, 100, specs, outlier_rate=0.03, outlier_size=2.0, nan_rate=0.03, absent_rate=0.03
    )
    assert truth.filter(kind="outlier").height > 20
    verdicts = regression_verdicts(history)
    assert (verdicts["verdict"] == "regression").all()
    steps = truth.filter(kind="step").select("test", "metric", "night")
    joined = verdicts.join(steps, on=["test", "metric"])
    off = (joined["first_bad_night"] - joined["night"]).dt.total_days().abs()
    assert off.max() <= 7  # outliers and gaps right at a step blur where it starts
    assert (off <= 3).sum() >= 18
