"""Picklable scenarios for the engine tests (worker processes import them by name)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from nightly_pipeline.loadgen.vu import Vu


class GetThenSleep:
    """A closed-model user: one GET, then think time."""

    def __init__(self, think_s: float) -> None:
        self.think_s = think_s

    async def iteration(self, vu: Vu) -> None:
        await vu.http.get("/")
        await asyncio.sleep(self.think_s)


class BadPatch:
    """The target is slow (150 ms) for requests scheduled in [start_s, end_s) of the run."""

    def __init__(self, start_s: float, end_s: float) -> None:
        self.start_s, self.end_s = start_s, end_s

    async def iteration(self, vu: Vu) -> None:
        slow = self.start_s <= vu.elapsed_s < self.end_s
        await vu.http.get("/delay?ms=150" if slow else "/")


class WsEcho:
    """Each VU holds one WebSocket, sends ``per_session`` messages and awaits each echo."""

    def __init__(self, per_session: int) -> None:
        self.per_session = per_session

    async def iteration(self, vu: Vu) -> None:
        async with vu.ws("/echo") as session:
            if session.error is not None:
                return
            await vu.ws_ping(session)
            for n in range(self.per_session):
                await session.send(f"{vu.id}-{n}")
                reply = await session.recv(timeout=5.0)
                if reply is not None and reply.data == f"{vu.id}-{n}":
                    vu.recorder.counter("ws_echo_ok", vu.now)


class WsCloseCode:
    """The server closes every session at once with ``code``."""

    def __init__(self, code: int) -> None:
        self.code = code

    async def iteration(self, vu: Vu) -> None:
        async with vu.ws(f"/close?code={self.code}") as session:
            await session.wait_closed(timeout=5.0)


def status_class(response) -> dict[str, str]:
    return {"status_class": f"{response.status // 100}xx"}


class AlternatingStatus:
    """Even iterations GET ``/``, odd ones ``/status/503``; both tagged by their answer."""

    async def iteration(self, vu: Vu) -> None:
        path = "/" if vu.iteration % 2 == 0 else "/status/503"
        await vu.http.request("GET", path, tags={"name": "probe"}, tag_from_response=status_class)


class SeesFrozenObjects:
    """Records how many objects the collector holds frozen, as seen from an iteration."""

    def __init__(self) -> None:
        self.frozen: list[int] = []

    async def iteration(self, vu: Vu) -> None:
        import gc

        self.frozen.append(gc.get_freeze_count())
        await vu.http.get("/")


class _Cycle:
    alive = 0

    def __init__(self) -> None:
        _Cycle.alive += 1
        self.me = self  # garbage only a collection frees
        self.payload = bytes(1024)

    def __del__(self) -> None:
        _Cycle.alive -= 1


class MakesCyclicGarbage:
    """Leaves one reference cycle of ~1 KiB behind per iteration (what httpx's responses
    do on the sampler's thread), and notes how many are still alive at each second."""

    def __init__(self) -> None:
        self.alive: list[int] = []
        _Cycle.alive = 0

    async def iteration(self, vu: Vu) -> None:
        _Cycle()
        await vu.http.get("/")

    def note(self, _progress: object) -> None:
        self.alive.append(_Cycle.alive)


class RecordsRaw:
    """GET / and keep, beside the engine's figures, the raw values they are made of:
    each response's service time (the very float ``http_req_duration`` records) and
    each iteration's scheduled offset (``arrivals`` is counted at it). Each worker writes
    its values to ``out_dir/raw-<worker>.json`` at teardown, for a test to rebuild the
    one-host figures from their union."""

    def __init__(self, out_dir: str) -> None:
        self.out_dir = out_dir
        self.worker = 0
        self.durations: list[float] = []
        self.offsets: list[float] = []

    async def setup(self, worker: int, workers: int) -> None:
        self.worker = worker

    async def iteration(self, vu: Vu) -> None:
        vu.recorder.counter("arrivals", vu.scheduled_at)
        self.offsets.append(vu.elapsed_s)
        response = await vu.http.get("/")
        self.durations.append((response.finished_at - response.sent_at) * 1000.0)

    async def teardown(self) -> None:
        raw = {"durations": self.durations, "offsets": self.offsets}
        Path(self.out_dir, f"raw-{self.worker}.json").write_text(json.dumps(raw))
