"""The API gives its C heap's free pages back while it serves (``heap_trim_every_s``).

Measured at Test 01's rate (bench/generator_memory.py): the free memory glibc kept after
bursts grew the API's RSS in steps, past the 10 % memory check. The real API process here,
on a real stack; the count comes from its own /metrics."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from nightly_pipeline import heap
from tests.testbed.api_fixtures import ApiStack, api_stack

pytestmark = pytest.mark.skipif(heap._TRIM is None, reason="malloc_trim is glibc's")
TRIMS = "process_heap_trims_total"


def _trims_after(stack: ApiStack, seconds: float) -> float:
    time.sleep(seconds)
    return stack.metric(TRIMS)


def test_the_api_trims_its_heap_every_interval(tmp_path: Path, system_dir: Path) -> None:
    with api_stack(tmp_path / "run", system_dir, n_users=1, heap_trim_every_s=0.2) as stack:
        first = _trims_after(stack, 0.5)
        later = _trims_after(stack, 1.5)
    assert first >= 1
    assert later - first >= 3  # ~7 at one every 0.2 s; a loaded host still gets 3


def test_an_interval_of_zero_never_trims(tmp_path: Path, system_dir: Path) -> None:
    with api_stack(tmp_path / "run", system_dir, n_users=1, heap_trim_every_s=0) as stack:
        assert _trims_after(stack, 1.0) == 0
