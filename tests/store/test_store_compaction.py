"""Compaction (DESIGN §12): old per-second series become per-minute rows, everything else is
kept row for row, the file shrinks, and a writer running meanwhile loses nothing.

Every test uses a real DuckDB file; the nights are written as a run writes them
(``tests.real_rows``: a real Recorder, ``build_test_record``, ``write_test_result``) and the
verdicts and baselines by the real ``evaluate_night``.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
import time
from datetime import date, timedelta
from pathlib import Path

import duckdb
import polars as pl
import pytest

from nightly_pipeline.evaluate import evaluate_night
from nightly_pipeline.report.frames import series_panels
from nightly_pipeline.store import (
    MetricStore,
    SeriesRow,
    StoreError,
    StoreSchemaTooNewError,
)
from nightly_pipeline.store.compaction import file_bytes
from tests.real_rows import RATE, SOAK, Run, write_run
from tests.store.conftest import build_result

FIRST = date(2026, 1, 1)
KEPT_FOREVER = (
    *("runs", "test_results", "metrics", "threshold_results", "verdicts", "baselines"),
    *("chaos_experiments", "chaos_activities", "schema_version"),
)
WRITER = Path(__file__).with_name("concurrent_writer.py")


def _table(path: Path, table: str) -> list[tuple[object, ...]]:
    with duckdb.connect(str(path), read_only=True) as conn:
        return sorted(conn.execute(f"SELECT * FROM {table}").fetchall(), key=repr)


def _nights(store: MetricStore, n: int, *, seconds: int = 600) -> list[date]:
    """``n`` nights of the soak and a second test at smoke, each evaluated as a night is."""
    nights = [FIRST + timedelta(days=i) for i in range(n)]
    rng = random.Random(7)
    for i, night in enumerate(nights):
        for test in (SOAK, "02_api_crud"):
            step = 1.3 if i >= n // 2 else 1.0  # a step, as history has
            latency = round(40.0 * step * rng.gauss(1.0, 0.03), 3)
            write_run(store, night, Run("smoke", test, seconds, latency, failing_every=5))
        evaluate_night(store, night)
    return nights


def test_compaction_keeps_every_summary_metric_and_verdict_and_shrinks_the_file(
    store: MetricStore, store_path: Path
) -> None:
    nights = _nights(store, 10)
    before = {t: _table(store_path, t) for t in KEPT_FOREVER}
    newest = {n: store.series(n, SOAK, "smoke") for n in nights[-3:]}
    assert store.verdicts()["night"].n_unique() == len(nights)  # verdicts of every night
    assert not store.baselines().is_empty()
    size_before = file_bytes(store_path)

    result = store.compact(keep_nights=3)

    assert {t: _table(store_path, t) for t in KEPT_FOREVER} == before
    assert result.cutoff == nights[-3]
    assert result.nights == tuple(nights[:-3])
    assert result.rewritten
    assert result.bytes_before == size_before
    assert result.bytes_after == file_bytes(store_path) < size_before
    assert result.series_rows_after < result.series_rows_before
    for night, rows in newest.items():  # the newest nights: untouched, per-second
        assert store.series(night, SOAK, "smoke").equals(rows)
    old = store.series(nights[0], SOAK, "smoke")
    assert set(old["resolution_s"]) == {60}
    assert old.filter(metric="http_reqs")["second"].to_list() == list(range(0, 600, 60))


def test_per_minute_rows_keep_what_the_report_reads(store: MetricStore) -> None:
    store.write_test_result(build_result(FIRST, "t", n_seconds=120, series=_kinds_of_series(120)))
    store.write_test_result(build_result(FIRST + timedelta(days=1), "t"))
    raw = store.series(FIRST, "t", "ci")

    store.compact(keep_nights=1)

    minutes = store.series(FIRST, "t", "ci")
    assert minutes.height == 2 * 4  # two minutes of four metrics
    assert set(minutes["seconds_present"]) == {60}
    for metric in ("latency", "failed", "reqs", "queue_depth"):
        got = minutes.filter(metric=metric).sort("second")
        want = raw.filter(metric=metric).sort("second")
        for first in (0, 60):
            m = got.filter(second=first).row(0, named=True)
            s = want.filter((pl.col("second") >= first) & (pl.col("second") < first + 60))
            assert m["count"] == s["count"].sum()
            if metric == "latency":  # a trend
                weighted = (s["mean"] * s["count"]).sum() / s["count"].sum()
                assert m["mean"] == pytest.approx(weighted)  # exact
                assert m["errors"] == s["errors"].sum()
                assert (m["p95"], m["p99"], m["max"]) == (
                    s["p95"].max(),
                    s["p99"].max(),
                    s["max"].max(),
                )  # the minute's worst second: a spike stays visible
                assert s["p50"].min() <= m["p50"] <= s["p50"].max()
            elif metric == "failed":  # a rate: the minute's exact ratio
                ratio = (s["value"] * s["count"]).sum() / s["count"].sum()
                assert m["value"] == pytest.approx(ratio)
            elif metric == "reqs":  # a counter: per-second mean, exact sum recoverable
                assert m["value"] * m["seconds_present"] == pytest.approx(s["value"].sum())
            else:  # a gauge: the minute's latest value and its max
                assert m["value"] == s.sort("second")["value"][-1]
                assert m["max"] == s["max"].max()


def _kinds_of_series(seconds: int) -> list[SeriesRow]:
    """One trend, rate, counter and gauge, as ``Recorder.series_rows`` shapes each, with
    values that change every second."""
    rows = []
    for s in range(seconds):
        n = 10 + s % 7
        rows += [
            SeriesRow(
                "latency", s, count=n, errors=s % 3, mean=20.0 + s % 11, p50=18.0 + s % 5,
                p95=40.0 + s % 13, p99=60.0 + (500.0 if s == 77 else s % 17), max=90.0 + s,
            ),
            SeriesRow("failed", s, count=n, errors=None, value=(s % 4) / n),
            SeriesRow("reqs", s, count=n, errors=0, value=float(n)),
            SeriesRow("queue_depth", s, count=1, errors=0, max=float(s % 9), value=float(s)),
        ]  # fmt: skip
    return rows


def test_a_compacted_night_still_charts_in_the_report(store: MetricStore) -> None:
    nights = _nights(store, 3, seconds=180)

    store.compact(keep_nights=1)

    old = store.series(nights[0], SOAK, "smoke")
    assert set(old["resolution_s"]) == {60}
    panels = {p.title: p.lines for p in series_panels(old)}
    assert set(panels) == {"throughput", "latency http_req_duration", "errors"}
    assert panels["throughput"]["value"].to_list() == [float(RATE)] * 3  # still req/s
    latency = panels["latency http_req_duration"]
    assert latency.height == 9  # p50, p95 and p99 of each of the 3 minutes
    # the minute's failures per second it merged: 2 of 10 requests a second
    assert set(panels["errors"]["value"]) == {2.0}


def test_compaction_is_idempotent_and_waits_for_enough_nights(
    store: MetricStore, store_path: Path
) -> None:
    nights = _nights(store, 3, seconds=120)

    nothing = store.compact(keep_nights=3)
    assert (nothing.cutoff, nothing.nights) == (FIRST, ())
    assert nothing.series_rows_after == nothing.series_rows_before
    too_few = store.compact(keep_nights=4)
    assert too_few.cutoff is None and "fewer than 4 nights" in too_few.summary()

    first = store.compact(keep_nights=1)
    series = _table(store_path, "series")
    again = store.compact(keep_nights=1)

    assert first.nights == tuple(nights[:2]) and again.nights == ()
    assert _table(store_path, "series") == series
    assert again.bytes_after <= first.bytes_after
    assert "already per-minute" in again.summary()
    lazily = store.compact(keep_nights=1, rewrite_min_free=0.5)  # after a night
    assert not lazily.rewritten and lazily.nights == ()
    assert "file not rewritten" in lazily.summary()


def test_rewriting_never_leaves_the_file_unshrunk_by_choice(store: MetricStore) -> None:
    _nights(store, 4, seconds=300)

    kept = store.compact(keep_nights=1, rewrite_min_free=None)

    assert not kept.rewritten and kept.nights
    assert kept.bytes_after >= kept.bytes_before  # DuckDB alone never shrinks its file
    rewritten = store.compact(keep_nights=1)
    assert rewritten.rewritten and rewritten.bytes_after < kept.bytes_after


def test_a_rewritten_file_keeps_its_schema_and_takes_new_writes(
    store: MetricStore, store_path: Path
) -> None:
    def schema() -> list[tuple[object, ...]]:
        with duckdb.connect(str(store_path), read_only=True) as conn:
            return (
                conn.execute(
                    "SELECT table_name, constraint_type, constraint_text FROM duckdb_constraints() "
                    "ORDER BY ALL"
                ).fetchall()
                + conn.execute(
                    "SELECT table_name, column_name, data_type, column_default, is_nullable "
                    "FROM duckdb_columns() WHERE NOT internal ORDER BY ALL"
                ).fetchall()
            )

    _nights(store, 3, seconds=120)
    before = schema()

    assert store.compact(keep_nights=1).rewritten

    assert schema() == before
    assert MetricStore(store_path).schema_version() == store.schema_version()
    store.write_test_result(build_result(FIRST + timedelta(days=9), "after"))
    assert store.series(FIRST + timedelta(days=9), "after", "ci").height == 10
    assert not list(store_path.parent.glob("*.tmp"))


def test_a_writer_during_compactions_loses_no_row(store: MetricStore, store_path: Path) -> None:
    count, n_metrics, n_seconds = 25, 3, 120
    writer = subprocess.Popen(
        [sys.executable, str(WRITER), str(store_path), "w", str(count), str(n_metrics),
         str(n_seconds)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    compactions = []
    try:
        assert writer.stdout is not None and writer.stdin is not None
        assert writer.stdout.readline().strip() == "ready"
        writer.stdin.write("go\n")
        writer.stdin.flush()
        deadline = time.monotonic() + 120
        while writer.poll() is None and time.monotonic() < deadline:
            began = time.time()
            compactions.append((began, store.compact(keep_nights=5), time.time()))
        output = writer.communicate(timeout=120)[0]
    finally:
        if writer.poll() is None:
            writer.kill()
            writer.wait()
    assert writer.returncode == 0
    spans = json.loads(output)["spans"]
    first_write, last_write = spans[0][0], spans[-1][1]
    during = [c for began, c, ended in compactions if first_write < ended and began < last_write]
    assert any(c.rewritten and c.nights for c in during), "no compaction ran between writes"

    final = store.compact(keep_nights=5)

    with duckdb.connect(str(store_path), read_only=True) as conn:
        per_night = conn.execute(
            "SELECT r.night, (SELECT count(*) FROM metrics m WHERE m.night = r.night), "
            "(SELECT sum(seconds_present) FROM series s WHERE s.night = r.night), "
            "(SELECT max(resolution_s) FROM series s WHERE s.night = r.night) "
            "FROM test_results r ORDER BY r.night"
        ).fetchall()
    assert len(per_night) == count
    # Every night's metrics and every second of its series, per-second or merged.
    assert {(m, s) for _, m, s, _ in per_night} == {(n_metrics, n_metrics * n_seconds)}
    assert [res for *_, res in per_night] == [60] * (count - 5) + [1] * 5
    assert final.cutoff == per_night[-5][0]


def test_a_store_newer_than_the_code_is_not_compacted(store: MetricStore, store_path: Path) -> None:
    with duckdb.connect(str(store_path)) as conn:
        conn.execute("INSERT INTO schema_version VALUES (99, TIMESTAMP '2030-01-01 00:00:00')")
    before = store_path.read_bytes()

    with pytest.raises(StoreSchemaTooNewError):
        store.compact()

    assert store_path.read_bytes() == before


def test_bad_requests_name_the_fix(store: MetricStore, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="keep_nights must be >= 1"):
        store.compact(keep_nights=0)
    with pytest.raises(ValueError, match="rewrite_min_free"):
        store.compact(rewrite_min_free=1.5)
    from nightly_pipeline.store.compaction import compact

    with pytest.raises(StoreError, match="nothing to compact"):
        compact(tmp_path / "missing.duckdb")
    assert not (tmp_path / "missing.duckdb").exists()
