"""What happens when a ``nightly_suite`` run ends, whoever started it: its row in the
store's ``runs`` table is closed (``close_store_run``, the only place that does), and the
night's ``nightly_history`` run follows after a success or a failure (``history_tags``).

The run-status sensors do this for runs the schedule, the UI or a sensor started;
``nightly run`` does it for its own runs (tagged ``nightly/trigger=cli``), which the
sensors leave alone, so every run is closed once.
"""

from datetime import UTC, datetime

import dagster as dg

from nightly_pipeline.store import MetricStore, RunNotFoundError, RunStatus, StoreError

SUITE_OUTCOMES: dict[dg.DagsterRunStatus, RunStatus] = {
    dg.DagsterRunStatus.SUCCESS: "succeeded",
    dg.DagsterRunStatus.FAILURE: "failed",
    dg.DagsterRunStatus.CANCELED: "canceled",
}
"""How a ``nightly_suite`` run ended, as the store's ``runs.status`` says it."""
HISTORY_AFTER: frozenset[RunStatus] = frozenset({"succeeded", "failed"})
"""The suite outcomes after which the night's ``nightly_history`` runs (a canceled run
was stopped on purpose: start its history by hand)."""
PARTITION_TAG = "dagster/partition"
TRIGGER_TAG = "nightly/trigger"
PROFILE_TAG = "nightly/profile"
CLI_TRIGGER = "cli"


def close_store_run(
    store: MetricStore, instance: dg.DagsterInstance, run_id: str, outcome: RunStatus
) -> tuple[bool, str]:
    """Mark the run's row ``outcome`` at the run's end time as Dagster recorded it.

    Never raises: (False, why) when the store refused; (True, what happened) otherwise,
    a run that wrote no row (no test asked for the target) included."""
    record = instance.get_run_record_by_id(run_id)
    end = record.end_time if record is not None else None
    finished_at = datetime.fromtimestamp(end, UTC) if end is not None else datetime.now(UTC)
    try:
        store.finish_run(run_id, outcome, finished_at)
    except RunNotFoundError:
        return True, f"run {run_id} wrote no row in the metric store: nothing to finish"
    except StoreError as exc:
        return False, f"could not mark run {run_id} {outcome} in the metric store: {exc}"
    return True, f"metric store: run {run_id} {outcome}"


def history_tags(suite_run_id: str, outcome: RunStatus, trigger: str) -> dict[str, str]:
    """The tags of the ``nightly_history`` run that follows a suite run."""
    return {
        TRIGGER_TAG: trigger,
        "nightly/suite_run": suite_run_id,
        "nightly/suite_status": outcome,
    }
