"""Everything this project reads from or does to Dagster beyond its public API, in one
place, so an upgrade has one file to check.

- Why a run stopped: a step interrupted by Ctrl-C or SIGTERM carries
  ``ErrorSource.INTERRUPT`` (no public name for it), and a failed step's cause chain.
- Concurrency slots: a run whose process died (kill -9, a crashed machine) keeps its
  ``target`` pool slot, and the next in-process run waits for it forever. Without a
  daemon nothing frees it, so ``nightly run`` does (``free_slots``), through the event
  log storage's own method (what run monitoring calls).
- Another executor for ``nightly_suite`` (Celery): ``JobDefinition.with_executor_def``.
"""

import dagster as dg
from dagster._core.execution.plan.objects import ErrorSource  # no public name for it

RunResult = dg.ExecuteInProcessResult | dg.JobExecutionResult
"""A run's result, in process or through ``dagster.execute_job`` (another executor)."""


def was_interrupted(result: RunResult) -> bool:
    """Whether Ctrl-C or SIGTERM stopped the run (a step failed as interrupted)."""
    if result.dagster_run.status == dg.DagsterRunStatus.CANCELED:
        return True
    return any(
        event.is_step_failure
        and event.step_failure_data is not None
        and event.step_failure_data.error_source == ErrorSource.INTERRUPT
        for event in result.all_events
    )


def step_failures(result: RunResult) -> list[str]:
    """``step: cause`` for each step that failed for another reason than a blocking check;
    a retried step's cause is its last attempt's (under Dagster's "Exceeded max_retries")."""
    reasons = []
    for event in result.all_events:
        if not event.is_step_failure or event.step_failure_data is None:
            continue
        error = event.step_failure_data.error
        if error is None or error.cls_name == "DagsterAssetCheckFailedError":
            continue
        messages = []
        while error is not None:
            messages.append(error.message.strip())
            error = error.cause
        reasons.append(f"{event.step_key}: {' <- '.join(messages)}")
    return reasons


def free_slots(instance: dg.DagsterInstance, run_id: str) -> None:
    """Release every concurrency slot ``run_id`` holds (its steps can no longer run)."""
    instance.event_log_storage.free_concurrency_slots_for_run(run_id)


def slot_holders(instance: dg.DagsterInstance, pool: str) -> list[str]:
    """The runs holding a slot of ``pool`` now."""
    info = instance.event_log_storage.get_concurrency_info(pool)
    return sorted({slot.run_id for slot in info.claimed_slots})


def with_executor(job: dg.JobDefinition, executor: dg.ExecutorDefinition) -> dg.JobDefinition:
    """``job`` as it is (name, assets, pools, tags, resources) with another executor.
    ``JobDefinition.with_executor_def`` is what ``Definitions`` itself applies a default
    executor with; it has no public name."""
    return job.with_executor_def(executor)
