"""``nightly store compact`` on a real store file: progress, a summary with rows and bytes
before and after, and a clear error when there is no store."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import pytest

from nightly_pipeline.cli import main
from nightly_pipeline.store import MetricStore
from tests.real_rows import SOAK, Run, write_run

FIRST = date(2026, 2, 1)


def test_compact_prints_progress_and_rows_and_bytes_before_and_after(
    store_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = MetricStore(store_path)
    for day in range(4):
        write_run(store, FIRST + timedelta(days=day), Run("smoke", SOAK, 180, 40.0))
    rows_before = sum(
        store.series(FIRST + timedelta(days=d), SOAK, "smoke").height for d in range(4)
    )
    size_before = store_path.stat().st_size

    assert main(["--store", str(store_path), "store", "compact", "--keep-nights", "2"]) == 0

    out, err = capsys.readouterr()
    assert "downsampling the series of 2 night(s) before 2026-02-03" in err
    assert "rewriting" in err
    size_after = store_path.stat().st_size
    assert size_after < size_before
    assert f"series rows: {rows_before:,} -> " in out
    assert f"file bytes:  {size_before:,} -> {size_after:,}" in out
    assert "file rewritten" in out
    assert set(store.series(FIRST, SOAK, "smoke")["resolution_s"]) == {60}

    assert main(["--store", str(store_path), "store", "compact", "--keep-nights", "2"]) == 0
    assert "already per-minute" in capsys.readouterr().out


def test_no_rewrite_only_downsamples(store_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    store = MetricStore(store_path)
    for day in range(3):
        write_run(store, FIRST + timedelta(days=day), Run("smoke", SOAK, 120, 40.0))

    assert main(["--store", str(store_path), "store", "compact", "--keep-nights", "1",
                 "--no-rewrite"]) == 0  # fmt: skip

    out, err = capsys.readouterr()
    assert "rewriting" not in err
    assert "file not rewritten" in out
    assert set(store.series(FIRST, SOAK, "smoke")["resolution_s"]) == {60}


def test_compact_without_a_store_names_the_fix_and_creates_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "nowhere" / "metrics.duckdb"

    assert main(["--store", str(missing), "store", "compact"]) == 2

    assert "no metric store at" in capsys.readouterr().err
    assert not missing.exists()


@pytest.mark.parametrize("keep", ["0", "-3", "many"])
def test_bad_keep_nights_is_a_usage_error(store_path: Path, keep: str) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--store", str(store_path), "store", "compact", "--keep-nights", keep])
    assert exit_info.value.code == 2
