"""The catalog and its specs: every test module loads, with readable check names unique
in its test; a bad spec fails when it is built, naming every problem; profiles scale
duration, load and the knobs marked for it, never the checks."""

from __future__ import annotations

import dataclasses
import re
import sys

import pytest

from nightly_pipeline.suite.catalog import MODULES, TESTS, load_test, select_tests
from nightly_pipeline.suite.errors import SelectionError
from nightly_pipeline.suite.profiles import PROFILES, profile_named
from nightly_pipeline.suite.spec import (
    MAX_CHECK_NAME,
    Check,
    NoKnobs,
    SpecError,
    TestSpec,
    scales_with_load,
)

READABLE = re.compile(r"^[a-z][a-z0-9]*(_[a-z0-9]+)*$")


def _check(name: str = "zero_loss", on: str = "delivery", **changes) -> Check:
    fields = {"metric": "delivery_lost", "expr": "count==0", "severity": "error", "plan": "x"}
    return Check(name, on=on, **{**fields, **changes})


def _spec(*checks: Check, **changes) -> TestSpec:
    fields = {
        "id": "98",
        "name": "probe",
        "duration_s": 60,
        "rate": 10,
        "knobs": NoKnobs(),
        "description": "a probe",
        "assets": ("delivery",),
        "checks": checks or (_check(),),
    }
    return TestSpec(**{**fields, **changes})


def test_every_module_of_the_catalog_loads_as_its_own_test() -> None:
    assert [t.spec.key for t in TESTS] == list(MODULES)
    ids = [t.spec.id for t in TESTS]
    assert ids == sorted(set(ids))  # in id order, each once
    assert set(ids) >= {f"{n:02d}" for n in range(1, 12)}
    for test in TESTS:
        assert callable(test.scenario), test.spec.key
        assert dataclasses.is_dataclass(test.spec.knobs), test.spec.key


def test_check_names_are_readable_and_unique_within_each_test() -> None:
    for test in TESTS:
        names = [c.name for c in test.spec.checks]
        assert len(set(names)) == len(names), test.spec.key
        for name in names:
            assert READABLE.match(name) and len(name) <= MAX_CHECK_NAME, name
            assert not re.search(r"_(lt|le|gt|ge|eq|ne)_|__", name), name


def test_every_check_judges_one_of_its_tests_assets() -> None:
    for test in TESTS:
        assert {c.on for c in test.spec.checks} <= set(test.spec.assets), test.spec.key


def test_a_duplicate_check_name_fails_when_the_spec_is_built_naming_both() -> None:
    first = _check("no_loss")
    second = _check("no_loss", metric="delivery_duplicated")
    with pytest.raises(SpecError) as err:
        _spec(first, second)
    message = str(err.value)
    assert "test 98_probe" in message
    assert "check name 'no_loss' is given twice" in message
    assert "'delivery_lost count==0'" in message and "'delivery_duplicated count==0'" in message


PROBE_MODULE = """
from nightly_pipeline.suite.spec import Check, NoKnobs, TestSpec

SPEC = TestSpec(
    id="98", name="probe", duration_s=60, rate=10, knobs=NoKnobs(),
    description="", assets=("delivery",),
    checks=(
        Check("no_loss", on="delivery", metric="delivery_lost", expr="count==0",
              severity="error", plan="zero loss"),
        Check("%s", on="delivery", metric="delivery_corrupted",
              expr="count==0", severity="error", plan="intact"),
    ),
)

def scenario(ctx):
    raise AssertionError("never run")
"""


def _package(tmp_path, monkeypatch, name: str, files: dict[str, str]) -> str:
    package = tmp_path / name
    package.mkdir()
    (package / "__init__.py").write_text("")
    for module, source in files.items():
        (package / f"{module}.py").write_text(source)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, name, raising=False)
    return name


def test_a_duplicate_check_name_in_a_module_fails_at_import(tmp_path, monkeypatch) -> None:
    """The catalog imports a test module; a spec with two checks of one name stops the
    import, the message naming both."""
    package = _package(tmp_path, monkeypatch, "dup_probe", {"98_probe": PROBE_MODULE % "no_loss"})
    with pytest.raises(SpecError, match="check name 'no_loss' is given twice"):
        load_test("98_probe", package=package)


