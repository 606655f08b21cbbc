"""The whole suite at the ci profile through ``nightly run`` (the scheduled jobs in
Dagster, the embedded platform), run once per session and read by the tests of the
command (exit status, table, JUnit), the chaos tests' journals and the production-like
tests' assets: one real night instead of three overlapping ones."""

from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import psutil

from nightly_pipeline.cli import main
from nightly_pipeline.home import Home

NIGHT = date(2026, 11, 22)


@dataclass(frozen=True)
class CiNight:
    home: Home
    code: int  # nightly run's exit status
    out: str  # what it printed on stdout (the tables)
    junit: Path
    left: list[str]  # processes the night started that are still running after it


def run_ci_night(root: Path) -> CiNight:
    store = root / "home" / "metrics.duckdb"
    junit = root / "junit.xml"
    before = {p.pid for p in psutil.Process().children(recursive=True)}
    argv = ["--store", str(store), "run", "--profile", "ci", "--night", NIGHT.isoformat()]
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main([*argv, "--junit", str(junit)])
    left = []
    for proc in psutil.Process().children(recursive=True):
        try:
            if proc.pid not in before and proc.status() != psutil.STATUS_ZOMBIE:
                left.append(" ".join(proc.cmdline()))
        except psutil.NoSuchProcess:  # gone while we looked
            continue
    return CiNight(Home.of_store(store), code, out.getvalue(), junit, left)
