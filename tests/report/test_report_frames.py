"""Computing for the report: panels from series, which trends, what they carry."""

from __future__ import annotations

import pytest

from nightly_pipeline.report import frames as fr
from tests.real_rows import RATE
from tests.report import frames


def test_series_panels_from_store_series() -> None:
    panels = fr.series_panels(frames.series(seconds=4))
    assert [p.title for p in panels] == ["throughput", "latency http_req_duration", "errors"]
    throughput, latency, errors = (p.lines for p in panels)
    assert throughput["value"].to_list() == [float(RATE)] * 4
    assert sorted(latency["line"].unique()) == ["p50", "p95", "p99"]
    assert latency.filter(line="p95")["value"].to_list() == [frames.SERIES_LATENCY_MS] * 4
    assert errors["value"].to_list() == [float(frames.FAILED_PER_SECOND)] * 4


def test_a_run_stores_no_rss_series() -> None:
    """The runner adds the RSS growth after the load: a whole-run figure (a check's value,
    in the checks table), in no per-second series. So no memory panel."""
    soak = frames.series(seconds=4)
    assert sorted(soak["metric"].unique()) == ["http_req_duration", "http_req_failed", "http_reqs"]
    assert "memory (RSS)" not in [p.title for p in fr.series_panels(soak)]


def test_absent_series_give_fewer_panels() -> None:
    assert fr.series_panels(None) == []
    assert fr.series_panels(frames.series().clear()) == []
    only_failures = frames.series().filter(metric="http_req_failed")
    assert [p.title for p in fr.series_panels(only_failures)] == ["errors"]


@pytest.mark.parametrize(
    ("metric", "key"),
    [
        ("http_req_duration.p95", True),
        ("http_req_duration.p99", True),
        ("http_req_duration.p50", False),
        ("http_req_failed.rate", True),
        ("http_reqs.rate", True),
        ("storage_errors_total.rate", True),
        ("checks.rate", False),
        ("engine.generator_bound", False),
    ],
)
def test_key_metrics(metric: str, key: bool) -> None:
    assert fr.is_key_metric(metric) is key


def test_trends_for_the_night() -> None:
    trends = fr.trends(frames.history(), frames.verdicts(), frames.baselines(), frames.NIGHT)
    labels = [(t.test, t.label) for t in trends]
    assert labels == [
        (frames.SOAK, "http_req_duration.p95"),
        (frames.SOAK, "http_req_duration.p99"),
        (frames.SOAK, "http_req_failed.rate"),
        (frames.CRUD, "engine.generator_bound"),  # improvement verdict: charted
        (frames.CRUD, "http_req_duration.p95"),
        (frames.CRUD, "http_req_duration.p99"),
        (frames.CRUD, "http_req_failed.rate"),
    ]
    regression = trends[0]
    assert regression.verdict == "regression"
    assert regression.first_bad_night == frames.FIRST_BAD
    assert regression.change_nights == (frames.NIGHTS[2], frames.FIRST_BAD)
    assert regression.band == pytest.approx((48.0, 50.0, 52.0))
    assert regression.failed_nights == (frames.FAILED_NIGHT,)
    assert regression.points["night"].to_list() == frames.NIGHTS
    assert trends[3].band is None  # no baseline for it


def test_trends_stop_at_the_night_and_filter_profiles() -> None:
    night = frames.NIGHTS[3]
    trends = fr.trends(frames.history(), frames.verdicts(), frames.baselines(), night)
    assert all(t.points["night"].max() == night for t in trends)
    assert fr.trends(frames.history(), frames.verdicts(), frames.baselines(), frames.NIGHT,
                     profiles=["smoke"]) == []  # fmt: skip


def test_all_metrics_selects_every_key() -> None:
    keys = fr.trend_keys(frames.history(), frames.verdicts(), all_metrics=True)
    assert keys.height == 11


@pytest.mark.parametrize(
    ("tags", "label"),
    [("{}", ""), (None, ""), ('{"a":"x","b":"y"}', "a=x,b=y"), ("not json", "not json")],
)
def test_tags_label(tags: str | None, label: str) -> None:
    assert fr.tags_label(tags) == label
