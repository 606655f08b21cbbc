"""The Dagster UI in a real browser, on what ``nightly run`` recorded.

A ``ci`` night of Test 06 is run by the CLI, as a user runs it, into a fresh home; then
``dagster-webserver`` serves that home's instance (what ``nightly ui`` runs, without the
daemon, which these pages do not need) and headless Debian Chromium opens the catalog,
the asset graph, the checks tab of each checked asset and the suite run's page. Each page:
a screenshot (kept in ``$NIGHTLY_UI_SCREENSHOTS`` when set), no console error, and the
asset keys, check names and run status shown as text, in full (Dagster shortens a name
that does not fit with "…"). Fails (never skips) when Chromium is not installed.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import quote, unquote

import httpx
import psutil
import pytest

from nightly_pipeline.suite.catalog import BY_ID
from nightly_pipeline.testbed.stack.probes import free_port
from tests.report.chromium import chromium_binary, open_url

BIN = Path(sys.executable).parent
SPEC = BY_ID["06"].spec  # the quickest test: ~15 s at the ci profile
CHECKS = {asset: [c.name for c in SPEC.checks if c.on == asset] for asset in SPEC.assets}
SCREENSHOTS_ENV = "NIGHTLY_UI_SCREENSHOTS"
# Virtual time stands still while fetches are pending, so this is not a wait: the pages
# below render in 3-6 s of real time; it only has to outlast the app's own timers.
BUDGET_MS = 15_000
# Text Dagster shows in place of a page it could not load (from its JS bundle).
PAGE_ERRORS = (
    "An unexpected error",
    "Unexpected GraphQL error",
    "An error occurred",
    "Asset not found",
    "No run found",
    "Could not load",
)

# Console messages. Chromium's --enable-logging=stderr logs every one at INFO (console.log,
# .warn, .error and uncaught exceptions look alike; tests/report/chromium.py), so every
# console line counts as an error except these two, which Dagster 1.13's bundle logs
# itself, whatever the code location (read in its source map):
# - Apollo Client's invitation to install its DevTools (invariant.log, ApolloClient.js);
# - Apollo's invariant 85, a console.warn that useSubscription's `onSubscriptionData`
#   option is deprecated, raised by Dagster's run-log subscription (LogsProvider.tsx).
# Both must come from the webserver's own /_next/static/ bundle; any other Apollo
# invariant code, or the same text from elsewhere, is still an error.
_DEVTOOLS = re.compile(
    r'^"Download the Apollo DevTools for a better development experience: %s '
    r'https://chrome\.google\.com/webstore/detail/apollo-client-developer-t/\w+", '
    r"source: (?P<source>\S+) \(\d+\)$"
)
_APOLLO = re.compile(
    r'^"An error occurred! For more details, see the full error text at '
    r'https://go\.apollo\.dev/c/err#(?P<detail>[^"\s]+)", source: (?P<source>\S+) \(\d+\)$'
)
APOLLO_DEPRECATED_ON_SUBSCRIPTION_DATA = 85


def console_errors(console: list[str], origin: str) -> list[str]:
    """The console lines that are errors (see above)."""
    bundle = f"{origin}/_next/static/"
    errors = []
    for line in console:
        if (m := _DEVTOOLS.match(line)) and m["source"].startswith(bundle):
            continue
        if (m := _APOLLO.match(line)) and m["source"].startswith(bundle):
            try:
                detail = json.loads(unquote(m["detail"]))
            except ValueError:
                detail = {}
            if detail.get("message") == APOLLO_DEPRECATED_ON_SUBSCRIPTION_DATA:
                continue
        errors.append(line)
    return errors


class _Visible(HTMLParser):
    """The text a user can read in a DOM dump: one entry per text node, without scripts,
    styles and the hidden copy of each name that Dagster's MiddleTruncate measures (its
    visible ``<span>`` holds the shortened name when it does not fit)."""

    VOID = frozenset(
        ("area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "wbr")
    )
    HIDDEN_TAGS = frozenset(("script", "style", "noscript", "template", "title"))
    HIDDEN_CLASS = "MiddleTruncate_measure"

    def __init__(self) -> None:
        super().__init__()
        self.texts: list[str] = []
        self.title = ""
        self._hidden_depth = 0
        self._in_title = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self.VOID:
            return
        if self._hidden_depth:
            self._hidden_depth += 1
            return
        css = dict(attrs).get("class") or ""
        if tag in self.HIDDEN_TAGS or self.HIDDEN_CLASS in css:
            self._hidden_depth = 1
        self._in_title = tag == "title"

    def handle_endtag(self, tag: str) -> None:
        if tag in self.VOID:
            return
        if self._hidden_depth:
            self._hidden_depth -= 1
        self._in_title = False

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self.title += data
        elif not self._hidden_depth and data.strip():
            self.texts.append(" ".join(data.split()))


@dataclass(frozen=True)
class Page:
    url: str
    title: str
    texts: list[str]
    screenshot: Path

    def shows(self, *texts: str) -> None:
        """Each of ``texts`` is one whole text node on the page: shown, and not shortened."""
        missing = [t for t in texts if t not in self.texts]
        shortened = [t for t in self.texts if "…" in t]
        assert missing == [], (
            f"{self.url} ({self.title!r}) does not show {missing}; shortened: {shortened}; "
            f"shown: {self.texts[:120]}"
        )


@dataclass(frozen=True)
class UI:
    url: str
    suite_run_id: str
    suite_run_status: str


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("NIGHTLY_HOME", "DAGSTER_HOME")}
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    return env


def _stop_group(child: subprocess.Popen) -> None:
    """SIGINT to the child's process group, as Ctrl-C in its terminal; SIGKILL to the
    group if the child or any of its descendants is still there 30 s later."""
    try:
        family = psutil.Process(child.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        family = []
    for sig in (signal.SIGINT, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(child.pid, sig)
        try:
            child.wait(timeout=30)
        except subprocess.TimeoutExpired:
            continue
        _, family = psutil.wait_procs(family, timeout=30)
        if not family:
            return


def _left_behind(home: Path) -> list[str]:
    found = []
    for proc in psutil.process_iter(["cmdline", "status"]):
        line = " ".join(proc.info["cmdline"] or ())
        if str(home) in line and proc.info["status"] != psutil.STATUS_ZOMBIE:
            found.append(f"{proc.pid} {line[:120]}")
    return found


def _graphql(url: str, query: str) -> dict:
    answer = httpx.post(f"{url}/graphql", json={"query": query}, timeout=10)
    answer.raise_for_status()
    body = answer.json()
    assert "errors" not in body, body["errors"]
    return body["data"]


def _serving(url: str, child: subprocess.Popen, timeout_s: float = 120) -> None:
    """Until the webserver has loaded the code location (or fail with why not)."""
    query = "{ workspaceOrError { ... on Workspace { locationEntries { name loadStatus } } } }"
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert child.poll() is None, f"dagster-webserver exited {child.returncode}"
        try:
            entries = _graphql(url, query)["workspaceOrError"]["locationEntries"]
            if entries and all(e["loadStatus"] == "LOADED" for e in entries):
                return
        except (httpx.HTTPError, ValueError, KeyError, TypeError):
            pass
        time.sleep(0.5)
    pytest.fail(f"dagster-webserver did not serve {url} within {timeout_s:.0f} s")


@pytest.fixture(scope="module")
def ui(tmp_path_factory: pytest.TempPathFactory) -> Iterator[UI]:
    chromium_binary()  # fail now, not after the night, when there is no browser
    home = tmp_path_factory.mktemp("ui") / "home"
    night = [BIN / "nightly", "--store", home / "metrics.duckdb", "run", "--profile", "ci"]
    night += ["--tests", SPEC.id]
    cli = subprocess.Popen(
        night,
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        out, err = cli.communicate(timeout=300)
    finally:
        _stop_group(cli)
    assert cli.returncode == 0, out[-3000:] + err[-3000:]

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    serve = [BIN / "dagster-webserver", "-m", "nightly_pipeline.definitions"]
    serve += ["-h", "127.0.0.1", "-p", str(port)]
    server = subprocess.Popen(
        serve,
        env={**_env(), "DAGSTER_HOME": str(home / "dagster"), "NIGHTLY_HOME": str(home)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        _serving(url, server)
        # The instance template turns off the "Join the Dagster community" dialog that
        # would cover every page of a new instance served on localhost.
        assert _graphql(url, "{ shouldShowNux }")["shouldShowNux"] is False
        runs = _graphql(
            url, "{ runsOrError { ... on Runs { results { runId jobName status } } } }"
        )["runsOrError"]["results"]
        suite = [r for r in runs if r["jobName"] == "nightly_suite"]
        assert len(suite) == 1, runs
        yield UI(url, suite[0]["runId"], suite[0]["status"])
    finally:
        _stop_group(server)
    assert _left_behind(home) == []


def _open(ui: UI, path: str, name: str, tmp_path: Path) -> Page:
    """``path`` in Chromium: a screenshot, no console error, not blank, no error page."""
    url = ui.url + path
    shot = tmp_path / f"{name}.png"
    run = open_url(url, screenshot=shot, budget_ms=BUDGET_MS)
    if keep := os.environ.get(SCREENSHOTS_ENV):
        Path(keep).mkdir(parents=True, exist_ok=True)
        shutil.copy2(shot, Path(keep) / shot.name)
    assert console_errors(run.console, ui.url) == [], f"{url}: {run.console}"
    parser = _Visible()
    parser.feed(run.dom)
    page = Page(url, parser.title, parser.texts, shot)
    page.shows("Catalog", "Runs")  # the app rendered (its navigation)
    failed = [t for t in page.texts if t.startswith(PAGE_ERRORS)]
    assert failed == [], f"{url}: {failed}"
    # A blank 1400x900 PNG is about 6 KB; these pages are 60-200 KB.
    assert shot.stat().st_size > 20_000, f"{shot} looks blank"
    return page


@pytest.mark.slow
def test_catalog_lists_the_tests_assets(ui: UI, tmp_path: Path) -> None:
    selection = quote(f'key:"{SPEC.key}/*"')
    page = _open(ui, f"/assets?asset-selection={selection}", "catalog", tmp_path)
    page.shows(*(f"{SPEC.key} / {asset}" for asset in SPEC.assets), "suite")


@pytest.mark.slow
def test_asset_graph_shows_the_asset_its_checks_and_what_reads_it(ui: UI, tmp_path: Path) -> None:
    asset = "auth"
    page = _open(ui, f"/assets/{SPEC.key}/{asset}?view=lineage", "asset_graph", tmp_path)
    assert page.title == f"Assets | {SPEC.key} / {asset}"
    checks = len(CHECKS[asset])
    page.shows(asset, "regressions", f"{checks} / {checks} Passed")


@pytest.mark.slow
@pytest.mark.parametrize("asset", [a for a in SPEC.assets if CHECKS[a]])
def test_checks_tab_names_every_check_in_full(ui: UI, tmp_path: Path, asset: str) -> None:
    page = _open(ui, f"/assets/{SPEC.key}/{asset}?view=checks", f"checks_{asset}", tmp_path)
    assert page.title == f"Assets | {SPEC.key} / {asset}"
    page.shows(SPEC.key, asset, f"Checks ({len(CHECKS[asset])})", *CHECKS[asset])
    assert page.texts.count("Succeeded") == len(CHECKS[asset]), page.texts


@pytest.mark.slow
def test_run_page_shows_the_suite_run_and_its_status(ui: UI, tmp_path: Path) -> None:
    assert ui.suite_run_status == "SUCCESS"
    page = _open(ui, f"/runs/{ui.suite_run_id}", "suite_run", tmp_path)
    short = ui.suite_run_id[:8]
    assert page.title == f"Runs | nightly_suite | {short} [SUCCESS]"
    page.shows(short, "Success", "nightly_suite", SPEC.key, "RUN_SUCCESS")
    page.shows(f"{len(SPEC.assets)} assets", f"{len(SPEC.checks)} checks")


@pytest.mark.slow
def test_the_checks_fail_on_a_page_without_the_checks(ui: UI, tmp_path: Path) -> None:
    """The same assertions on an asset that does not exist: they fail."""
    with pytest.raises(AssertionError, match="does not show"):
        page = _open(ui, f"/assets/{SPEC.key}/nothing?view=checks", "no_asset", tmp_path)
        page.shows(*CHECKS["auth"])


@pytest.mark.parametrize(
    ("line", "error"),
    [
        ('"Uncaught TypeError: x is undefined", source: {o}/_next/static/chunks/1.js (6)', True),
        ('"boom", source: {o}/_next/static/chunks/1.js (6)', True),
        (
            '"Download the Apollo DevTools for a better development experience: %s '
            "https://chrome.google.com/webstore/detail/apollo-client-developer-t/jdkknkkbe"
            'bbapilgoeccciglkfbmbnfm", source: {o}/_next/static/chunks/8569.js (6)',
            False,
        ),
        (
            '"An error occurred! For more details, see the full error text at '
            "https://go.apollo.dev/c/err#%7B%22version%22%3A%223.14.1%22%2C%22message%22"
            '%3A85%2C%22args%22%3A%5B%5D%7D", source: {o}/_next/static/chunks/8569.js (6)',
            False,
        ),
        (  # another Apollo invariant: an error
            '"An error occurred! For more details, see the full error text at '
            "https://go.apollo.dev/c/err#%7B%22version%22%3A%223.14.1%22%2C%22message%22"
            '%3A12%2C%22args%22%3A%5B%5D%7D", source: {o}/_next/static/chunks/8569.js (6)',
            True,
        ),
        (  # the noise's text from another script: an error
            '"Download the Apollo DevTools for a better development experience: %s '
            "https://chrome.google.com/webstore/detail/apollo-client-developer-t/jdkknkkbe"
            'bbapilgoeccciglkfbmbnfm", source: http://elsewhere/x.js (6)',
            True,
        ),
    ],
)
def test_console_errors(line: str, error: bool) -> None:
    origin = "http://127.0.0.1:3000"
    line = line.replace("{o}", origin)
    assert console_errors([line], origin) == ([line] if error else [])
