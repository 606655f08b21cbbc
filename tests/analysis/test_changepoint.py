"""E-divisive + t-test change points on seeded synthetic series (3 % noise)."""

import numpy as np
import pytest

from nightly_pipeline.analysis import detect_change_points, detect_change_points_many
from nightly_pipeline.analysis import synthetic as syn
from nightly_pipeline.analysis.changepoint import _best_splits
from nightly_pipeline.analysis.synthetic import Step

SERIES_PER_CASE = 30
NIGHTS = 100


def _errors(size: float, direction: str, sign: int) -> list[int]:
    """Distance (nights) from each injected step to the nearest change point in the right
    direction; 10**6 when none."""
    worse = 1 if direction == "lower" else -1
    pres = [30 + seed for seed in range(SERIES_PER_CASE)]
    series = [
        syn.values(
            seed + 1000 * int(100 * size),
            NIGHTS,
            steps=[Step(pre, size, sign)],
            direction=direction,
        )
        for seed, pre in enumerate(pres)
    ]
    out = []
    for cps, pre in zip(detect_change_points_many(series), pres, strict=True):
        hits = [abs(c.index - pre) for c in cps if np.sign(c.magnitude) == sign * worse]
        out.append(min(hits, default=10**6))
    return out


CASES = [(d, s) for d in ("lower", "higher") for s in (1, -1)]


@pytest.mark.parametrize(("direction", "sign"), CASES)
@pytest.mark.parametrize("size", [0.10, 0.20])
def test_steps_of_10_percent_or_more_found_within_3_nights(size, direction, sign) -> None:
    assert max(_errors(size, direction, sign)) <= 3


@pytest.mark.parametrize(("direction", "sign"), CASES)
def test_steps_of_5_percent_found_within_7_nights(direction, sign) -> None:
    """Every 5 % step is found in the right direction; at most 2 of 30 more than 7 nights off.

    A 5 % step in 3 % noise is 1.7 σ per night: even the least-squares (maximum-likelihood)
    split of a series known to hold exactly one step lands more than a week off for 1.9 %
    of them (ours: 2.1 %, both over the same 3,000 series), so "all 30 within 7 nights"
    would depend on the seeds rather than on the detector.
    """
    errors = _errors(0.05, direction, sign)
    assert max(errors) < 10**6
    assert sum(e > 7 for e in errors) <= 2


def test_change_point_fields() -> None:
    values = [100.0] * 20 + [110.0] * 20
    values = np.array(values) * (1 + 0.01 * np.random.default_rng(0).standard_normal(40))
    (cp,) = detect_change_points(values)
    assert cp.index == 20
    assert cp.mean_before == pytest.approx(100, rel=0.01)
    assert cp.mean_after == pytest.approx(110, rel=0.01)
    assert cp.magnitude == pytest.approx(0.10, abs=0.01)
    assert cp.pvalue < 1e-10


def test_nan_values_are_ignored_and_indices_refer_to_the_input() -> None:
    values = syn.values(3, 60, steps=[Step(30, 0.2)])
    values[[5, 29, 31, 40]] = np.nan
    (cp,) = detect_change_points(values)
    assert cp.index == 30


def test_degenerate_inputs() -> None:
    assert detect_change_points([]) == []
    assert detect_change_points([1.0, 2.0]) == []
    assert detect_change_points([5.0] * 40) == []
    (cp,) = detect_change_points([0.0] * 20 + [1.0] * 20)  # from zero: infinite magnitude
    assert cp.index == 20 and cp.magnitude == np.inf and cp.pvalue == 0.0
    with pytest.raises(ValueError, match="window"):
        detect_change_points([1.0] * 10, window=1)


def test_many_equals_one_by_one() -> None:
    series = [syn.values(s, 80, steps=[Step(40, 0.1)]) for s in range(5)]
    assert detect_change_points_many(series) == [detect_change_points(s) for s in series]


def test_candidates_match_otava() -> None:
    """Our batched Q(τ, κ) picks the same split and Q value as Otava's calculator."""
    calculator = pytest.importorskip("otava.change_point_divisive.calculator")
    rng = np.random.default_rng(7)
    for _ in range(100):
        n = int(rng.integers(3, 50))
        x = rng.normal(size=n) + (np.arange(n) > n // 3) * rng.uniform(0, 3)
        expected = calculator.PairDistanceCalculator(x).get_candidate_change_point(slice(0, n))
        tau, qhat = _best_splits(x[None, :], np.array([n]))
        assert tau[0] == expected.index
        assert qhat[0] == pytest.approx(expected.qhat)
