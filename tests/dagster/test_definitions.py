"""The code location loads, and the self-check asset materialises through real Dagster."""

from __future__ import annotations

import dagster as dg
import pytest

from nightly_pipeline.assets.engine import engine_selfcheck
from nightly_pipeline.definitions import defs
from nightly_pipeline.resources import MetricStoreResource, ProfileResource
from nightly_pipeline.store import MetricStore

NIGHT = "2026-11-20"


def test_every_job_and_asset_resolves() -> None:
    repo = defs.get_repository_def()
    assert {job.name for job in repo.get_all_jobs()} >= {"engine_selfcheck_job"}
    assert dg.AssetKey("engine_selfcheck") in defs.resolve_asset_graph().get_all_asset_keys()


def _materialize(tmp_path, **config):
    return dg.materialize(
        [engine_selfcheck],
        partition_key=NIGHT,
        resources={
            "store": MetricStoreResource(path=str(tmp_path / "m.duckdb")),
            "profile": ProfileResource(name="ci"),
        },
        run_config={"ops": {"engine_selfcheck": {"config": {"duration_s": 2.0, **config}}}},
        raise_on_error=False,
    )


def test_selfcheck_materialises_metadata_check_and_rows_and_rerun_replaces(tmp_path) -> None:
    first = _materialize(tmp_path, rate=200.0)
    assert first.success
    (check,) = first.get_asset_check_evaluations()
    assert check.passed
    (mat,) = first.asset_materializations_for_node("engine_selfcheck")
    assert mat.partition == NIGHT
    assert mat.metadata["requests"].value == 400

    second = _materialize(tmp_path, rate=100.0)
    assert second.success
    results = MetricStore(tmp_path / "m.duckdb").recent_results()
    assert results.height == 1  # the same night replaced, not duplicated
    metrics = MetricStore(tmp_path / "m.duckdb").metrics(metric="http_reqs.count")
    assert metrics.filter(metrics["tags"] == "{}")["value"].to_list() == [200.0]


def test_selfcheck_check_fails_when_the_generator_drops_iterations(tmp_path) -> None:
    """One VU cannot carry 2,000 req/s: dropped iterations fail the blocking check."""
    result = _materialize(tmp_path, rate=2000.0, max_vus=1)
    (check,) = result.get_asset_check_evaluations()
    assert not check.passed
    assert "dropped_iterations" in check.description
    row = MetricStore(tmp_path / "m.duckdb").recent_results().row(0, named=True)
    assert row["status"] == "failed"


def test_the_selfchecks_profile_is_validated_like_the_suites() -> None:
    """The engine asset takes the night's profile from the same resource as the suite's
    tests: an unknown name is refused by Dagster's config schema before anything runs."""
    with pytest.raises(dg.DagsterInvalidConfigError, match=r"not in enum type.*got weekly"):
        dg.materialize(
            [engine_selfcheck],
            partition_key=NIGHT,
            resources={"store": MetricStoreResource(path="m.duckdb"), "profile": ProfileResource()},
            run_config={"resources": {"profile": {"config": {"name": "weekly"}}}},
        )
    with pytest.raises(ValueError, match="'ci', 'smoke' or 'nightly'"):
        ProfileResource(name="weekly")
