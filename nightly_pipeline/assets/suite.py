"""One multi-asset per nightly test: its metric assets (``01_message_soak/latency``, ...)
and one asset check per acceptance criterion (blocking for loss, corruption and leaks,
WARN for latency targets)."""

import re
from datetime import UTC, date, datetime

import dagster as dg
import httpx

from nightly_pipeline.assets.partitions import NIGHTS
from nightly_pipeline.loadgen import LoadgenError
from nightly_pipeline.resources import MetricStoreResource, ProfileResource, TargetResource
from nightly_pipeline.resources.target import EmbeddedStartError
from nightly_pipeline.store import RunRecord
from nightly_pipeline.suite.catalog import TESTS, SelectionError, profile_named
from nightly_pipeline.suite.figures import figures_for
from nightly_pipeline.suite.runner import IMPLEMENTATIONS, NotImplementedTestError, run_suite_test
from nightly_pipeline.suite.spec import Check, TestSpec
from nightly_pipeline.testbed.stack.errors import BinaryNotFoundError, StackConfigError
from nightly_pipeline.testbed.target import TargetConfigError

TARGET_POOL = "target"
INFRA_RETRY = dg.RetryPolicy(max_retries=2, delay=10, backoff=dg.Backoff.EXPONENTIAL)
"""How infrastructure failures are retried: the stack did not start, the target was
unreachable. A failed check is a verdict, reported as a failed asset check, never retried.

Applied by the asset itself (``RetryRequested`` for ``INFRA_ERRORS`` only), not given to
Dagster as the op's retry_policy: with one, Dagster retries *every* exception, a bug in a
scenario included, and turns Ctrl-C or a UI termination into a retry instead of a stop."""
INFRA_ERRORS = (EmbeddedStartError, ConnectionError, httpx.TransportError)
NOT_RETRIED = (
    NotImplementedTestError,
    SelectionError,
    TargetConfigError,
    LoadgenError,
    StackConfigError,
    BinaryNotFoundError,
)
"""Errors of configuration: retrying cannot help."""


def check_name(check: Check) -> str:
    """A Dagster-safe name for a check: ``delivery_lost__count_eq_0``."""
    text = f"{check.metric}__{check.expression}"
    for sign, word in (("<=", "_le_"), (">=", "_ge_"), ("==", "_eq_"), ("!=", "_ne_")):
        text = text.replace(sign, word)
    text = text.replace("<", "_lt_").replace(">", "_gt_")
    return re.sub(r"[^A-Za-z0-9_]+", "_", text).strip("_")


def build_test_asset(
    spec: TestSpec, retry_policy: dg.RetryPolicy = INFRA_RETRY
) -> dg.AssetsDefinition:
    keys = [dg.AssetKey([spec.key, name]) for name in spec.assets]
    primary = keys[0]

    @dg.multi_asset(
        name=spec.key,
        specs=[
            dg.AssetSpec(key, group_name="suite", kinds={"python"}, description=spec.description)
            for key in keys
        ],
        check_specs=[
            dg.AssetCheckSpec(
                check_name(c), asset=primary, blocking=c.severity == "error", description=c.why
            )
            for c in spec.checks
        ],
        partitions_def=NIGHTS,
        pool=TARGET_POOL,
        op_tags={"nightly/test": spec.key},
    )
    def _test(
        context: dg.AssetExecutionContext,
        target: TargetResource,
        store: MetricStoreResource,
        profile: ProfileResource,
    ):
        night = date.fromisoformat(context.partition_key)
        opened = store.open()
        try:
            current = target.current
            opened.write_run(
                RunRecord(
                    context.run.run_id,
                    night,
                    profile.name,
                    current.name,
                    datetime.now(UTC),
                    versions=dict(current.versions),
                    dagster_run_id=context.run.run_id,
                )
            )
            outcome = run_suite_test(
                spec,
                profile_named(profile.name),
                current,
                night=night,
                run_id=context.run.run_id,
                run_dir=opened.path.parent / "runs" / context.run.run_id,
                pids=target.pids,
                progress=context.log.info,
            )
        except NOT_RETRIED as exc:
            raise dg.Failure(str(exc), allow_retries=False) from exc
        except INFRA_ERRORS as exc:
            context.log.warning(f"{spec.key}: attempt {context.retry_number + 1} failed: {exc}")
            raise dg.RetryRequested(
                max_retries=retry_policy.max_retries,
                seconds_to_wait=retry_policy.calculate_delay(context.retry_number + 1),
            ) from exc
        opened.write_test_result(outcome.record)
        for key, name in zip(keys, spec.assets, strict=True):
            figures = figures_for(name, outcome.record.metrics)
            yield dg.MaterializeResult(
                asset_key=key,
                metadata={k: dg.MetadataValue.float(v) for k, v in figures.items()},
            )
        for c in outcome.checks:
            yield dg.AssetCheckResult(
                asset_key=primary,
                check_name=check_name(c.check),
                passed=c.passed,
                severity=(
                    dg.AssetCheckSeverity.ERROR
                    if c.check.severity == "error"
                    else dg.AssetCheckSeverity.WARN
                ),
                description=f"{c.check.why}: observed {c.observed:g}"
                + (f" ({c.detail})" if c.detail else ""),
                metadata={"observed": dg.MetadataValue.float(c.observed)},
            )

    return _test


def implemented_tests() -> list[TestSpec]:
    import nightly_pipeline.suite.tests  # noqa: F401  (registers the scenarios)

    return [spec for spec in TESTS if spec.id in IMPLEMENTATIONS]


SUITE_ASSETS = [build_test_asset(spec) for spec in implemented_tests()]
