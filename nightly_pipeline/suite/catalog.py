"""The nightly suite: an explicit list of test modules, each loaded once into a
``SuiteTest`` (its ``SPEC``, ``scenario`` and optional ``derive``).

A test module lives in ``suite/scenarios/<id>_<name>.py`` (see docs/adding-a-test.md);
its file name must match its spec's key. Tests 08–11 are the chaos tests (faults injected
by a Chaos Toolkit experiment, ``suite.chaos_run``); 12–14 the production-like ones
(1,000 sockets, a migration under load, long-lived sockets); Test 15 is the weekly
``baseline_snapshot`` history asset.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping, Sequence

from nightly_pipeline.suite.context import SuiteTest
from nightly_pipeline.suite.errors import SelectionError
from nightly_pipeline.suite.spec import SpecError, TestSpec

PACKAGE = "nightly_pipeline.suite.scenarios"
MODULES: tuple[str, ...] = (
    "01_message_soak",
    "02_conversation_crud",
    "03_participant_invalidation",
    "04_mixed_ws_http",
    "05_large_payload",
    "06_sustained_login",
    "07_storage_multi_adapter",
    "08_consumer_resilience",
    "09_redis_partition",
    "10_pool_exhaustion",
    "11_cascading_failure",
    "12_multi_user_conversation",
    "13_migration_under_load",
    "14_ws_longevity",
)


def load_test(module_name: str, package: str = PACKAGE) -> SuiteTest:
    """The test declared by ``<package>.<module_name>``; ``SpecError`` naming the module
    when it lacks ``SPEC`` or ``scenario`` or its file name is not its spec's key."""
    module = importlib.import_module(f"{package}.{module_name}")
    spec = getattr(module, "SPEC", None)
    scenario = getattr(module, "scenario", None)
    if not isinstance(spec, TestSpec) or not callable(scenario):
        raise SpecError(
            f"{module.__name__}: a test module defines SPEC (a TestSpec) and scenario()"
        )
    if spec.key != module_name:
        raise SpecError(f"{module.__name__}: its spec is {spec.key!r}; name the file {spec.key}.py")
    return SuiteTest(spec, scenario, getattr(module, "derive", None))


TESTS: tuple[SuiteTest, ...] = tuple(load_test(name) for name in MODULES)
BY_ID: Mapping[str, SuiteTest] = {t.spec.id: t for t in TESTS}


def select_tests(ids: str | Sequence[str] | None) -> list[SuiteTest]:
    """``"01,04"`` (or a list, or None for all) → the tests in id order."""
    if ids is None:
        return list(TESTS)
    wanted = [i.strip() for i in ids.split(",")] if isinstance(ids, str) else list(ids)
    unknown = [i for i in wanted if i not in BY_ID]
    if unknown:
        valid = ", ".join(f"{t.spec.id} ({t.spec.name})" for t in TESTS)
        raise SelectionError(f"unknown test id(s) {', '.join(unknown)}; valid: {valid}")
    return [BY_ID[i] for i in sorted(set(wanted))]
