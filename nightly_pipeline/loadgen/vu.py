"""What a scenario iteration sees: its schedule, a recording HTTP client, WebSockets.

Clients publish samples into the recorder here, with k6's metric names, so that
scenarios never do their own accounting:

- ``http_req_duration``: service time, from the actual send to the last byte (k6's name).
- ``http_req_latency``: from the *scheduled* start of the iteration for its first
  request (so a late generator or a stalled target shows up in full), from the send
  for the requests that follow it in the same iteration.
- ``http_reqs`` (counter), ``http_req_failed`` (rate; status 0 or >= 400 unless expected).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from nightly_pipeline.loadgen.http_client import HttpClient, HttpResponse
from nightly_pipeline.loadgen.recorder import Recorder
from nightly_pipeline.loadgen.ws_client import OnMessage, WsSession, ws_connect

Header = tuple[str, str]

_EXPECTED = {"expected_response": "true"}
_UNEXPECTED = {"expected_response": "false"}


TagFromResponse = Callable[[HttpResponse], Mapping[str, str] | None]


class RecordingHttp:
    """An HttpClient bound to one iteration; every request is recorded."""

    __slots__ = ("_client", "_intended", "_recorder")

    def __init__(self, client: HttpClient, recorder: Recorder, intended_start: float) -> None:
        self._client = client
        self._recorder = recorder
        self._intended = intended_start

    async def request(
        self,
        method: str,
        path: str,
        *,
        body: bytes | None = None,
        headers: Iterable[Header] = (),
        tags: Mapping[str, str] | None = None,
        expected: Collection[int] = (),
        tag_from_response: TagFromResponse | None = None,
    ) -> HttpResponse:
        """Send one request; ``expected`` statuses >= 400 do not count as failures.

        ``tag_from_response`` adds tags known only from the answer (a cache header) to
        every sample of the request, so thresholds can select on them."""
        response = await self._client.request(method, path, body=body, headers=headers)
        if tag_from_response is not None and (extra := tag_from_response(response)):
            tags = {**(tags or {}), **extra}
        rec = self._recorder
        end = response.finished_at
        status = response.status
        failed = status == 0 or (status >= 400 and status not in expected)
        # k6 tags every HTTP sample with expected_response (its default submetric).
        marks = _UNEXPECTED if failed else _EXPECTED
        sample_tags = marks if tags is None else {**tags, **marks}
        rec.counter("http_reqs", end, tags=sample_tags)
        rec.trend("http_req_duration", (end - response.sent_at) * 1000.0, end, sample_tags)
        rec.trend("http_req_latency", (end - self._intended) * 1000.0, end, sample_tags)
        rec.rate("http_req_failed", failed, end, tags)
        if response.error is not None:
            rec.counter("http_req_errors", end, tags={"error": response.error})
        self._intended = end
        return response

    async def get(self, path: str, **kwargs: Any) -> HttpResponse:
        return await self.request("GET", path, **kwargs)

    async def post(self, path: str, body: bytes, **kwargs: Any) -> HttpResponse:
        return await self.request("POST", path, body=body, **kwargs)


@dataclass
class Vu:
    """One virtual user's view of one iteration."""

    id: int
    iteration: int
    scheduled_at: float
    recorder: Recorder
    http: RecordingHttp
    base_ws_url: str
    allow_hosts: Collection[str]
    run_start: float
    state: dict[str, Any] = field(default_factory=dict)

    @property
    def now(self) -> float:
        return time.perf_counter()

    @property
    def elapsed_s(self) -> float:
        """Seconds from the run start to this iteration's scheduled start."""
        return self.scheduled_at - self.run_start

    @contextlib.asynccontextmanager
    async def ws(
        self,
        path: str,
        *,
        headers: Iterable[Header] = (),
        tags: Mapping[str, str] | None = None,
        on_message: OnMessage | None = None,
    ) -> AsyncIterator[WsSession]:
        """A WebSocket session, recorded with k6's names; closed (1000) on exit.

        On connect: ``ws_connecting`` (ms), ``ws_sessions``, or ``ws_errors{error}``.
        On exit: ``ws_msgs_received``/``ws_msgs_sent``, ``ws_session_duration`` (ms),
        ``ws_close{code}`` with the code the session ended with (1006: no close frame).
        """
        rec = self.recorder
        session = await ws_connect(
            self.base_ws_url + path,
            headers=list(headers),
            allow_hosts=self.allow_hosts,
            on_message=on_message,
        )
        at = time.perf_counter()
        if session.error is not None:
            rec.counter("ws_errors", at, tags={**(tags or {}), "error": session.error})
        else:
            rec.trend("ws_connecting", session.connect_ms, at, tags)
            rec.counter("ws_sessions", at, tags=tags)
        try:
            yield session
        finally:
            if session.error is None:
                await session.close()
                end = time.perf_counter()
                rec.counter("ws_msgs_received", end, float(session.msgs_received), tags)
                rec.counter("ws_msgs_sent", end, float(session.msgs_sent), tags)
                rec.trend("ws_session_duration", (end - session.connected_at) * 1000.0, end, tags)
                code = {"code": str(session.close_code)}
                rec.counter("ws_close", end, tags=code if tags is None else {**tags, **code})

    async def ws_ping(
        self, session: WsSession, tags: Mapping[str, str] | None = None
    ) -> float | None:
        """One ping/pong round trip recorded as ``ws_ping`` (ms); None when no pong came."""
        rtt = await session.ping()
        if rtt is not None:
            self.recorder.trend("ws_ping", rtt, time.perf_counter(), tags)
        return rtt
