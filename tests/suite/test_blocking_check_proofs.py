"""docs/blocking-checks.md is complete and true: every blocking check of Tests 01–07 names
a test that fails it on a really broken platform; every blocking check of the other tests
is either proven or listed, honestly, as not yet proven; and each named test exists and
mentions the check it is said to prove (so a renamed check or test cannot leave a row
pointing at nothing)."""

from __future__ import annotations

import importlib
import inspect
from pathlib import Path

import pytest

from nightly_pipeline.suite.catalog import TESTS

TABLE = Path(__file__).resolve().parents[2] / "docs" / "blocking-checks.md"
PROVEN, NOT_YET = "## Proven by a real fault", "## Not yet proven"
STRICT = {f"{n:02d}" for n in range(1, 8)}  # Tests 01–07: every blocking check proven

Row = dict[str, str]


def _rows(section: str) -> list[Row]:
    """The table under ``section`` (a ``## `` heading) as dicts by column, backticks off."""
    lines = TABLE.read_text().splitlines()
    start = lines.index(section)
    table = []
    for line in lines[start + 1 :]:
        if line.startswith("## "):
            break
        if line.startswith("|"):
            table.append([cell.strip().strip("`") for cell in line.strip("|").split("|")])
    header, _rule, *body = table
    return [dict(zip(header, cells, strict=True)) for cells in body]


def _blocking() -> set[tuple[str, str]]:
    return {(t.spec.id, c.name) for t in TESTS for c in t.spec.checks if c.severity == "error"}


def _keys(rows: list[Row]) -> list[tuple[str, str]]:
    return [(r["test"], r["check"]) for r in rows]


def test_every_blocking_check_of_tests_01_to_07_has_a_real_fault_proof() -> None:
    proven = set(_keys(_rows(PROVEN)))
    missing = sorted(k for k in _blocking() if k[0] in STRICT and k not in proven)
    assert not missing, f"blocking checks with no real-fault test in {TABLE.name}: {missing}"


def test_every_other_blocking_check_is_proven_or_listed_as_not_yet_proven() -> None:
    listed = set(_keys(_rows(PROVEN))) | set(_keys(_rows(NOT_YET)))
    missing = sorted(k for k in _blocking() if k not in listed)
    assert not missing, f"blocking checks in neither table of {TABLE.name}: {missing}"


def test_every_row_names_a_blocking_check_of_the_catalog_once() -> None:
    proven, not_yet = _keys(_rows(PROVEN)), _keys(_rows(NOT_YET))
    rows = proven + not_yet
    assert len(rows) == len(set(rows)), "a check listed twice"
    unknown = sorted(set(rows) - _blocking())
    assert not unknown, f"rows naming no blocking check of the catalog: {unknown}"
    assert not {k for k in not_yet if k[0] in STRICT}, "Tests 01-07 must be proven"


@pytest.mark.parametrize("row", _rows(PROVEN), ids=lambda r: f"{r['test']}-{r['check']}")
def test_each_proof_is_a_test_function_that_names_its_check(row: Row) -> None:
    path, _, name = row["proof"].partition("::")
    assert path.startswith("tests/") and path.endswith(".py") and name, row["proof"]
    module = importlib.import_module(path.removesuffix(".py").replace("/", "."))
    function = getattr(module, name, None)
    assert callable(function) and name.startswith("test_"), f"no test {row['proof']}"
    source = inspect.getsource(function)  # its decorators included (parametrized checks)
    assert row["check"] in source, f"{row['proof']} never mentions {row['check']}"
