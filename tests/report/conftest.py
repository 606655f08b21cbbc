from __future__ import annotations

from pathlib import Path

import pytest

from nightly_pipeline.report import render_night_report
from tests.report import frames


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The night report of the hand-built frames (1 series + 7 trend figures)."""
    return render_night_report(
        tmp_path_factory.mktemp("reports"),
        frames.NIGHT,
        results=frames.results(),
        history=frames.history(),
        verdicts=frames.verdicts(),
        baselines=frames.baselines(),
        series={("ci", frames.SOAK): frames.series()},
    )
