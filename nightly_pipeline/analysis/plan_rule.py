"""The plan's regression rule, kept as a reported number — and why it cannot decide.

The plan (Phase 5, Test 15): a night is *worse* when it is more than ``threshold`` (10 %)
worse, in the metric's direction, than the average of the ``window`` (7) nights before it;
the rule fires on ``consecutive`` (3) worse nights in a row.

It is blind because the nights after a regression enter the average they are compared
with (DESIGN.md §7). Take a noise-free step of size s on night 0: night k (k < 7) is
compared with ``(7 - k + k(1 + s)) / 7``, so a 12 % step reads 12.0 %, 10.1 %, 8.3 % on
nights 1–3 and never fires. The third night is still above 10 % only when
``(1 + s) / (1 + 2s/7) > 1.1``, i.e. ``s > 0.1 / (1 - 2.2/7) ≈ 14.6 %``: any smaller step is
invisible, however clean the data. A slow drift of d per night is at most ~4d above its
own 7-night average, so drifts under ~2.5 %/night never fire either. Noise makes it worse
both ways (a step just over 14.6 % is caught only when noise happens to help).

``regression_verdicts`` therefore decides with change points and only reports this rule
(``plan_rule_fired``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from nightly_pipeline.analysis.direction import Direction


@dataclass(frozen=True)
class PlanRuleResult:
    """``worse_by[i]``: how much worse night i is than the mean of the ``window`` nights
    before it (a fraction, + = worse; NaN for the first ``window`` nights).
    ``first_night_index``: first night of the first run of ``consecutive`` worse nights.
    """

    fired: bool
    first_night_index: int | None
    worse_by: list[float]


def plan_rule(
    values: Sequence[float],
    direction: Direction,
    *,
    window: int = 7,
    threshold: float = 0.10,
    consecutive: int = 3,
) -> PlanRuleResult:
    """Apply the plan's rule to consecutive nights' ``values`` (NaN nights already dropped)."""
    v = np.asarray(values, dtype=np.float64)
    worse = np.full(v.size, np.nan)
    if v.size > window:
        cs = np.concatenate(([0.0], np.cumsum(v)))
        mean = (cs[window:-1] - cs[: -window - 1]) / window  # mean of the window before i
        with np.errstate(divide="ignore", invalid="ignore"):
            rel = np.where(mean != 0, (v[window:] - mean) / np.abs(mean), np.nan)
        worse[window:] = rel if direction == "lower" else -rel
    is_worse = np.nan_to_num(worse, nan=-np.inf) > threshold
    # run length ending at each night: index minus the last non-worse index
    idx = np.arange(v.size)
    last_break = np.maximum.accumulate(np.where(is_worse, -1, idx)) if v.size else idx
    hits = np.flatnonzero(idx - last_break >= consecutive)
    first = int(hits[0]) - consecutive + 1 if hits.size else None
    return PlanRuleResult(fired=first is not None, first_night_index=first, worse_by=worse.tolist())


def firing_on_last_night(result: PlanRuleResult, *, threshold: float = 0.10, consecutive: int = 3):
    """True when the last ``consecutive`` nights are all worse: the rule fails *this* night.

    That is how the plan runs it (a nightly job that fails), and what the verdict reports;
    ``result.fired`` also counts runs that ended long ago.
    """
    tail = result.worse_by[-consecutive:]
    return len(tail) == consecutive and all(w > threshold for w in tail)
