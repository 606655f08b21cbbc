"""The engine self-check as a nightly asset, with its thresholds as one blocking check."""

from datetime import date

import dagster as dg

from nightly_pipeline.assets.partitions import NIGHTS
from nightly_pipeline.assets.steps import TARGET_POOL, failures_classified
from nightly_pipeline.resources import MetricStoreResource, ProfileResource
from nightly_pipeline.suite.selfcheck import TEST_NAME, SelfcheckConfig, run_selfcheck


class SelfcheckRunConfig(dg.Config):
    rate: float = 500.0
    duration_s: float = 10.0
    workers: int = 1
    max_vus: int = 200


@dg.asset(
    name=TEST_NAME,
    partitions_def=NIGHTS,
    pool=TARGET_POOL,
    group_name="engine",
    kinds={"python", "duckdb"},
    check_specs=[
        dg.AssetCheckSpec(
            "thresholds",
            asset=TEST_NAME,
            blocking=True,
            description="the generator kept its schedule, lost nothing, saw fast answers",
        )
    ],
)
def engine_selfcheck(
    context: dg.AssetExecutionContext,
    config: SelfcheckRunConfig,
    store: MetricStoreResource,
    profile: ProfileResource,
) -> dg.MaterializeResult:
    """Fixed-rate load on the built-in loopback target: is the generator trustworthy here?"""
    night = date.fromisoformat(context.partition_key)
    with failures_classified(context, TEST_NAME):
        outcome = run_selfcheck(
            SelfcheckConfig(config.rate, config.duration_s, config.workers, config.max_vus),
            night=night,
            profile=profile.profile.name,
            run_id=context.run.run_id,
        )
    store.open().write_test_result(outcome.record)
    figures = {m.metric: m.value for m in outcome.record.metrics if not m.tags}
    failed = [t for t in outcome.result.thresholds if not t.passed]
    return dg.MaterializeResult(
        metadata={
            "requests": dg.MetadataValue.int(int(figures.get("http_reqs.count", 0))),
            "rate_per_s": dg.MetadataValue.float(figures.get("http_reqs.rate", 0.0)),
            "p50_ms": dg.MetadataValue.float(figures.get("http_req_duration.p50", 0.0)),
            "p99_ms": dg.MetadataValue.float(figures.get("http_req_duration.p99", 0.0)),
            "scheduling_lag_p99_ms": dg.MetadataValue.float(outcome.result.scheduling_lag_p99_ms),
            "generator_bound": dg.MetadataValue.bool(outcome.result.generator_bound),
        },
        check_results=[
            dg.AssetCheckResult(
                check_name="thresholds",
                passed=not failed and outcome.result.aborted is None,
                severity=dg.AssetCheckSeverity.ERROR,
                description=outcome.record.detail or "all thresholds held",
                metadata={
                    "failed": dg.MetadataValue.int(len(failed)),
                    "thresholds": dg.MetadataValue.int(len(outcome.result.thresholds)),
                },
            )
        ],
    )


engine_selfcheck_job = dg.define_asset_job(
    "engine_selfcheck_job",
    selection=[engine_selfcheck],
    tags={"dagster/max_runtime": 900},
)
