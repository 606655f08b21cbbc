"""What runs after a night's verdicts and report: the store's compaction (DESIGN §12).

It must never fail the night: the night's rows, verdicts and report are already stored,
and a compaction that could not run (the store busy, a full disk) can run the next night
or by hand (``nightly store compact``). So every error is reported, not raised.
"""

from __future__ import annotations

from collections.abc import Callable

from nightly_pipeline.store import MetricStore

AFTER_NIGHT_REWRITE_MIN_FREE = 0.25
"""After a night the file is rewritten when the compaction downsampled a night (once a
night at most), or else only once a quarter of it is free space: DuckDB reuses freed
blocks for later rows; ``nightly store compact`` always rewrites."""


def compact_after_night(store: MetricStore, say: Callable[[str], None]) -> bool:
    """Compact ``store`` with the default retention; tell ``say`` what happened. False
    (and a line saying why and what to do) when the compaction failed."""
    try:
        result = store.compact(
            rewrite_min_free=AFTER_NIGHT_REWRITE_MIN_FREE,
            progress=lambda line: say(f"store compaction: {line}"),
        )
    except Exception as exc:  # reported, never fails the night
        say(
            f"store compaction failed, the night is unaffected and the store intact: {exc}; "
            "it runs again after the next night, or run `nightly store compact`"
        )
        return False
    if result.nights or result.rewritten:
        say(
            f"store compaction: series rows {result.series_rows_before:,} -> "
            f"{result.series_rows_after:,}, file {result.bytes_before:,} -> "
            f"{result.bytes_after:,} bytes"
        )
    return True
