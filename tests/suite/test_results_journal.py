"""A chaos test's Chaos Toolkit journal becomes store rows: the experiment's verdict and
every activity in journal order, times naive UTC, outputs strict JSON, exceptions joined;
and the runner attaches them only for a journal this test wrote."""

from __future__ import annotations

import copy
import json
import os
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from nightly_pipeline.loadgen.scenario import GetPath
from nightly_pipeline.suite import runner
from nightly_pipeline.suite.context import ScenarioContext, SuiteTest
from nightly_pipeline.suite.profiles import PROFILES
from nightly_pipeline.suite.results import (
    JOURNAL,
    TEXT_LIMIT,
    activity_rows,
    experiment_row,
    json_text,
    read_journal,
    wall_time_of,
)
from nightly_pipeline.suite.spec import Check, NoKnobs, TestSpec
from nightly_pipeline.suite.target import Target
from nightly_pipeline.testbed.echo import http_server

REAL = json.loads((Path(__file__).parents[1] / "report" / "journal_08.json").read_text())
"""A journal of Test 08 from a real run (times shifted to 2026-11-20, token blanked)."""


def _at(text: str) -> datetime:
    """2026-11-20 at ``HH:MM:SS.ffffff``, naive UTC as the store keeps it."""
    return datetime.fromisoformat(f"2026-11-20T{text}")


def _with_failed_revert() -> dict[str, Any]:
    """The real journal, its consumer's restart failing as chaoslib records it."""
    journal = copy.deepcopy(REAL)
    revert = journal["run"][4]
    revert["status"] = "failed"
    revert["output"] = None
    revert["exception"] = [
        "Traceback (most recent call last):\n",
        "chaoslib.exceptions.ActivityFailed: consumer did not come back within 30 s\n",
    ]
    journal["status"], journal["deviated"] = "failed", True
    return journal


UNFINISHED = {  # chaos.chaostoolkit_adapter's stub when the experiment outlived its grace
    "experiment": REAL["experiment"],
    "status": "unfinished",
    "deviated": True,
    "error": "still running after 120 s",
    "run": [],
    "rollbacks": [],
}
NOT_STARTED = {  # chaoslib's journal before any steady state was checked
    "experiment": {"title": "t"},
    "start": "2026-11-20T02:10:09Z",
    "status": None,
    "deviated": False,
    "steady_states": {"before": None, "after": None, "during": []},
    "run": [],
    "rollbacks": [],
}
ODD_ACTIVITY = {  # naive time, no duration or status, output that plain JSON cannot hold
    "experiment": {"title": "odd"},
    "status": "interrupted",
    "run": [
        {
            "activity": {"type": "probe", "name": "lag"},
            "output": {"lag": float("nan"), "max": float("inf")},
            "start": "2026-11-20T02:10:10",
            "end": "2026-11-20T03:10:10.500000+01:00",
        }
    ],
}

# (journal, experiment (title, status, deviated, started, ended, error),
#  activities [(seq, phase, kind, name, status, started, ended, duration, output, tolerance,
#  error)] — only the first and the rows named in ``picked``)
REAL_EXPERIMENT = (REAL["experiment"]["title"], "completed", False, _at("02:10:09.966447"),
                   _at("02:10:19.033766"), None)  # fmt: skip
CASES = {
    "real": (
        REAL,
        REAL_EXPERIMENT,
        {
            0: (0, "hypothesis_before", "probe", "api-ready", "succeeded", _at("02:10:09.966630"),
                _at("02:10:10.003588"), 0.036958, "200", True, None),
            1: (1, "method", "action", "inject-slow-reads", "succeeded", _at("02:10:10.503881"),
                _at("02:10:10.558188"), 0.054307,
                json.dumps(REAL["run"][0]["output"], ensure_ascii=False), None, None),
            3: (3, "method", "probe", "pel-at-kill", "succeeded", _at("02:10:13.065093"),
                _at("02:10:13.069729"), 0.004636, "142", None, None),
            7: (7, "hypothesis_after", "probe", "api-ready", "succeeded", _at("02:10:18.836036"),
                _at("02:10:19.033068"), 0.197032, "200", True, None),
            8: (8, "rollback", "action", "revert-every-fault", "succeeded",
                _at("02:10:19.033268"), _at("02:10:19.033397"), 0.000129, "[]", None, None),
        },
    ),
    "failed activity": (
        _with_failed_revert(),
        (REAL_EXPERIMENT[0], "failed", True, *REAL_EXPERIMENT[3:]),
        {
            5: (5, "method", "action", "revert-consumer-kill", "failed", _at("02:10:18.117503"),
                _at("02:10:18.743227"), 0.625724, None, None,
                "Traceback (most recent call last):\nchaoslib.exceptions.ActivityFailed: "
                "consumer did not come back within 30 s"),
        },
    ),
    "unfinished": (
        UNFINISHED,
        (REAL_EXPERIMENT[0], "unfinished", True, None, None, "still running after 120 s"),
        {},
    ),
    "not started": (NOT_STARTED, ("t", "unknown", False, _at("02:10:09"), None, None), {}),
    "odd activity": (
        ODD_ACTIVITY,
        ("odd", "interrupted", False, None, None, None),
        {
            0: (0, "method", "probe", "lag", "unknown", _at("02:10:10"), _at("02:10:10.5"), 0.5,
                '{"lag": "NaN", "max": "Infinity"}', None, None),
        },
    ),
}  # fmt: skip
COUNTS = {"real": 9, "failed activity": 9, "unfinished": 0, "not started": 0, "odd activity": 1}


