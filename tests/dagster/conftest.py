"""Guards for the Dagster tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from dagster._core.storage.defs_state.base import DefsStateStorage

from tests.dagster.version_server import VersionServer


@pytest.fixture(autouse=True)
def no_instance_left_current() -> Iterator[None]:
    """A Dagster context built with an instance (``build_schedule_context``,
    ``build_sensor_context``) opens that instance from its ref and makes it current until
    the context is exited. Left open, a later ``materialize`` loads its definitions against
    an instance already collected ("Attempted to resolve undefined DagsterInstance
    weakref"): a failure that depends on the garbage collector's timing. Caught here, in
    the test that leaves it, every time."""
    before = DefsStateStorage.get()
    yield
    assert DefsStateStorage.get() is before, (
        "this test left a Dagster instance current: use `with dg.build_..._context(...) as"
        " context:` so that the context closes the instance it opened"
    )


@pytest.fixture
def version_server() -> Iterator[VersionServer]:
    """A loopback target-version endpoint, shut down after the test."""
    server = VersionServer()
    yield server
    server.close()
