"""Threshold grammar and spec parsing (the public face is `thresholds`).

Parsed once into a tiny frozen tree: `Threshold` (selector, options) holding an
`Expression` (aggregation, operator, bound) that is evaluated against a flat stats map.
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from nightly_pipeline.loadgen.metrics_series import TagsKey
from nightly_pipeline.loadgen.metrics_stats import COUNTER, GAUGE, RATE, TREND, percentile_key

GRAMMAR = (
    "<aggregation> <op> <number>, aggregation one of avg min max med count rate value "
    "p(N) with N in 0..100, op one of < <= > >= == === !=, e.g. 'p(95)<100'"
)
ALLOWED: dict[str, frozenset[str]] = {
    TREND: frozenset({"avg", "min", "max", "med", "p", "count"}),
    COUNTER: frozenset({"count", "rate"}),
    RATE: frozenset({"rate"}),
    GAUGE: frozenset({"value", "min", "max"}),
}
_BUILTINS = {
    TREND: "http_req_duration http_req_blocked http_req_connecting http_req_sending "
    "http_req_tls_handshaking http_req_waiting http_req_receiving iteration_duration "
    "group_duration ws_connecting ws_session_duration ws_ping",
    COUNTER: "http_reqs iterations dropped_iterations data_sent data_received ws_sessions "
    "ws_msgs_sent ws_msgs_received",
    RATE: "http_req_failed checks",
    GAUGE: "vus vus_max",
}
K6_BUILTIN_KINDS: dict[str, str] = {n: k for k, names in _BUILTINS.items() for n in names.split()}

_OPS: dict[str, Callable[[float, float], bool]] = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
    "==": operator.eq,
    "!=": operator.ne,
}
_NUM = r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?"
_EXPR = re.compile(
    rf"\s*(?P<agg>avg|min|max|med|count|rate|value|p\s*\(\s*(?P<pct>{_NUM})\s*\))"
    rf"\s*(?P<op>===|==|!=|<=|>=|<|>)\s*(?P<num>{_NUM})\s*"
)
_DURATION = re.compile(r"(?:(\d+(?:\.\d+)?)(h|ms|m|s|us|µs|ns))+")
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(h|ms|m|s|us|µs|ns)")
_UNITS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "ns": 1e-9}
_SPEC_KEYS = {"threshold", "abortOnFail", "delayAbortEval", "window"}


class ThresholdError(ValueError):
    """Base of threshold errors."""


class ThresholdSyntaxError(ThresholdError):
    def __init__(self, problems: Sequence[str] | str) -> None:
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        if len(self.problems) == 1:
            super().__init__(self.problems[0])
        else:
            lines = "\n".join(f"  - {p}" for p in self.problems)
            super().__init__(f"{len(self.problems)} invalid thresholds:\n{lines}")


class ThresholdKindError(ThresholdSyntaxError):
    """The aggregation does not apply to the metric's kind (e.g. ``rate`` on a Trend)."""


@dataclass(frozen=True, slots=True)
class Expression:
    """``<aggregation> <op> <number>``, parsed; `aggregation` is the stats-map key."""

    source: str
    aggregation: str  # "avg" .. "value" or "p(N)"
    op: str  # "===" is normalised to "=="
    bound: float

    @property
    def method(self) -> str:
        """The k6 aggregation method: the aggregation, or "p" for any percentile."""
        return "p" if self.aggregation.startswith("p(") else self.aggregation

    def observe(self, stats: Mapping[str, float]) -> float:
        try:
            return float(stats[self.aggregation])
        except KeyError:
            return math.nan

    def holds(self, observed: float) -> bool:
        """NaN (no data) never holds, whatever the operator."""
        return not math.isnan(observed) and _OPS[self.op](observed, self.bound)

    def badness(self, observed: float) -> float:
        """Orders windows: larger = further on the failing side."""
        if self.op in ("<", "<="):
            return observed
        if self.op in (">", ">="):
            return -observed
        return abs(observed - self.bound) if self.op == "==" else -abs(observed - self.bound)


def parse_expression(text: str) -> Expression:
    """Parse one expression. Grammar (whitespace allowed between tokens)::

        expression  := aggregation op number
        aggregation := "avg" | "min" | "max" | "med" | "count" | "rate" | "value"
                     | "p(" number ")"          N in 0..100, e.g. p(99.9)
        op          := "<" | "<=" | ">" | ">=" | "==" | "===" | "!="
        number      := [+-] digits [. digits] [e [+-] digits]   (also ".5")

    ``===`` means ``==`` (k6 v1.1.0 accepts it too). Raises ThresholdSyntaxError quoting
    `text` and this grammar.
    """
    m = _EXPR.fullmatch(text) if isinstance(text, str) else None
    if m is None:
        raise ThresholdSyntaxError(f"invalid threshold expression {text!r}: expected {GRAMMAR}")
    agg = m.group("agg")
    if m.group("pct") is not None:
        p = float(m.group("pct"))
        if not 0.0 <= p <= 100.0:
            raise ThresholdSyntaxError(
                f"invalid threshold expression {text!r}: percentile {p:g} is not in 0..100; "
                f"expected {GRAMMAR}"
            )
        agg = percentile_key(p)
    op = "==" if m.group("op") == "===" else m.group("op")
    return Expression(text, agg, op, float(m.group("num")))


