"""``$NIGHTLY_EXECUTOR``: the executor the code location gives its jobs (the scheduled
night's included), read by ``definitions.py`` and checked before anything loads."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from nightly_pipeline.automation.executors import code_location_executor
from nightly_pipeline.suite.errors import ConfigurationError

BROKER = "redis://127.0.0.1:6379/0"


@pytest.mark.parametrize(
    ("env", "name", "config"),
    [
        ({}, None, None),
        ({"NIGHTLY_EXECUTOR": "default"}, None, None),
        (
            {"NIGHTLY_EXECUTOR": "celery", "NIGHTLY_CELERY_BROKER": BROKER},
            "celery",
            {"broker": BROKER, "backend": BROKER},
        ),
        (
            {
                "NIGHTLY_EXECUTOR": "celery",
                "NIGHTLY_CELERY_BROKER": BROKER,
                "NIGHTLY_CELERY_BACKEND": "redis://127.0.0.1:6379/1",
            },
            "celery",
            {"broker": BROKER, "backend": "redis://127.0.0.1:6379/1"},
        ),
    ],
)
def test_executor_from_the_environment(env: dict, name: str | None, config: dict | None) -> None:
    executor = code_location_executor(env)
    if name is None:
        assert executor is None
        return
    assert executor is not None and executor.name == name
    resolved = executor.config_schema.resolve_config({})  # configured: nothing to fill in
    assert resolved.success and resolved.value is not None
    assert {k: resolved.value["config"][k] for k in ("broker", "backend")} == config


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"NIGHTLY_EXECUTOR": "dask"}, "expected default or celery"),
        ({"NIGHTLY_EXECUTOR": "celery"}, "needs $NIGHTLY_CELERY_BROKER"),
    ],
)
def test_a_wrong_executor_names_the_fix(env: dict, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message.replace("$", r"\$")):
        code_location_executor(env)


def test_the_code_location_loads_with_celery_for_every_job() -> None:
    """In a fresh interpreter (definitions read the environment once, at import)."""
    code = (
        "from nightly_pipeline.definitions import defs\n"
        "print(sorted({defs.resolve_job_def(j.name).executor_def.name"
        " for j in defs.resolve_all_job_defs()}))"
    )
    env = {**os.environ, "NIGHTLY_EXECUTOR": "celery", "NIGHTLY_CELERY_BROKER": BROKER}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "['celery']"
