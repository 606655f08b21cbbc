"""Our t-distribution p-values against scipy (skipped when scipy is not installed)."""

import numpy as np
import pytest

from nightly_pipeline.analysis._tdist import t_pvalue, ttest_from_stats


def test_known_values() -> None:
    # two-sided p of t=2.0 with 10 df is 0.0734; t=0 is 1; infinite t is 0
    p = t_pvalue([2.0, 0.0, np.inf, np.nan], [10, 10, 10, 10])
    assert p[0] == pytest.approx(0.07338803, rel=1e-6)
    assert p[1] == pytest.approx(1.0)
    assert p[2] == 0.0
    assert p[3] == 1.0


def test_matches_scipy() -> None:
    stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(0)
    t = rng.normal(size=2000) * 6
    df = rng.uniform(0.5, 500, size=2000)
    p = t_pvalue(t, df)
    expected = 2 * stats.t.sf(np.abs(t), df)
    np.testing.assert_allclose(p, expected, rtol=1e-9, atol=1e-300)


@pytest.mark.parametrize("equal_var", [True, False])
def test_two_sample_matches_scipy(equal_var: bool) -> None:
    stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(1)
    for _ in range(50):
        a = rng.normal(0, 1, size=rng.integers(2, 40))
        b = rng.normal(rng.uniform(-2, 2), rng.uniform(0.5, 2), size=rng.integers(2, 40))
        ours = ttest_from_stats(
            a.mean(), a.var(ddof=1), a.size, b.mean(), b.var(ddof=1), b.size, equal_var=equal_var
        )
        assert float(ours) == pytest.approx(
            stats.ttest_ind(a, b, equal_var=equal_var).pvalue, rel=1e-8
        )


def test_constant_segments() -> None:
    assert float(ttest_from_stats(1.0, 0.0, 5, 2.0, 0.0, 5, equal_var=True)) == 0.0
    assert float(ttest_from_stats(1.0, 0.0, 5, 1.0, 0.0, 5, equal_var=True)) == 1.0
    assert float(ttest_from_stats(1.0, 0.0, 1, 2.0, 0.0, 1, equal_var=False)) == 1.0