def parse_selector(selector: str) -> tuple[str, TagsKey, str]:
    """``name{k:v, k2:"v2"}`` → (name, sorted tag pairs, k6 display key).

    As k6: pairs split on ",", key and value on the first ":", spaces and quotes
    around each are trimmed; the display key keeps the text between the braces
    (trimmed), which is what k6 writes in --summary-export.
    """
    m = re.fullmatch(r"\s*([A-Za-z_][\w.\-]*)\s*(?:\{(.*)\})?\s*", selector)
    if m is None or not m.group(1):
        raise ThresholdSyntaxError(
            f"invalid metric selector {selector!r}: expected name or name{{key:value,...}}"
        )
    name, inner = m.group(1), m.group(2)
    if inner is None:
        return name, (), name
    tags: dict[str, str] = {}
    for pair in inner.split(","):
        if not pair.strip():
            continue
        key, sep, value = pair.partition(":")
        key, value = key.strip().strip("\"'"), value.strip().strip("\"'")
        if not key or not sep:
            raise ThresholdSyntaxError(
                f"invalid metric selector {selector!r}: tag {pair.strip()!r} is not key:value"
            )
        tags[key] = value
    return name, tuple(sorted(tags.items())), f"{name}{{{inner.strip()}}}" if tags else name


def parse_duration(value: object, what: str) -> float:
    """k6 durations: "10s", "1m30s", "500ms", "1h"; plain numbers are seconds."""
    if isinstance(value, bool):
        raise ThresholdSyntaxError(f"{what} {value!r} is not a duration")
    if isinstance(value, int | float):
        if value < 0 or not math.isfinite(value):
            raise ThresholdSyntaxError(f"{what} {value!r} is not a duration")
        return float(value)
    if isinstance(value, str) and _DURATION.fullmatch(value.strip()):
        return sum(float(n) * _UNITS[u] for n, u in _DURATION_PART.findall(value))
    raise ThresholdSyntaxError(f"{what} {value!r} is not a duration like '10s', '1m30s', '500ms'")


def _parse_window(value: object) -> int | None:
    if value is None:
        return None
    seconds = parse_duration(value, "window")
    if seconds != int(seconds):
        raise ThresholdSyntaxError(f"window {value!r} is not a whole number of seconds")
    return int(seconds) or None


@dataclass(frozen=True, slots=True)
class Threshold:
    metric: str
    tags: TagsKey
    selector: str  # k6's key for the (sub)metric in --summary-export
    expression: Expression
    abort_on_fail: bool = False
    delay_abort_eval_s: float = 0.0
    window_s: int | None = None

    def check_kind(self, kind: str) -> None:
        if self.expression.method not in ALLOWED[kind]:
            allowed = ", ".join("p(N)" if a == "p" else a for a in sorted(ALLOWED[kind]))
            raise ThresholdKindError(
                f"threshold {self.expression.source!r} on {self.selector}: aggregation "
                f"{self.expression.method!r} does not apply to a {kind} metric; "
                f"supported: {allowed}"
            )


def parse_thresholds(
    spec: Mapping[str, Sequence[str | Mapping[str, object]] | str],
    *,
    default_window: str | float | None = None,
    kinds: Mapping[str, str] | None = None,
) -> list[Threshold]:
    """Parse and validate a k6-style spec; raise ONE ThresholdSyntaxError listing all problems.

    `kinds` (metric → kind) adds to K6_BUILTIN_KINDS for checking aggregations now;
    other metrics are checked when the evaluator sees the recorder.
    """
    known = {**K6_BUILTIN_KINDS, **(kinds or {})}
    problems: list[str] = []
    kind_problems: list[str] = []
    out: list[Threshold] = []
    try:
        default_w = _parse_window(default_window)
    except ThresholdSyntaxError as e:
        problems.extend(f"default {p}" for p in e.problems)
        default_w = None
    for selector, items in spec.items():
        try:
            name, tags, display = parse_selector(selector)
        except ThresholdSyntaxError as e:
            problems.extend(e.problems)
            continue
        for item in [items] if isinstance(items, str | Mapping) else items:
            try:
                th = _parse_item(name, tags, display, item, default_w)
                if name in known:
                    th.check_kind(known[name])
                out.append(th)
            except ThresholdKindError as e:
                problems.extend(e.problems)
                kind_problems.extend(e.problems)
            except ThresholdSyntaxError as e:
                problems.extend(e.problems)
    if problems:
        kind_only = len(kind_problems) == len(problems)
        raise (ThresholdKindError if kind_only else ThresholdSyntaxError)(problems)
    return out


def _parse_item(
    name: str, tags: TagsKey, display: str, item: object, default_w: int | None
) -> Threshold:
    if isinstance(item, str):
        item = {"threshold": item}
    if not isinstance(item, Mapping):
        raise ThresholdSyntaxError(
            f"{display}: threshold {item!r} is neither a string nor a mapping"
        )
    errors: list[str] = []

    def attempt(parse: Callable[..., Any], *args: object) -> Any:
        try:
            return parse(*args)
        except ThresholdSyntaxError as e:
            errors.extend(f"{display}: {p}" for p in e.problems)
            return None

    unknown = set(item) - _SPEC_KEYS
    if unknown:
        errors.append(
            f"{display}: unknown option(s) {sorted(unknown)}; known: {sorted(_SPEC_KEYS)}"
        )
    if "threshold" not in item:
        errors.append(f"{display}: threshold mapping {dict(item)!r} has no 'threshold' expression")
    expression = attempt(parse_expression, item["threshold"]) if "threshold" in item else None
    abort = attempt(_parse_bool, item.get("abortOnFail", False))
    delay = attempt(parse_duration, item.get("delayAbortEval", 0), "delayAbortEval")
    window = attempt(_parse_window, item["window"]) if "window" in item else default_w
    if errors:
        raise ThresholdSyntaxError(errors)
    return Threshold(name, tags, display, expression, abort, delay, window)


def _parse_bool(value: object) -> bool:
    if not isinstance(value, bool):
        raise ThresholdSyntaxError(f"abortOnFail {value!r} is not a boolean")
    return value
