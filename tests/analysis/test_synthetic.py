"""synthetic.generate: deterministic, contract columns, truth matches what was injected."""

import polars as pl

from nightly_pipeline.analysis import synthetic as syn
from nightly_pipeline.analysis.synthetic import Drift, SeriesSpec, Step


def test_deterministic_and_contract_columns() -> None:
    a, ta = syn.generate(5, 40, nan_rate=0.05, absent_rate=0.05, failed_rate=0.1)
    b, tb = syn.generate(5, 40, nan_rate=0.05, absent_rate=0.05, failed_rate=0.1)
    assert a.equals(b) and ta.equals(tb)
    assert dict(a.schema) == syn.HISTORY_SCHEMA
    assert a.select(pl.struct("test", "metric").n_unique()).item() == 15 * 20
    assert set(a["status"].unique()) == {"passed", "failed"}


def test_truth_and_injections() -> None:
    specs = [
        SeriesSpec(
            "01_message_soak", "http_req_duration.p95", base=50, noise=0.0, steps=(Step(10, 0.2),)
        ),
        SeriesSpec(
            "01_message_soak",
            "http_reqs.rate",
            base=500,
            noise=0.0,
            steps=(Step(10, 0.2),),
            drifts=(Drift(20, 0.01, end=29),),
        ),
    ]
    history, truth = syn.generate(0, 40, specs, nan_rate=0.1, absent_rate=0.1)
    lat = history.filter(metric="http_req_duration.p95").sort("night")
    thr = history.filter(metric="http_reqs.rate").sort("night")
    assert lat.filter(pl.col("night") == syn.date(2025, 1, 12))["value"].to_list() in ([60.0], [])
    # worse throughput is lower: 500 → 400, then drifting down 1 %/night of 400 to night 29
    last = thr.filter(pl.col("value").is_not_nan())["value"][-1]
    assert abs(last - 400 * (1 - 0.09)) < 1e-9
    kinds = dict(truth.group_by("kind").len().iter_rows())
    assert kinds["step"] == 2 and kinds["drift"] == 1
    absent = truth.filter(kind="absent").height
    assert history.height == 80 - absent
    nan = truth.filter(kind="nan").height
    assert history["value"].is_nan().sum() == nan
