from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from nightly_pipeline.alerts.config import is_loopback_host
from tests.alerts.receiver import Receiver


@pytest.fixture(autouse=True)
def loopback_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """Alert tests may only ever send to loopback: anything else fails the test."""
    real = httpx.HTTPTransport.handle_request

    def guarded(self: httpx.HTTPTransport, request: httpx.Request) -> httpx.Response:
        if not is_loopback_host(request.url.host):  # pytest.fail escapes `except Exception`
            pytest.fail(f"an alert test tried to send to {request.url.host}")
        return real(self, request)

    monkeypatch.setattr(httpx.HTTPTransport, "handle_request", guarded)


class FakeClock:
    """``sleep`` records the wait and advances ``now``; nothing really waits."""

    def __init__(self) -> None:
        self.t = 1000.0
        self.sleeps: list[float] = []

    def now(self) -> float:
        return self.t

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.t += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def slack() -> Iterator[Receiver]:
    receiver = Receiver().start()
    yield receiver
    receiver.stop()


@pytest.fixture
def discord() -> Iterator[Receiver]:
    from tests.alerts.receiver import Reply

    receiver = Receiver(default=Reply(204, body=b"")).start()
    yield receiver
    receiver.stop()
