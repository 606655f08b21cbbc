"""Which way is worse for a metric: one rule table, first match wins.

A regression is "worse in the metric's direction": latency up, throughput down. The
direction is a property of the name, so it lives here in one table rather than in each
test's spec. Names are ``<k6 metric>.<stat>``; the stat alone does not decide (``.rate`` is
a per-second count for ``http_reqs`` but a failure fraction for ``http_req_failed``), so
the rules match the whole name and the order matters:

1. things that should not happen (failures, drops, denials, retries, …) → lower, whatever
   the stat — this is why ``http_req_failed.rate`` never reaches rule 2;
2. volume and success (requests, throughput, hit ratio, delivered, success, …) → higher;
3. cost (latency, duration, lag, memory, CPU, growth, …) → lower;
4. anything else → lower: most load-test numbers are costs, and an unknown metric that
   rises is the safer thing to flag.

Add a rule here (and a row to ``tests/analysis/test_direction.py``) for a new metric
whose direction the default gets wrong.
"""

from __future__ import annotations

import re
from functools import cache
from typing import Literal

Direction = Literal["lower", "higher"]


def _word(*words: str) -> str:
    """Alternatives that must not be glued to other letters (``hits`` but not ``white``).

    ``\\b`` is useless here: ``_`` is a word character, and names are snake_case.
    """
    return "(?<![a-z])(?:" + "|".join(words) + ")(?![a-z])"


RULES: tuple[tuple[str, Direction], ...] = (
    # 1. should-not-happen counts and fractions: lower is better whatever the stat
    (
        "fail|error|"
        + _word("errs?", "drops?", "lost", "dead", "crash(es|ed)?")
        + "|dropped|reject|denied|denial|dlq|timeout|timed_out|retr(y|ies)|disconnect"
        "|terminat|overload|miss|loss|stale|corrupt|leak|conflict|breaker|backpressure"
        "|throttl|unexpected|restart|evict|blocked",
        "lower",
    ),
    # 2. volume and success: higher is better
    (
        r"(^|[._])(http_)?reqs\.(rate|count)$|iterations\.(rate|count)$|throughput|"
        + _word("rps", "hits?", "sent", "acked", "ops", "per_s", "per_sec", "per_second")
        + r"|hit_(ratio|rate)|delivered|delivery_(ratio|rate)|success|succeeded"
        r"|checks\.rate$|published|processed|received|availability|uptime|apdex",
        "higher",
    ),
    # 3. costs: lower is better
    (
        r"latency|duration|seconds|lag|wait|blocking|rss|memory|heap|cpu|growth|in_use"
        r"|pel_size|queue|backlog|bytes|recovery|spike|threads|connections|"
        + _word("time", "mem", "fds?")
        + r"|\.(p\d+|p\(\d+\)|avg|med|max|min)$",
        "lower",
    ),
)

_COMPILED = tuple((re.compile(pattern), direction) for pattern, direction in RULES)


@cache
def direction_of(metric: str) -> Direction:
    """``"lower"`` when lower values are better for ``metric``, else ``"higher"``."""
    name = metric.lower()
    for pattern, direction in _COMPILED:
        if pattern.search(name):
            return direction
    return "lower"


def worse_sign(direction: Direction) -> float:
    """+1 where up is worse (``lower`` is better: latency), -1 where down is (throughput)."""
    return 1.0 if direction == "lower" else -1.0
