"""What ``nightly run`` prints when the night is over: a line per test with its key
figures, and every check with its observed value, threshold and verdict."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from nightly_pipeline.loadgen.thresholds import NOT_MEASURABLE
from nightly_pipeline.report.text import render_rows
from nightly_pipeline.report.values import format_threshold, format_value, key_figures


@dataclass(frozen=True)
class CheckLine:
    """One check of the night as Dagster recorded it, with the values beside its verdict."""

    test: str  # the test's key, e.g. 01_message_soak
    asset: str  # the asset the check judges, e.g. delivery
    name: str  # the check's name, e.g. zero_message_loss
    passed: bool
    blocking: bool
    description: str
    observed: float | None = None  # None: the check reports no single value
    threshold: str = ""  # k6 expression, e.g. p(95)<100
    unit: str = ""
    metric: str = ""
    not_measurable: str = ""
    """Why the target cannot support this check (a visible skip: not passed, not failed)."""

    @property
    def failed(self) -> bool:
        return not self.passed and not self.not_measurable

    @property
    def verdict(self) -> str:
        return NOT_MEASURABLE if self.not_measurable else "pass" if self.passed else "FAIL"

    @property
    def observed_text(self) -> str:
        return "-" if self.observed is None else format_value(self.observed, self.unit)

    @property
    def threshold_text(self) -> str:
        return format_threshold(self.threshold, self.unit) if self.threshold else "-"


def render_tests(
    results: Iterable[Mapping[str, object]], figures: Mapping[str, Mapping[str, float]]
) -> str:
    """``results``: the store's rows of the night's tests; ``figures``: per test, its
    untagged whole-run figures (``http_reqs.rate`` ...)."""
    return render_rows(
        ["test", "status", "duration s", "key figures"],
        [
            [r["test"], r["status"], r["duration_s"], key_figures(figures.get(str(r["test"]), {}))]
            for r in results
        ],
    )


def render_checks(lines: Iterable[CheckLine]) -> str:
    return render_rows(
        ["test", "check", "observed", "threshold", "severity", "verdict"],
        [
            [
                c.test,
                f"{c.asset}/{c.name}" if c.asset else c.name,
                c.observed_text,
                c.threshold_text,
                "blocking" if c.blocking else "warn",
                c.verdict + (f" ({c.not_measurable})" if c.not_measurable else ""),
            ]
            for c in lines
        ],
    )
