"""The newest nights against the weeks before them: a 5 % step seen on its third night.

The change-point verdicts wait until the new regime is clear of the noise (``MIN_Z`` = 4
after E-divisive chose the split) and the CUSUM until its sum passes 14, so a 5 % step on
a series whose nights vary by 1-3 % was reported a median 3 nights after it (bench,
Issue 15's target: 2). Here the newest ``WINDOW`` nights are judged together against the
median of the ``REFERENCE_NIGHTS`` nights before them, with σ the largest of three: those
nights' robust night-to-night noise, their median absolute deviation (noise that wanders
rather than jitters) and the recent nights' noise (``noise.recent_noise``: noise that grew
lately raises the bar; without it the bench's variance case alerted 0.6 times per 100
quiet nights). All three must hold:

- every one of the nights is ``MIN_NIGHT_Z`` σ worse (one or two 3-5× outliers among them
  decide nothing);
- their mean is ``MIN_MEAN_Z`` standard errors worse (σ·√(1/WINDOW + 1/reference nights));
- their mean is worse by ``MAGNITUDE`` × min_effect or more (a 5 % step measures 5 ± 1 %;
  a 2 % shift on a very quiet series is not the effect we care about).

On a series louder than that (min_effect < ``MIN_NIGHT_Z`` σ, CV over ~3.3 % for a 5 %
effect) a step of the minimum effect cannot make every night ``MIN_NIGHT_Z`` σ worse, and
what passes there is chance: the test stays silent (bench, variance case at CV > 3 %: 0.34
alerts per 100 quiet nights with it, steps found no sooner).

It holds for as long as the three do: usually until the change points, which then see the
new regime, take over. ``WINDOW = 3, MIN_NIGHT_Z = 1.5, MIN_MEAN_Z = 3``: two nights alerted
more on drifting series (0.32 per 100 quiet nights), the same 3 nights with 3.5 a night
later (bench/regression_vs_otava.py part 1, numbers in bench/README.md).
"""

from __future__ import annotations

from math import sqrt

import numpy as np

from nightly_pipeline.analysis.cusum import Alarm, excursion_alarm
from nightly_pipeline.analysis.noise import night_to_night_noise, recent_noise, spread_around

WINDOW = 3
REFERENCE_NIGHTS = 40
MIN_REFERENCE_NIGHTS = 14
MIN_NIGHT_Z = 1.5
MIN_MEAN_Z = 3.0
MAGNITUDE = 0.8


def recent_worsening(values: np.ndarray, worse_sign: float, min_effect: float) -> Alarm | None:
    """The alarm when the last ``WINDOW`` of ``values`` (usable nights, oldest first) are
    clearly worse than the nights before them. ``worse_sign``: +1 when up is worse."""
    start = values.size - WINDOW
    reference = values[max(0, start - REFERENCE_NIGHTS) : start]
    if reference.size < MIN_REFERENCE_NIGHTS:
        return None
    level = float(np.median(reference))
    sigma = max(
        night_to_night_noise(reference),
        spread_around(reference, level),
        recent_noise(values, start),
    )
    if level == 0 or not sigma > 0 or min_effect * abs(level) < MIN_NIGHT_Z * sigma:
        return None  # no level, or too loud: a min_effect step is not MIN_NIGHT_Z σ a night
    newest = values[start:]
    z = worse_sign * (newest - level) / sigma
    mean_z = float(z.mean()) / sqrt(1.0 / WINDOW + 1.0 / reference.size)
    worse = worse_sign * (float(newest.mean()) - level) / abs(level)
    if z.min() < MIN_NIGHT_Z or mean_z < MIN_MEAN_Z or worse < MAGNITUDE * min_effect:
        return None
    return excursion_alarm(newest, start, level, sigma, worse_sign)
