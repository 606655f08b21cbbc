"""A check the target cannot support is a visible skip everywhere the night is read, never
a pass and never a failure: ``nightly run --target FILE`` of Test 01 (ci) against the
embedded platform, started apart and described by a target file whose ``/metrics`` lack
Prometheus' process collector (real endpoints serving the platform's own exposition
without ``process_*``). The memory check is "not measurable on this target" with the
reason in the command's table, JUnit (``<skipped>``), the night's report and Dagster (no
evaluation: the UI shows it skipped; the asset's metadata says why); the night passes."""

from __future__ import annotations

import contextlib
import json
from datetime import date
from xml.etree import ElementTree as ET

import dagster as dg

from nightly_pipeline.assets.suite import NOT_MEASURABLE_KEY
from nightly_pipeline.automation.instance import open_instance
from nightly_pipeline.cli import main
from nightly_pipeline.home import Home
from nightly_pipeline.store import MetricStore
from nightly_pipeline.suite.memory import RSS_GAUGE
from tests.suite.metrics_filter import filtered_metrics
from tests.suite.platforms import ci_platform

NIGHT = date(2026, 11, 20)
MEMORY = "memory_growth_under_10pct"
SKIP = "not measurable on this target"


def test_a_check_the_target_cannot_support_is_skipped_with_its_reason_and_the_night_passes(
    tmp_path_factory, system_dir, tmp_path, capsys, monkeypatch
) -> None:
    home = Home.at(tmp_path / "home")
    junit = tmp_path / "junit.xml"
    with ci_platform(tmp_path_factory, system_dir, "bare-metrics") as up:
        monkeypatch.setenv("NIGHTLY_TEST_PASSWORD", up.password)
        with contextlib.ExitStack() as serving:
            bare = {
                name: serving.enter_context(filtered_metrics(url, "process_"))
                for name, url in up.metrics_urls.items()
            }
            target = tmp_path / "t.json"
            ws = up.base_url.replace("http://", "ws://", 1)
            target.write_text(
                json.dumps(
                    {
                        "name": "external-bare",
                        "base_url": up.base_url,
                        "ws_url": f"{ws}/v1/ws",
                        "metrics_urls": bare,
                        "users": sorted(up.users),
                        "password_env": "NIGHTLY_TEST_PASSWORD",
                    }
                )
            )
            argv = ["--store", str(home.store), "run", "--profile", "ci", "--tests", "01"]
            argv += ["--night", str(NIGHT), "--target", str(target), "--junit", str(junit)]
            code = main(argv)
    out, err = capsys.readouterr()
    assert code == 0, err[-3000:]
    # the command's table and closing lines
    (line,) = [row for row in out.splitlines() if f"resources/{MEMORY}" in row]
    assert f"{SKIP} (" in line and RSS_GAUGE in line and "FAIL" not in line, line
    assert f"{SKIP} (skipped): 01_message_soak {MEMORY}" in out
    assert "every blocking check passed" in out
    # JUnit: skipped with the reason, not a failure
    root = ET.parse(junit).getroot()
    assert (root.get("failures"), root.get("errors"), root.get("skipped")) == ("0", "0", "1")
    case = root.find(f"testcase[@name='{MEMORY}']")
    assert case is not None and case.find("failure") is None
    (skipped,) = case.findall("skipped")
    assert skipped.get("message").startswith(f"{SKIP}: no process ids")
    assert RSS_GAUGE in skipped.get("message")
    # the store and the night's report
    store = MetricStore(home.store)
    (result,) = store.recent_results().iter_rows(named=True)
    assert result["status"] == "passed"
    (stored,) = (
        store.threshold_results(NIGHT)
        .filter(metric="process_rss_growth_pct", scope="run")
        .iter_rows(named=True)
    )
    # neither passed nor failed (no failed threshold is counted), the check's own
    # severity, and the reason in its own column
    assert (stored["severity"], stored["passed"], stored["observed"]) == ("error", None, None)
    assert RSS_GAUGE in stored["not_measurable"]
    assert f"{MEMORY} (process_rss_growth_pct max<10): {SKIP}" in result["detail"]
    page = (home.reports / f"{NIGHT}.html").read_text("utf-8")
    row = (
        '<tr class="skipped"><td>process_rss_growth_pct</td><td>max &lt; 10</td>'
        f'<td class="num">-</td><td>-</td><td>{SKIP}</td></tr>'
    )
    assert row in page, page[page.find('<tr class="skipped">') :][:400]
    # Dagster: no evaluation (the UI shows the check skipped); the asset says why
    key = dg.AssetKey(["01_message_soak", "resources"])
    with open_instance(home) as instance:
        history = instance.event_log_storage.get_asset_check_execution_history(
            dg.AssetCheckKey(key, MEMORY), limit=1
        )
        # planned, never evaluated, in a run that succeeded: Dagster resolves it SKIPPED
        assert [record.status.value for record in history] == ["PLANNED"], history
        (suite,) = instance.get_runs(dg.RunsFilter(job_name="nightly_suite"))
        assert suite.status == dg.DagsterRunStatus.SUCCESS
        materialization = instance.get_latest_materialization_event(key).asset_materialization
        reason = materialization.metadata[f"{NOT_MEASURABLE_KEY}{MEMORY}"].value
    assert RSS_GAUGE in reason
