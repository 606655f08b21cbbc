"""leak_verdict: a 0.5 MB/min leak is caught, flat noise is not, outliers do not matter."""

import math

import numpy as np
import pytest

from nightly_pipeline.analysis import leak_verdict

SECONDS = np.arange(0, 30 * 60, 1.0)  # a 30 min soak sampled each second


def _rss(slope_mb_per_min: float, noise_mb: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return 200.0 + slope_mb_per_min * SECONDS / 60 + noise_mb * rng.standard_normal(SECONDS.size)


def test_half_a_megabyte_per_minute_leaks() -> None:
    v = leak_verdict(SECONDS, _rss(0.5, 1.0), warmup_s=120, max_growth_pct=5)
    assert v.slope_mb_per_min == pytest.approx(0.5, abs=0.02)
    assert v.growth_pct == pytest.approx(0.5 * 28 / 201 * 100, abs=0.3)  # ≈ 7 %
    assert v.leaking
    assert "MB/min" in v.detail


def test_flat_noisy_series_does_not_leak() -> None:
    v = leak_verdict(SECONDS, _rss(0.0, 3.0, seed=1), warmup_s=120, max_growth_pct=5)
    assert abs(v.slope_mb_per_min) < 0.05
    assert not v.leaking


def test_outliers_do_not_move_the_slope() -> None:
    rss = _rss(0.5, 1.0, seed=2)
    rng = np.random.default_rng(3)
    spikes = rng.choice(SECONDS.size, size=90, replace=False)  # 5 % of samples, +80 MB
    rss[spikes] += 80
    rss[-5:] += 150  # and a burst at the very end, where least squares is most sensitive
    v = leak_verdict(SECONDS, rss, warmup_s=120, max_growth_pct=5)
    assert v.slope_mb_per_min == pytest.approx(0.5, abs=0.03)
    flat = _rss(0.0, 1.0, seed=4)
    flat[-30:] += 60
    assert not leak_verdict(SECONDS, flat, warmup_s=120, max_growth_pct=5).leaking


def test_warmup_growth_is_ignored_and_short_runs_are_not_judged() -> None:
    rss = np.where(SECONDS < 300, 100 + SECONDS / 3, 200.0)  # +100 MB during warm-up, then flat
    assert not leak_verdict(SECONDS, rss, warmup_s=300, max_growth_pct=5).leaking
    short = leak_verdict([0, 1, 2], [1.0, 2.0, 3.0], warmup_s=1, max_growth_pct=5)
    assert math.isnan(short.slope_mb_per_min) and not short.leaking
    with pytest.raises(ValueError, match="length"):
        leak_verdict([0, 1], [1.0], warmup_s=0, max_growth_pct=5)
