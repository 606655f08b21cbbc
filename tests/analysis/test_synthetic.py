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


def test_hard_cases_noise_gaps_outliers_and_hazards() -> None:
    quiet, truth = syn.hard_case("quiet", 1, count=40, nights=100)
    again, _ = syn.hard_case("quiet", 1, count=40, nights=100)
    assert quiet.equals(again)
    assert set(truth["kind"]) == {"absent"}
    assert 0.015 < truth.height / (40 * 100) < 0.045  # ~3 % missing nights
    noise = [s.noise for s in syn.hard_specs("quiet", 1, count=40)]
    assert 0.01 <= min(noise) < 0.02 and 0.06 < max(noise) <= 0.10

    _, truth = syn.hard_case("outliers", 1, count=40, nights=100)
    sizes = truth.filter(kind="outlier")["size"]
    assert sizes.len() > 40 and sizes.min() >= 2.0 and sizes.max() <= 4.0  # ×3..×5

    specs = syn.hard_specs("variance", 1, count=40)
    assert all(len(s.noise_changes) == 1 and not s.steps for s in specs)
    louder = [s for s in specs if s.noise_changes[0].noise > s.noise]
    assert 5 < len(louder) < 35
    lvl = syn.noise_level(10, 0.02, [syn.NoiseChange(4, 0.06)])
    assert lvl.tolist() == [0.02] * 4 + [0.06] * 6

    _, truth = syn.hard_case("step5", 1, count=40, nights=100)
    steps = truth.filter(kind="step")
    assert steps.height == 40 and (steps["size"] == 0.05).all() and (steps["sign"] == 1).all()
    assert steps["index"].min() >= 40 and steps["index"].max() < 85
    _, truth = syn.hard_case("drift", 1, count=40, nights=100)
    assert (truth.filter(kind="drift")["size"] == syn.HARD_DRIFT).all()