@pytest.mark.parametrize("case", list(CASES))
def test_journal_becomes_rows(case: str) -> None:
    journal, experiment, picked = CASES[case]
    e = experiment_row(journal)
    assert (e.title, e.status, e.deviated, e.started_at, e.ended_at, e.error) == experiment
    rows = activity_rows(journal)
    assert [r.seq for r in rows] == list(range(COUNTS[case]))
    for seq, expected in picked.items():
        r = rows[seq]
        got = (r.seq, r.phase, r.kind, r.name, r.status, r.started_at, r.ended_at)
        got += (r.duration_s, r.output_json, r.tolerance_met, r.error)
        assert got == expected, seq


def test_real_journal_phases_in_journal_order() -> None:
    rows = activity_rows(REAL)
    assert [(r.phase, r.name) for r in rows] == [
        ("hypothesis_before", "api-ready"),
        ("method", "inject-slow-reads"),
        ("method", "inject-consumer-kill"),
        ("method", "pel-at-kill"),
        ("method", "revert-slow-reads"),
        ("method", "revert-consumer-kill"),
        ("method", "ready-again"),
        ("hypothesis_after", "api-ready"),
        ("rollback", "revert-every-fault"),
    ]
    assert all(r.started_at.tzinfo is None for r in rows if r.started_at)  # type: ignore[union-attr]


def test_probes_during_are_kept() -> None:
    journal = copy.deepcopy(REAL)
    during = copy.deepcopy(REAL["steady_states"]["before"])
    during["probes"][0]["tolerance_met"] = False
    journal["steady_states"]["during"] = [during]
    rows = activity_rows(journal)
    assert [(r.phase, r.tolerance_met) for r in rows if r.phase == "hypothesis_during"] == [
        ("hypothesis_during", False)
    ]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, None),
        (200, "200"),
        ({"b": [1, 2.5], "a": "é"}, '{"b": [1, 2.5], "a": "é"}'),
        ([float("-inf")], '["-Infinity"]'),
        ({"when": date(2026, 11, 20)}, '{"when": "2026-11-20"}'),
    ],
)
def test_output_is_strict_json(value: object, expected: str | None) -> None:
    assert json_text(value) == expected


def test_a_huge_output_is_cut_and_still_json() -> None:
    text = json_text("x" * (2 * TEXT_LIMIT))
    assert text is not None
    cut = json.loads(text)
    assert cut["truncated_chars"] == 2 * TEXT_LIMIT + 2
    assert len(cut["head"]) == TEXT_LIMIT


def test_wall_time_of_a_perf_counter_reading() -> None:
    now = datetime(2026, 11, 20, 2, 11, tzinfo=UTC)
    got = wall_time_of(97.5, clocks=lambda: (now, 100.0))
    assert got == now - timedelta(seconds=2.5)


def test_read_journal_only_when_fresh(tmp_path: Path) -> None:
    path = tmp_path / JOURNAL
    since = datetime(2026, 11, 20, 2, 10, tzinfo=UTC)
    assert read_journal(path, written_since=since) is None  # no chaos test ran

    path.write_text(json.dumps(REAL))
    before = since.timestamp() - 60  # left by an earlier test of the same Dagster run
    os.utime(path, (before, before))
    assert read_journal(path, written_since=since) is None

    os.utime(path, (since.timestamp() + 1, since.timestamp() + 1))
    assert read_journal(path, written_since=since) == REAL


@pytest.mark.parametrize("content", ["{not json", "[1, 2]"])
def test_unreadable_journal_becomes_a_stub(tmp_path: Path, content: str) -> None:
    path = tmp_path / JOURNAL
    path.write_text(content)
    journal = read_journal(path, written_since=datetime(2000, 1, 1, tzinfo=UTC))
    assert journal is not None
    e = experiment_row(journal)
    assert (e.status, e.deviated) == ("unreadable", True)
    assert e.error is not None and str(path) in e.error
    assert activity_rows(journal) == ()


# --- the runner attaches them ---------------------------------------------------------

SPEC = TestSpec(
    id="98",
    name="journal_probe",
    duration_s=2,
    rate=20,
    knobs=NoKnobs(),
    description="a probe of the runner's journal",
    assets=("latency",),
    checks=(
        Check("answers", on="latency", metric="http_req_failed", expr="rate==0",
              severity="error", plan="no failed request"),
    ),
)  # fmt: skip


def _run(tmp_path: Path, url: str, write_journal: bool):
    def scenario(ctx: ScenarioContext[NoKnobs]):
        result = ctx.load(GetPath("/"), max_vus=20)
        if write_journal:  # as suite.chaos_run does, after the load
            (ctx.run_dir / JOURNAL).write_text(json.dumps(REAL))
        return result

    target = Target("probe", url, "ws://127.0.0.1:1/v1/ws", {}, ("u",), "p")
    return runner.run_suite_test(
        SuiteTest(SPEC, scenario),
        PROFILES["ci"],
        target,
        night=date(2026, 11, 20),
        run_id="r1",
        run_dir=tmp_path,
    ).record


def test_runner_attaches_this_tests_journal_only(tmp_path: Path) -> None:
    with http_server() as echo:
        chaos = _run(tmp_path, echo.url, write_journal=True)
        after = _run(tmp_path, echo.url, write_journal=False)  # same run_dir, journal left
    assert chaos.experiment == experiment_row(REAL)
    assert chaos.activities == activity_rows(REAL)
    assert after.experiment is None and after.activities == ()
    for record in (chaos, after):
        assert record.load_started_at is not None
        assert record.started_at <= record.load_started_at <= record.finished_at
