"""What happens when a ``nightly_suite`` run ends, whoever started it: its row in the
store's ``runs`` table is closed (``close_store_run``, the only place that does), and the
night's ``nightly_history`` run follows after a success or a failure (``history_tags``).

The run-status sensors do this for runs the schedule, the UI or a sensor started;
``nightly run`` does it for its own runs (tagged ``nightly/trigger=cli``), which the
sensors leave alone, so every run is closed once.

A run whose process died is ``crashed``, not ``failed`` (which stays for runs that ran
and failed): ``nightly run`` reaps its own dead runs (``run.reap_dead_runs``), and a
daemon-launched run whose run worker died is failed by Dagster's run monitoring, which
``close_store_run`` recognises (``worker_died``).
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
FANOUT_TAG = "nightly/fanout"
"""The runs of one scheduled night fanned out over targets share it (``night@tick``):
``nightly_history`` follows once all of them ended."""
CLI_TRIGGER = "cli"
WORKER_DIED = "Detected run worker status"
"""How run monitoring's failure message starts when it found the run worker dead
(dagster/_daemon/monitoring/run_monitoring.py; no structured reason is recorded)."""


def worker_died(instance: dg.DagsterInstance, run_id: str) -> bool:
    """Whether run monitoring failed ``run_id`` because its run worker was gone."""
    records = instance.get_records_for_run(
        run_id, of_type=dg.DagsterEventType.RUN_FAILURE, ascending=False, limit=1
    ).records
    return any((r.event_log_entry.message or "").startswith(WORKER_DIED) for r in records)


def close_store_run(
    store: MetricStore, instance: dg.DagsterInstance, run_id: str, outcome: RunStatus
) -> tuple[bool, str]:
    """Mark the run's row ``outcome`` at the run's end time as Dagster recorded it;
    ``crashed`` instead of ``failed`` when run monitoring found its worker dead.

    Never raises: (False, why) when the store refused; (True, what happened) otherwise,
    a run that wrote no row (no test asked for the target) included."""
    record = instance.get_run_record_by_id(run_id)
    end = record.end_time if record is not None else None
    finished_at = datetime.fromtimestamp(end, UTC) if end is not None else datetime.now(UTC)
    if outcome == "failed" and worker_died(instance, run_id):
        outcome = "crashed"
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
