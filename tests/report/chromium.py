"""Open a page in headless Debian Chromium and report what a user would see.

No Python dependency: Chromium dumps the rendered DOM (--dump-dom) and, with
--enable-logging=stderr, logs every console message as ``...:CONSOLE:<n>] "<text>",
source: <url> (<line>)`` — console.error and uncaught exceptions included, all at INFO,
so any console line at all counts as a problem.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path

import pytest

INSTALL = "apt-get update && apt-get install -y chromium"
_CONSOLE = re.compile(r":CONSOLE(?::|\()\d*\)?\]\s*(.*)$")
FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--enable-logging=stderr", "--v=0", "--virtual-time-budget=5000",
)  # fmt: skip


def chromium_binary(candidates: Sequence[str | None] | None = None) -> str:
    """The Chromium to use; fails (never skips) the test when none is installed."""
    if candidates is None:
        candidates = [os.environ.get("CHROMIUM_BIN"), "/usr/bin/chromium", shutil.which("chromium")]
    for candidate in candidates:
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return candidate
    pytest.fail(f"Chromium is required for the browser test; install it with: {INSTALL}")


class _Elements(HTMLParser):
    """Counts elements by class in a DOM dump (script text is not parsed as markup)."""

    def __init__(self) -> None:
        super().__init__()
        self.classes: dict[str, int] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if name == "class" and value:
                for cls in value.split():
                    self.classes[cls] = self.classes.get(cls, 0) + 1


@dataclass(frozen=True)
class BrowserRun:
    dom: str
    stderr: str
    console: list[str]  # every console message, errors and uncaught exceptions included
    classes: dict[str, int]

    @property
    def uncaught(self) -> list[str]:
        return [line for line in self.console if "Uncaught" in line]

    def count(self, css_class: str) -> int:
        return self.classes.get(css_class, 0)


def open_page(path: Path, *, timeout_s: float = 90) -> BrowserRun:
    binary = chromium_binary()
    with tempfile.TemporaryDirectory(prefix="chromium-") as profile:
        args = [binary, *FLAGS, f"--user-data-dir={profile}", "--dump-dom", path.as_uri()]
        done = subprocess.run(args, capture_output=True, text=True, timeout=timeout_s, check=False)
    assert done.returncode == 0, f"chromium exited {done.returncode}:\n{done.stderr[-3000:]}"
    console = [m.group(1) for line in done.stderr.splitlines() if (m := _CONSOLE.search(line))]
    parser = _Elements()
    parser.feed(done.stdout)
    return BrowserRun(done.stdout, done.stderr, console, parser.classes)


def open_url(
    url: str,
    *,
    screenshot: Path | None = None,
    window: tuple[int, int] = (1400, 900),
    budget_ms: int = 5000,
    timeout_s: float = 90,
) -> BrowserRun:
    """A served page (a single-page app) as ``open_page`` sees a file, in one Chromium run:
    ``budget_ms`` of virtual time, which stands still while network fetches are pending,
    so the app has fetched its data and rendered; with ``screenshot``, the viewport
    (``window``, scrollbars hidden) is saved there as PNG too."""
    binary = chromium_binary()
    flags = [f for f in FLAGS if not f.startswith("--virtual-time-budget=")]
    flags += [f"--virtual-time-budget={budget_ms}", f"--window-size={window[0]},{window[1]}"]
    if screenshot is not None:
        flags += ["--hide-scrollbars", f"--screenshot={screenshot}"]
    with tempfile.TemporaryDirectory(prefix="chromium-") as profile:
        args = [binary, *flags, f"--user-data-dir={profile}", "--dump-dom", url]
        done = subprocess.run(args, capture_output=True, text=True, timeout=timeout_s, check=False)
    assert done.returncode == 0, f"chromium exited {done.returncode}:\n{done.stderr[-3000:]}"
    console = [m.group(1) for line in done.stderr.splitlines() if (m := _CONSOLE.search(line))]
    parser = _Elements()
    parser.feed(done.stdout)
    return BrowserRun(done.stdout, done.stderr, console, parser.classes)
