"""One multi-asset per nightly test, built from its module (``suite.catalog``): its metric
assets (``01_message_soak/latency``, ...), and one asset check per check of its spec,
under the check's own name, on the asset it judges (blocking for ``error`` checks).

A check not measurable on this target yields no evaluation (Dagster shows it skipped);
the asset it judges carries the reason as ``not_measurable/<check>`` metadata."""

from datetime import date

import dagster as dg

from nightly_pipeline.assets.partitions import NIGHTS
from nightly_pipeline.assets.steps import (
    INFRA_RETRY,
    TARGET_POOL,
    failures_classified,
    record_run,
    retry_policy_at,
)
from nightly_pipeline.resources import MetricStoreResource, ProfileResource, TargetResource
from nightly_pipeline.suite.catalog import TESTS
from nightly_pipeline.suite.context import SuiteTest
from nightly_pipeline.suite.figures import figures_for
from nightly_pipeline.suite.progress import relay
from nightly_pipeline.suite.runner import CheckOutcome, run_suite_test
from nightly_pipeline.suite.spec import Check

SEVERITY = {"error": dg.AssetCheckSeverity.ERROR, "warn": dg.AssetCheckSeverity.WARN}
NOT_MEASURABLE_KEY = "not_measurable/"
"""Prefix of the asset metadata naming a check not measurable on this target."""
PROGRESS_LOG_EVERY_S = 5.0
"""How often a running test's figures go to the Dagster log."""


def check_description(check: Check) -> str:
    """What the UI shows under a check's name: the plan's words and the expression."""
    return f"{check.plan} ({check.threshold})"


def check_result(key: dg.AssetKey, outcome: CheckOutcome) -> dg.AssetCheckResult:
    check = outcome.check
    return dg.AssetCheckResult(
        asset_key=key,
        check_name=check.name,
        passed=outcome.passed,
        severity=SEVERITY[check.severity],
        description=f"{check_description(check)}: observed {outcome.observed:g} {check.unit}"
        + (f" ({outcome.detail})" if outcome.detail else ""),
        metadata={
            "observed": dg.MetadataValue.float(outcome.observed),
            "threshold": dg.MetadataValue.text(check.expr),
            "metric": dg.MetadataValue.text(check.metric),
            "unit": dg.MetadataValue.text(check.unit),
        },
    )


def build_test_asset(
    test: SuiteTest,
    retry_policy: dg.RetryPolicy = INFRA_RETRY,
    pool: str = TARGET_POOL,
    op_tags: dict[str, str] | None = None,
) -> dg.AssetsDefinition:
    """The test's multi-asset, its step in ``pool`` (a fanned-out night's per-target jobs
    give each target its own: ``automation.fanout``)."""
    spec = test.spec
    keys = {name: dg.AssetKey([spec.key, name]) for name in spec.assets}

    @dg.multi_asset(
        name=spec.key,
        specs=[
            dg.AssetSpec(key, group_name="suite", kinds={"python"}, description=spec.description)
            for key in keys.values()
        ],
        check_specs=[
            dg.AssetCheckSpec(
                c.name,
                asset=keys[c.on],
                blocking=c.severity == "error",
                description=check_description(c),
            )
            for c in spec.checks
        ],
        partitions_def=NIGHTS,
        pool=pool,
        op_tags={"nightly/test": spec.key, **(op_tags or {})},
        can_subset=True,
    )
    def _test(
        context: dg.AssetExecutionContext,
        target: TargetResource,
        store: MetricStoreResource,
        profile: ProfileResource,
    ):
        opened, home = store.open(), store.home()
        policy = retry_policy_at(profile.profile, retry_policy)
        with failures_classified(context, spec.key, policy):
            current = target.current
            record_run(context, opened, profile.profile, current)
            outcome = run_suite_test(
                test,
                profile.profile,
                current,
                night=date.fromisoformat(context.partition_key),
                run_id=context.run.run_id,
                run_dir=home.runs / context.run.run_id / spec.key,
                progress=context.log.info,
                watch=relay(context.log.info, PROGRESS_LOG_EVERY_S),
                chaos_ledger=home.chaos_ledger,
            )
        opened.write_test_result(outcome.record)
        # The test runs whole; a selection of some of its assets (the UI, `dagster asset
        # materialize --select 06_sustained_login/latency`) materialises just those.
        for name, key in keys.items():
            if key not in context.selected_asset_keys:
                continue
            on_asset = [c.metric for c in spec.checks if c.on == name]
            figures = figures_for(name, outcome.record.metrics, on_asset)
            skipped = {
                f"{NOT_MEASURABLE_KEY}{c.check.name}": dg.MetadataValue.text(c.not_measurable)
                for c in outcome.checks
                if c.check.on == name and c.not_measurable
            }
            yield dg.MaterializeResult(
                asset_key=key,
                metadata={
                    "profile": dg.MetadataValue.text(profile.profile.name),
                    **{k: dg.MetadataValue.float(v) for k, v in figures.items()},
                    **skipped,
                },
            )
        for c in outcome.checks:
            key = keys[c.check.on]
            if c.not_measurable:
                continue  # no verdict: Dagster shows the check skipped, the asset says why
            if dg.AssetCheckKey(key, c.check.name) in context.selected_asset_check_keys:
                yield check_result(key, c)

    return _test


SUITE_ASSETS = [build_test_asset(test) for test in TESTS]
