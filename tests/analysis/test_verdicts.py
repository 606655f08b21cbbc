"""regression_verdicts on hand-made and synthetic histories."""

import numpy as np
import polars as pl
import pytest

from nightly_pipeline.analysis import VERDICT_SCHEMA, regression_verdicts
from nightly_pipeline.analysis import synthetic as syn
from nightly_pipeline.analysis.synthetic import SeriesSpec, Step

from .conftest import START, frame, night


def _one(history: pl.DataFrame, **kwargs) -> dict:
    (row,) = regression_verdicts(history, **kwargs).iter_rows(named=True)
    return row


def _noise(seed: int, n: int, **kwargs) -> np.ndarray:
    return syn.values(seed, n, **kwargs)


def test_pure_noise_raises_at_most_one_alarm_in_50_series() -> None:
    specs = [
        SeriesSpec(test=f"t{i:02d}", metric=m, base=b)
        for i in range(25)
        for m, b in (("http_req_duration.p95", 45.0), ("http_reqs.rate", 500.0))
    ]
    history, truth = syn.generate(11, 100, specs)
    assert truth.is_empty()
    verdicts = regression_verdicts(history)
    assert verdicts.height == 50
    assert (verdicts["verdict"] == "regression").sum() <= 1


@pytest.mark.parametrize(
    ("metric", "sign", "verdict"),
    [
        ("http_req_duration.p95", 1, "regression"),
        ("http_reqs.rate", 1, "regression"),  # throughput down 15 %
        ("http_req_duration.p95", -1, "improvement"),
        ("http_reqs.rate", -1, "improvement"),  # throughput up 15 %
    ],
)
def test_step_verdict_in_the_metric_direction(metric: str, sign: int, verdict: str) -> None:
    direction = "lower" if "duration" in metric else "higher"
    values = _noise(3, 80, steps=[Step(60, 0.15, sign)], direction=direction)
    row = _one(frame(values.tolist(), metric=metric))
    assert row["verdict"] == verdict
    assert row["direction"] == direction
    assert row["magnitude"] == pytest.approx(0.15 * sign, abs=0.03)  # + = worse
    assert row["confidence"] > 0.999
    assert row["first_bad_night"] == (night(60) if verdict == "regression" else None)
    assert night(60) in row["change_nights"]
    assert row["nights"] == 80 and row["skipped_nights"] == 0


def test_too_little_history_is_insufficient_data_never_an_alarm() -> None:
    row = _one(frame([100.0] * 5 + [300.0] * 2))
    assert row["verdict"] == "insufficient data"
    assert row["nights"] == 7
    assert row["first_bad_night"] is None and row["magnitude"] is None
    # NaN nights do not count towards min_nights
    row = _one(frame([100.0] * 6 + [float("nan")] * 4), min_nights=8)
    assert row["verdict"] == "insufficient data"
    assert (row["nights"], row["skipped_nights"]) == (6, 4)


def test_nan_null_and_absent_nights_are_skipped_and_counted() -> None:
    values: list[float | None] = _noise(5, 60, steps=[Step(45, 0.2)]).tolist()
    values[10] = float("nan")
    values[50] = None
    other = frame([1.0] * 60, metric="http_reqs.rate")  # the profile ran all 60 nights
    history = pl.concat([frame(values, skip=(20, 47)), other])
    row = regression_verdicts(history).filter(metric="http_req_duration.p95").row(0, named=True)
    assert row["skipped_nights"] == 4
    assert row["nights"] == 56
    assert row["verdict"] == "regression"
    assert row["first_bad_night"] == night(45)


def test_failed_nights_are_analysed_but_not_in_the_baseline() -> None:
    values = _noise(8, 70, steps=[Step(55, 0.2)])
    status = ["passed"] * 70
    for i in range(55, 70):  # the regressed nights failed their thresholds too
        status[i] = "failed"
    for i in (10, 11, 30):
        status[i] = "error"
        values[i] = 1000.0 if i == 30 else values[i]  # an errored night's odd value
    row = _one(frame(values.tolist(), status=status))
    assert row["verdict"] == "regression"
    assert row["first_bad_night"] == night(55)
    keep = [i for i in range(55) if status[i] == "passed"]
    # the baseline is the reference regime's passed nights, so no errored night
    assert row["baseline_mean"] == pytest.approx(values[keep].mean(), rel=0.01)


def test_one_bad_night_is_not_a_regression_two_are() -> None:
    values = _noise(9, 60)
    one = np.r_[values, values[-1] * 1.3]
    assert _one(frame(one.tolist()))["verdict"] == "stable"
    two = np.r_[values, values[-1] * 1.3, values[-2] * 1.3]
    row = _one(frame(two.tolist()))
    assert row["verdict"] == "regression"
    assert row["first_bad_night"] == night(60)


def test_end_of_a_short_dip_is_not_a_regression() -> None:
    values = _noise(12, 90)
    values[40:44] *= 0.8  # four good nights, then back to normal
    row = _one(frame(values.tolist()))
    assert row["verdict"] == "stable"


def test_evaluated_night_ignores_later_nights() -> None:
    values = _noise(4, 80, steps=[Step(70, 0.3)])
    history = frame(values.tolist())
    assert _one(history)["verdict"] == "regression"
    row = _one(history, evaluated_night=night(65))
    assert row["verdict"] == "stable"
    assert row["nights"] == 66
    assert row["latest_value"] == pytest.approx(values[65])


