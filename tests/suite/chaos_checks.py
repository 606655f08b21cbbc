"""What every chaos test's run must leave: its journal, an empty fault ledger, and the
checks it names as the ones that failed."""

from __future__ import annotations

import json
import math
from pathlib import Path

from nightly_pipeline.chaos.ledger import FaultLedger
from nightly_pipeline.suite.runner import TestOutcome


def checks(outcome: TestOutcome) -> dict[str, tuple[bool, float]]:
    return {c.check.name: (c.passed, c.observed) for c in outcome.checks}


def failed(outcome: TestOutcome) -> set[str]:
    return {c.check.name for c in outcome.checks if not c.passed}


def journal(run_dir: Path) -> dict:
    """The Chaos Toolkit journal the run wrote, every activity of its method succeeded."""
    found = json.loads((run_dir / "journal.json").read_text())
    assert found["status"] == "completed", found["status"]
    assert [r["status"] for r in found["run"]] == ["succeeded"] * len(found["run"])
    assert found["rollbacks"] and found["rollbacks"][0]["status"] == "succeeded"
    return found


def no_fault_left(run_dir: Path) -> None:
    assert FaultLedger(run_dir / "chaos-ledger.json").active() == {}


def by_fault(outcome: TestOutcome, metric: str) -> dict[str, float]:
    """A per-fault whole-run figure (``faults_unrecovered.count``) by fault name."""
    return {
        m.tags["fault"]: m.value
        for m in outcome.record.metrics
        if m.metric == metric and m.tags and set(m.tags) == {"fault"}
    }


def never_recovered(outcome: TestOutcome, check: str) -> None:
    """``check`` (a ``time_to_recover_s`` bound) failed because no fault of the run was
    ever followed by a steady platform: no recovery time recorded, every fault counted
    in ``faults_unrecovered``."""
    passed, observed = checks(outcome)[check]
    assert not passed and math.isnan(observed), (check, passed, observed)
    unrecovered = by_fault(outcome, "faults_unrecovered.count")
    assert unrecovered and set(unrecovered.values()) == {1.0}, unrecovered
