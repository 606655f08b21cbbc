"""A real HTTP webhook receiver on 127.0.0.1 that records requests and follows a script."""

from __future__ import annotations

import json
import threading
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from nightly_pipeline.alerts import Alert, AlertSettings, Delivery, only_channels, send_alerts


@dataclass(frozen=True)
class Reply:
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b"ok"
    hang: bool = False
    """Answer nothing until the receiver stops (a webhook that never answers in time)."""


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class Receiver:
    """``Receiver().url`` takes POSTs; ``then(reply, times)`` scripts the next answers."""

    def __init__(self, default: Reply | None = None) -> None:
        self.default = default or Reply()
        self.requests: list[Received] = []
        self.answered: list[int] = []
        """The HTTP status answered to each request, in order (none for a hung one)."""
        self._script: deque[Reply] = deque()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                body = self.rfile.read(length)
                with receiver._lock:
                    receiver.requests.append(Received(self.path, dict(self.headers), body))
                    reply = receiver._script.popleft() if receiver._script else receiver.default
                    if not reply.hang:
                        receiver.answered.append(reply.status)
                if reply.hang:
                    receiver._stop.wait(10)
                    return
                self.send_response(reply.status)
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(reply.body)))
                self.end_headers()
                self.wfile.write(reply.body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._server.block_on_close = False
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/hooks/T000/B000/secret"

    def then(self, reply: Reply, times: int = 1) -> Receiver:
        with self._lock:
            self._script.extend([reply] * times)
        return self

    def start(self) -> Receiver:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)


def one_attempt_sender(slack: Receiver | None = None, discord: Receiver | None = None):
    """``send(alerts, channels)`` as the alerts resource does it, one attempt a send, to
    the receivers given: what the outbox and the pending inbox are tested with."""
    settings = AlertSettings(
        slack.url if slack else None, discord.url if discord else None, max_attempts=1
    )

    def send(alerts: Sequence[Alert], channels: Sequence[str]) -> list[Delivery]:
        return send_alerts(alerts, only_channels(settings, channels))

    return send
