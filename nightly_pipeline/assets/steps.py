"""How a test's step runs in Dagster: in the ``target`` pool, its run recorded in the
store, and its exceptions handled as ``suite.errors`` classifies them.

Infrastructure failures (the platform did not start, the target was unreachable) are
retried by the asset itself, per ``INFRA_RETRY``, with ``RetryRequested``; configuration
failures fail at once and are never retried; anything else is a bug and fails with its
traceback. A failed check is a verdict, reported as a failed asset check, never retried.

The policy is not given to Dagster as the op's retry_policy: with one, Dagster retries
*every* exception, a bug in a scenario included, and turns Ctrl-C or a UI termination
into a retry instead of a stop.
"""

import contextlib
from collections.abc import Iterator
from datetime import UTC, date, datetime

import dagster as dg

from nightly_pipeline.store import MetricStore, RunRecord
from nightly_pipeline.suite.errors import failure_kind
from nightly_pipeline.suite.profiles import Profile
from nightly_pipeline.suite.target import Target

TARGET_POOL = "target"
"""One slot (dagster.yaml): two tests never load one target at once."""
INFRA_RETRY = dg.RetryPolicy(max_retries=2, delay=10, backoff=dg.Backoff.EXPONENTIAL)


def retry_policy_at(profile: Profile, policy: dg.RetryPolicy = INFRA_RETRY) -> dg.RetryPolicy:
    """``policy`` with its first delay at most the profile's ``infra_retry_delay_s``: a
    ci night, seconds per test, does not wait 10 s and 30 s to retry a platform."""
    return dg.RetryPolicy(
        max_retries=policy.max_retries,
        delay=min(policy.delay or 0.0, profile.infra_retry_delay_s),
        backoff=policy.backoff,
        jitter=policy.jitter,
    )


@contextlib.contextmanager
def failures_classified(
    context: dg.AssetExecutionContext, what: str, policy: dg.RetryPolicy = INFRA_RETRY
) -> Iterator[None]:
    """Run the ``with`` body; turn its exception into what Dagster should do with it."""
    try:
        yield
    except Exception as exc:
        kind = failure_kind(exc)
        if kind == "configuration":
            raise dg.Failure(str(exc), allow_retries=False) from exc
        if kind == "infrastructure":
            context.log.warning(f"{what}: attempt {context.retry_number + 1} failed: {exc}")
            raise dg.RetryRequested(
                max_retries=policy.max_retries,
                seconds_to_wait=policy.calculate_delay(context.retry_number + 1),
            ) from exc
        raise


def record_run(
    context: dg.AssetExecutionContext, store: MetricStore, profile: Profile, target: Target
) -> None:
    """The ``runs`` row of this Dagster run, as every test of the run writes it (the same
    start time: the run's, as Dagster recorded it). Sensors or ``nightly run`` close it."""
    run_id = context.run.run_id
    record = context.instance.get_run_record_by_id(run_id)
    start = record.start_time if record is not None else None
    store.write_run(
        RunRecord(
            run_id,
            date.fromisoformat(context.partition_key),
            profile.name,
            target.name,
            datetime.fromtimestamp(start, UTC) if start is not None else datetime.now(UTC),
            versions=dict(target.versions),
            dagster_run_id=run_id,
        )
    )
