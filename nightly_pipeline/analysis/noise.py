"""A series' night-to-night noise, robustly: what the spike filter, the verdicts and the
CUSUM measure changes against."""

from __future__ import annotations

import numpy as np

DIFF_MAD_TO_SIGMA = 1.0 / (0.6744897501960817 * np.sqrt(2.0))
"""σ of the noise from the median |first difference| (a difference of two independent
nights has σ·√2; the median of |N(0, 1)| is 0.674)."""


def night_to_night_noise(x: np.ndarray) -> float:
    """Robust σ of a segment's night-to-night noise (median |first difference|, so a drift
    or one odd night barely moves it)."""
    return float(np.median(np.abs(np.diff(x)))) * DIFF_MAD_TO_SIGMA if x.size > 1 else 0.0
