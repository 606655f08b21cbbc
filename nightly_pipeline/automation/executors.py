"""Where the night's steps run: in the ``nightly run`` process (Dagster's in-process
executor, the default), or on Celery workers (``dagster_celery.celery_executor``, broker
and result backend on Redis).

Under Celery the run is the same ``nightly_suite`` job (same name, assets, checks, the
``target`` pool): the orchestrating process submits each step as a Celery task and a
worker rebuilds the job from ``nightly_suite_on_celery``'s module pointer
(``dagster.reconstructable``), so the workers need this package importable and the home's
Dagster instance and store on a path they can reach (one machine, or a shared volume).

The ``target`` pool holds under Celery: dagster-celery 0.29's execution loop claims the
instance's concurrency slots per step (``InstanceConcurrencyContext``) like the
in-process and multiprocess executors, so a step waits for the pool's one slot before
it is even submitted. ``tests/dagster/test_celery_night.py`` checks it from the run's
events.

The embedded platform: each step initialises its own resources in its worker, so each
test that asks for the target starts its own platform there (in
``$NIGHTLY_HOME/stack/<run id>``, one after another since the pool lets one test run at a
time; beside it, ``<run id>-pid<N>``, when a pool of more slots lets two run at once) and
stops it when the step ends — one platform per test, not per run, as under Dagster's
multiprocess executor (the UI's default).
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from dataclasses import dataclass

import dagster as dg
from dagster_celery import celery_executor

from nightly_pipeline.automation.dagster_adapter import with_executor
from nightly_pipeline.automation.jobs import nightly_suite_job
from nightly_pipeline.suite.errors import ConfigurationError

EXECUTOR_ENV = "NIGHTLY_EXECUTOR"
BROKER_ENV = "NIGHTLY_CELERY_BROKER"
BACKEND_ENV = "NIGHTLY_CELERY_BACKEND"
CELERY_QUEUE = "dagster"
"""The queue dagster-celery routes step tasks to (``dagster_celery.make_app``)."""


@dataclass(frozen=True)
class CeleryBroker:
    """A Celery broker and result backend (``redis://host:port/db``); the backend is the
    broker when not given. The workers must be started on the same ones."""

    broker: str
    backend: str = ""

    @property
    def result_backend(self) -> str:
        return self.backend or self.broker

    def run_config(self) -> dict[str, object]:
        """The run config's ``execution`` section for ``celery_executor``."""
        return {"execution": {"config": {"broker": self.broker, "backend": self.result_backend}}}

    def worker_argv(self, name: str, python: str = sys.executable) -> list[str]:
        """A worker of one step at a time (``--pool solo``: the step runs in the worker's
        own process, so stopping that pid stops the worker and its step), on the queue
        dagster-celery submits to, named ``name@%h``."""
        return [
            python,
            "-m",
            "celery",
            "-A",
            "dagster_celery.app",
            "-b",
            self.broker,
            "--result-backend",
            self.result_backend,
            "worker",
            "-Q",
            CELERY_QUEUE,
            "--pool",
            "solo",
            "-n",
            f"{name}@%h",
            "--without-gossip",
            "--without-mingle",
            "-l",
            "INFO",
        ]


def nightly_suite_on_celery() -> dg.JobDefinition:
    """``nightly_suite`` with the Celery executor. Module-scoped and argument-free so that
    ``dagster.reconstructable`` can point workers at it."""
    from nightly_pipeline.definitions import defs  # definitions imports the automation

    return with_executor(defs.resolve_job_def(nightly_suite_job.name), celery_executor)


def celery_suite_job() -> dg.ReconstructableJob:
    """The pointer ``dagster.execute_job`` runs and the workers rebuild the job from."""
    return dg.reconstructable(nightly_suite_on_celery)


ONE_STEP_AT_A_TIME = dg.multiprocess_executor.configured(
    {"max_concurrent": 1}, name="multiprocess_one_step_at_a_time"
)
"""The code location's executor when the scheduled night fans out over targets: each
run (each target's) runs one test at a time, whatever its launchpad says, while the
``target`` pool has one slot per target (``automation.schedules``)."""


def code_location_executor(
    env: Mapping[str, str], fanned_out: bool = False
) -> dg.ExecutorDefinition | None:
    """The executor of the code location's jobs (the scheduled night's included), from
    ``$NIGHTLY_EXECUTOR``: unset or ``default``, Dagster's default (None), or
    ``ONE_STEP_AT_A_TIME`` when the scheduled night is ``fanned_out`` over several
    targets; ``celery``, ``celery_executor`` on ``$NIGHTLY_CELERY_BROKER`` (backend
    ``$NIGHTLY_CELERY_BACKEND``, else the broker). Anything else, ``celery`` without a
    broker, or ``celery`` with a fanned-out night raises ``ConfigurationError`` naming
    the fix, so the code location does not load.
    The Celery workers must be started with the same variables."""
    name = env.get(EXECUTOR_ENV, "").strip() or "default"
    if name == "default":
        return ONE_STEP_AT_A_TIME if fanned_out else None
    if name != "celery":
        raise ConfigurationError(f"${EXECUTOR_ENV}={name!r}: expected default or celery")
    if fanned_out:
        raise ConfigurationError(
            f"${EXECUTOR_ENV}=celery runs one target's night, and $NIGHTLY_SCHEDULE_TARGETS "
            "fans the scheduled night out over several (one run per target, one step at a "
            "time in each): unset one of them"
        )
    broker = CeleryBroker(env.get(BROKER_ENV, "").strip(), env.get(BACKEND_ENV, "").strip())
    if not broker.broker:
        raise ConfigurationError(
            f"${EXECUTOR_ENV}=celery needs ${BROKER_ENV} (e.g. redis://127.0.0.1:6379/0)"
        )
    return celery_executor.configured(broker.run_config()["execution"]["config"])
