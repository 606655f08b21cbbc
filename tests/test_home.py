"""$NIGHTLY_HOME's layout: absolute from the entry point down, whatever the working
directory, so PostgreSQL's chdir into its data directory cannot break a relative path."""

from __future__ import annotations

from pathlib import Path

import pytest

from nightly_pipeline.home import Home


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, "cwd/.nightly"),
        ({"NIGHTLY_HOME": " "}, "cwd/.nightly"),
        ({"NIGHTLY_HOME": "/srv/nightly"}, "/srv/nightly"),
        ({"NIGHTLY_HOME": "rel"}, "cwd/rel"),
    ],
)
def test_the_home_comes_from_the_environment_and_is_absolute(
    env: dict[str, str], expected: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "cwd").mkdir()
    monkeypatch.chdir(tmp_path / "cwd")
    home = Home.from_env(env)
    assert home.root.is_absolute()
    assert home.root == (tmp_path / expected if not expected.startswith("/") else Path(expected))
    assert home.store == home.root / "metrics.duckdb"
    assert {p.name for p in (home.dagster, home.stack, home.runs, home.reports)} == {
        "dagster",
        "stack",
        "runs",
        "reports",
    }
    assert all(p.parent == home.root for p in (home.dagster, home.stack, home.runs, home.reports))


def test_a_store_given_by_path_keeps_its_name_and_sets_the_home(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    home = Home.of_store("elsewhere/m.duckdb")
    assert home.root == tmp_path / "elsewhere"
    assert home.store == tmp_path / "elsewhere" / "m.duckdb"
    assert home.reports == tmp_path / "elsewhere" / "reports"


def test_a_relative_home_is_refused() -> None:
    with pytest.raises(ValueError, match=r"relative: build it with Home.at\(\)"):
        Home(Path(".nightly"))
