from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator

import pytest

from tests.chaos.helpers import ServerThread, server_thread


@pytest.fixture
def api_server(monkeypatch: pytest.MonkeyPatch) -> Iterator[ServerThread]:
    """Toxiproxy's API on loopback; clients built on ``requests`` bypass any HTTP proxy."""
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    with server_thread() as server:
        yield server


PROXY_ARGS = ("--name", "redis", "--upstream", "127.0.0.1:9", "--exit-on-stdin-eof")


@pytest.fixture
def proxy() -> Iterator[str]:
    """A fault proxy process named ``redis`` (its upstream need not answer); its control URL."""
    child = subprocess.Popen(
        [sys.executable, "-m", "nightly_pipeline.chaos.proxy", *PROXY_ARGS],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    ready = re.search(r"control=(\S+)", child.stdout.readline())
    assert ready, "the proxy did not print its READY line"
    try:
        yield ready.group(1)
    finally:
        child.terminate()
        child.wait(timeout=10)