def test_plan_rule_reported_beside_the_verdict() -> None:
    big = _one(frame(_noise(2, 40, steps=[Step(37, 0.3)]).tolist()))
    assert big["plan_rule_fired"] and big["verdict"] == "regression"
    # 12 %: change points say regression, the plan's rule stays silent
    small = _one(frame(_noise(2, 50, steps=[Step(35, 0.12)]).tolist()))
    assert not small["plan_rule_fired"] and small["verdict"] == "regression"


def test_schema_and_empty_history() -> None:
    empty = regression_verdicts(frame([]))
    assert empty.is_empty()
    assert dict(empty.schema) == VERDICT_SCHEMA
    full = regression_verdicts(syn.history(0, 30, series=syn.default_series(2, 3)))
    assert dict(full.schema) == VERDICT_SCHEMA
    assert full.height == 6


# -- Issue 15: quiet on noisy series, still quick on real steps --------------------------


def _alert_nights(history: pl.DataFrame, nights: range) -> dict[str, list[int]]:
    """Per test: the nights on which the verdict, run on the history so far, is regression."""
    out: dict[str, list[int]] = {}
    for i in nights:
        v = regression_verdicts(history, evaluated_night=night(i))
        for t in v.filter(verdict="regression")["test"].to_list():
            out.setdefault(t, []).append(i)
    return out


def test_outliers_of_3_to_5x_do_not_alert_even_on_the_last_nights() -> None:
    values = _noise(31, 60, noise=0.02)
    for at, factor in ((20, 4.0), (35, 1 / 3)):  # isolated: smoothed away
        values[at] *= factor
    last = np.r_[values, values[-1] * 5.0]  # tonight ×5: one night decides nothing
    assert _one(frame(last.tolist()))["verdict"] == "stable"
    # ×3 yesterday, normal tonight: the two-night regime's mean is 2× worse, but only one
    # of its nights is; its lower median is not
    odd_then_normal = np.r_[values, values[-1] * 3.0, values[-2]]
    assert _one(frame(odd_then_normal.tolist()))["verdict"] == "stable"


def test_a_10_percent_step_alerts_within_2_nights() -> None:
    specs = [SeriesSpec(f"t{i}", "http_req_duration.p95", noise=0.02) for i in range(5)]
    specs = syn.with_steps(specs, [Step(50, 0.10)])
    history, _ = syn.generate(32, 60, specs, start=START)
    alerts = _alert_nights(history, range(45, 60))
    assert sorted(alerts) == [f"t{i}" for i in range(5)]
    assert all(a[0] in (51, 52) for a in alerts.values())  # step night + 1 or 2


def test_a_missing_night_is_tolerated() -> None:
    values = _noise(33, 60, noise=0.02, steps=[Step(50, 0.10)])
    other = frame([1.0] * 60, metric="http_reqs.rate")  # the profile ran every night
    history = pl.concat([frame(values.tolist(), skip=(20, 51)), other])
    # the night after the step is missing: the step is called on the next one
    v = regression_verdicts(history, evaluated_night=night(52))
    row = v.filter(metric="http_req_duration.p95").row(0, named=True)
    assert row["verdict"] == "regression" and row["first_bad_night"] == night(50)
    assert row["skipped_nights"] == 2
    quiet = frame(_noise(34, 60, noise=0.02).tolist(), skip=(10, 30, 58))
    assert not _alert_nights(quiet, range(30, 60))


def test_a_variance_change_alone_does_not_alert() -> None:
    specs = [
        SeriesSpec(f"t{i}", m, noise=0.02, noise_changes=(syn.NoiseChange(40, 0.04),))
        for i in range(4)
        for m in ("http_req_duration.p95", "http_reqs.rate")
    ]
    history, truth = syn.generate(35, 80, specs, start=START)
    assert set(truth["kind"]) == {"noise"}
    alerts = _alert_nights(history, range(38, 80))
    # 8 series × 42 nights: one alerting night is 0.3 per 100, the most Issue 15 allows
    # (here: five nights in a row 4.4 % low on the louder noise, the one seen)
    assert sum(len(a) for a in alerts.values()) <= 1


def test_noisy_series_without_a_step_stay_quiet() -> None:
    specs = [SeriesSpec(f"t{i}", "http_req_duration.p95", noise=0.10) for i in range(8)]
    history, _ = syn.generate(36, 80, specs, start=START)
    assert not _alert_nights(history, range(20, 80))


def test_a_slow_creep_of_1_percent_a_night_is_flagged_once_it_reaches_the_min_effect() -> None:
    # decided (DESIGN §7, docs/history.md): a creep is a regression, flagged within a
    # week of its reaching the 5 % minimum effect, never before it starts
    specs = [
        SeriesSpec(f"t{i}", "http_req_duration.p95", noise=0.02, drifts=(syn.Drift(40, 0.01),))
        for i in range(4)
    ]
    history, _ = syn.generate(37, 70, specs, start=START)
    alerts = _alert_nights(history, range(20, 70))
    assert sorted(alerts) == [f"t{i}" for i in range(4)]
    assert all(45 <= a[0] <= 52 for a in alerts.values())
