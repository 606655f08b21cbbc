"""What runs after a night's verdicts and report: the store's compaction (DESIGN §12).

``nightly run`` calls ``compact_after_night`` after its ``nightly_history`` run; for the
scheduled nights a run-status sensor does, when a ``nightly_history`` run ends.

It must never fail the night: the night's rows, verdicts and report are already stored,
and a compaction that could not run (the store busy, a full disk) can run the next night
or by hand (``nightly store compact``). So every error is reported, not raised.
"""

from __future__ import annotations

from collections.abc import Callable

import dagster as dg

from nightly_pipeline.automation.jobs import nightly_history_job
from nightly_pipeline.automation.suite_runs import CLI_TRIGGER, TRIGGER_TAG
from nightly_pipeline.resources import MetricStoreResource
from nightly_pipeline.store import MetricStore

HISTORY_ENDS = (dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE)
"""How a ``nightly_history`` run ends that the store is compacted after (canceled: a
person stopped it, and may be about to run it again)."""

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


def make_history_finished_sensor(
    run_status: dg.DagsterRunStatus, name: str | None = None
) -> dg.SensorDefinition:
    """When a ``nightly_history`` run ends with ``run_status``, compact the store: the end
    of a scheduled night. Runs of ``nightly run`` are left to it (it compacts itself).

    Requests nothing, and raises nothing: what the compaction did or why it could not is
    the tick's skip message and log line. A rewrite holds the store's lock for seconds
    (bench/storage_growth.py prints them), well inside a sensor tick's time.
    """

    @dg.run_status_sensor(
        run_status=run_status,
        name=name or f"nightly_history_{run_status.value.lower()}_compaction",
        monitored_jobs=[nightly_history_job],
        default_status=dg.DefaultSensorStatus.RUNNING,
    )
    def history_finished(
        context: dg.RunStatusSensorContext, store: MetricStoreResource
    ) -> dg.SkipReason:
        run = context.dagster_run
        if run.tags.get(TRIGGER_TAG) == CLI_TRIGGER:
            return dg.SkipReason(f"run {run.run_id} is nightly run's: it compacts itself")
        said: list[str] = []
        ok = compact_after_night(store.open(), said.append)
        for line in said:
            (context.log.info if ok else context.log.warning)(line)
        return dg.SkipReason("; ".join(said) or "store compaction: nothing to do")

    return history_finished
