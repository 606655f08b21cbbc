from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.chaos.helpers import ServerThread, proxy_process, server_thread


@pytest.fixture
def api_server(monkeypatch: pytest.MonkeyPatch) -> Iterator[ServerThread]:
    """Toxiproxy's API on loopback; clients built on ``requests`` bypass any HTTP proxy."""
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    with server_thread() as server:
        yield server


@pytest.fixture
def proxy() -> Iterator[str]:
    """A fault proxy process named ``redis`` (its upstream need not answer); its control URL."""
    with proxy_process() as (control, _):
        yield control
