"""``nightly run``'s live view of its tests on a terminal: one row per test (phase,
elapsed / planned, achieved rate, current p95, errors / dropped iterations, deliveries
pending), redrawn four times a second with rich (a well-kept terminal library, already
installed with Dagster).

It writes to a copy of the terminal taken before Dagster starts capturing the run's
output (Dagster redirects the process's stdout and stderr to its compute logs while a
step runs), so the view stays on the terminal while the run's logs go to the UI.
"""

from __future__ import annotations

import threading
from typing import TextIO

from rich import box
from rich.console import Console
from rich.live import Live
from rich.table import Table

from nightly_pipeline.suite.progress import TestProgress

REFRESH_PER_S = 4


class LiveProgress:
    """A context manager; ``update`` may be called from any thread."""

    def __init__(self, terminal: TextIO) -> None:
        self._latest: dict[str, TestProgress] = {}
        self._lock = threading.Lock()
        self._live = Live(
            get_renderable=self.table,
            console=Console(file=terminal, force_terminal=True),
            refresh_per_second=REFRESH_PER_S,
            redirect_stdout=False,
            redirect_stderr=False,
        )

    def update(self, progress: TestProgress) -> None:
        with self._lock:
            self._latest[progress.test] = progress

    def table(self) -> Table:
        """Fits 80 columns with the longest test name (never cut: it names the test)."""
        table = Table(
            title="nightly run",
            title_justify="left",
            box=box.SIMPLE_HEAD,
            collapse_padding=True,
            pad_edge=False,
        )
        table.add_column("test", no_wrap=True)
        table.add_column("progress", no_wrap=True)
        for column in ("rate", "p95", "err/drop", "pending"):
            table.add_column(column, justify="right", no_wrap=True)
        with self._lock:
            rows = sorted(self._latest.values(), key=lambda p: p.test)
        for p in rows:
            table.add_row(
                p.test,
                f"{p.phase} {p.elapsed_s:.0f}/{p.planned_s:.0f} s",
                f"{p.rate_per_s:.1f}/s" if p.phase == "load" else "-",
                f"{p.p95_ms:.1f} ms" if p.p95_ms is not None else "-",
                f"{p.errors}/{p.dropped}",
                "-" if p.pending is None else f"{p.pending:,}",
            )
        return table

    def __enter__(self) -> LiveProgress:
        self._live.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._live.stop()
