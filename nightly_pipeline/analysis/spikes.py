"""Isolated spikes of one or two nights, removed before change points and baselines.

A night (or two in a row) far from *both* surrounding nights, on the same side, is a
spike: a crashed run's p99, a noisy neighbour on the CI host. It is not a level change,
yet one 10× value wrecks the t-test's variance for every window that contains it
(E-divisive then picks the spike, the t-test finds nothing, and the window stops: a step
right next to a spike goes unseen). So spikes are replaced by the straight line between
the surrounding nights for the analysis; they stay usable nights and the reported
``latest_value`` is the raw value.

"Far" is ``SPIKE_SIGMAS`` robust standard deviations of the series' night-to-night noise
(the median absolute first difference, scaled to σ for Gaussian noise, so steps and
drifts barely affect it). Spikes need a night on each side, so the newest nights never
are one: bad last nights may be the start of a regression. Three bad nights in a row
are a change, not a spike.
"""

from __future__ import annotations

import numpy as np

from nightly_pipeline.analysis.noise import night_to_night_noise

SPIKE_SIGMAS = 8.0
MAX_RUN = 2


def despike(
    values: np.ndarray, *, sigmas: float = SPIKE_SIGMAS, max_run: int = MAX_RUN
) -> np.ndarray:
    """A copy of finite ``values`` with spikes of 1..``max_run`` nights replaced by the
    straight line between the nights around them."""
    x = np.asarray(values, dtype=np.float64)
    out = x.copy()
    if x.size < 3:
        return out
    limit = sigmas * night_to_night_noise(x)
    for run in range(1, max_run + 1):
        m = x.size - run - 1  # candidate runs: x[i+1 : i+1+run], i = the night before
        if m <= 0:
            break
        before, after = x[:m], x[run + 1 : run + 1 + m]
        up = np.ones(m, dtype=bool)
        down = np.ones(m, dtype=bool)
        for k in range(1, run + 1):
            mid = x[k : k + m]
            up &= (mid - before > limit) & (mid - after > limit)
            down &= (before - mid > limit) & (after - mid > limit)
        for i in np.flatnonzero(up | down).tolist():
            frac = np.arange(1, run + 1) / (run + 1)
            out[i + 1 : i + run + 1] = x[i] + frac * (x[i + run + 1] - x[i])
    return out