def test_a_module_is_named_after_its_spec(tmp_path, monkeypatch) -> None:
    package = _package(tmp_path, monkeypatch, "named_probe", {"98_other": PROBE_MODULE % "intact"})
    with pytest.raises(SpecError, match=r"its spec is '98_probe'; name the file 98_probe\.py"):
        load_test("98_other", package=package)


def test_a_bad_spec_names_every_problem_at_once() -> None:
    bad = _check("Bad__Name", on="latency", expr="p95 < 100")
    with pytest.raises(SpecError) as err:
        _spec(bad, id="1", duration_s=0, assets=())
    problems = str(err.value)
    for fragment in (
        "two digits",
        "duration_s must be > 0",
        "metric asset",
        "'Bad__Name' must be lower_case words",
        "judges asset 'latency'",
        "p95 < 100",
    ):
        assert fragment in problems


def test_knobs_must_be_a_frozen_dataclass() -> None:
    @dataclasses.dataclass
    class Mutable:
        n: int = 1

    with pytest.raises(SpecError, match="knobs Mutable must be frozen"):
        _spec(knobs=Mutable())
    with pytest.raises(SpecError, match="knobs must be a frozen dataclass instance"):
        _spec(knobs={"n": 1})


def test_changing_a_threshold_keeps_the_checks_name() -> None:
    soak = select_tests("01")[0].spec
    check = soak.check("post_p95_under_100ms")
    tuned = dataclasses.replace(
        soak,
        checks=tuple(
            dataclasses.replace(c, expr="p(95)<150") if c is check else c for c in soak.checks
        ),
    )
    assert [c.name for c in tuned.checks] == [c.name for c in soak.checks]
    assert tuned.check("post_p95_under_100ms").expr == "p(95)<150"
    assert tuned.thresholds()["http_req_duration{name:post_message}"] == ["p(95)<150"]


@pytest.mark.parametrize(
    ("profile", "duration", "rate"),
    [("ci", 6.0, 100.0), ("smoke", 60.0, 500.0), ("nightly", 1800.0, 500.0)],
)
def test_profiles_scale_time_and_load_of_the_soak(profile, duration, rate) -> None:
    soak = select_tests("01")[0].spec
    plan = profile_named(profile).plan(soak)
    assert (plan.duration_s, plan.rate) == (duration, rate)
    assert plan.knobs == soak.knobs  # none of the soak's knobs scales


@dataclasses.dataclass(frozen=True)
class _Burst:
    messages: int = scales_with_load(10_000)
    kill_after_s: float = 300.0


def test_a_profile_scales_only_the_knobs_marked_to_scale_with_load() -> None:
    spec = _spec(knobs=_Burst())
    assert PROFILES["ci"].plan(spec).knobs == _Burst(messages=2_000, kill_after_s=300.0)
    assert PROFILES["nightly"].plan(spec).knobs == _Burst()


def test_profiles_never_change_what_is_checked() -> None:
    # checks live on the spec: there is nothing per profile to drop a check with
    assert all(not hasattr(p, "checks") for p in PROFILES.values())


def test_loss_corruption_and_leak_checks_are_blocking() -> None:
    for test in TESTS:
        for check in test.spec.checks:
            if check.metric.startswith(("delivery_", "process_rss_growth")):
                assert check.severity == "error", (test.spec.key, check.name)
            if check.metric.startswith("http_req_duration"):
                assert check.severity == "warn", (test.spec.key, check.name)


def test_unknown_ids_and_profiles_are_refused_with_the_valid_ones() -> None:
    with pytest.raises(SelectionError, match=r"unknown test id\(s\) 42.*01 \(message_soak\)"):
        select_tests("01,42")
    with pytest.raises(SelectionError, match="valid: ci, smoke, nightly"):
        profile_named("weekly")
    assert [t.spec.id for t in select_tests("04, 01")] == ["01", "04"]
    assert len(select_tests(None)) == len(MODULES)
